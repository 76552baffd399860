/**
 * Generated blocks in the docs: text between `<!-- NAME -->` and
 * `<!-- /NAME -->` that a script writes (the backends' option tables, the
 * benchmark's table), so hand-written text around it stays.
 *
 * @module
 */

/** The body of the block `name` in `text`, or undefined when there is none. */
export function blockOf(text: string, name: string): string | undefined {
  return text.match(blockPattern(name))?.[2];
}

/** `text` with the body of the block `name` replaced by `body`; throws if the block is missing. */
export function withBlock(
  text: string,
  name: string,
  body: string,
  file: string,
): string {
  const pattern = blockPattern(name);
  if (!pattern.test(text)) {
    throw new Error(`${file} has no <!-- ${name} --> block`);
  }
  return text.replace(
    pattern,
    (_, open, _body, close) => `${open}\n${body.trim()}\n\n${close}`,
  );
}

function blockPattern(name: string): RegExp {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(
    `(<!-- ${escaped} -->\\n)([\\s\\S]*?)(<!-- /${
      escaped.replace(/:.*/, "")
    } -->)`,
  );
}
