/**
 * Showing text that other users wrote (principals, reasons, resource names)
 * without letting it steer a terminal, and quoting it for a shell.
 *
 * @module
 */

// C0, DEL, C1, and the bidirectional controls that can reorder what a
// reader sees (U+061C, U+200E-F, U+202A-E, U+2066-9).
const UNSAFE =
  // deno-lint-ignore no-control-regex
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` with control and bidirectional-override characters written as
 * `\xNN` or `\u{NNNN}` escapes, so it can't move the cursor, recolour the
 * terminal, break lines or reorder what is shown.
 *
 * @example
 * ```ts
 * import { printable } from "./text.ts";
 * printable("ann\u001b[31m\u202e"); // "ann\\x1b[31m\\u{202e}"
 * ```
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, (char) => {
    const code = char.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u{${code.toString(16)}}`;
  });
}

/**
 * `text` made printable and cut to `max` characters, saying how much was
 * cut.
 *
 * @example
 * ```ts
 * import { shorten } from "./text.ts";
 * shorten("x".repeat(300), 10); // "xxxxxxxxxx… (290 more characters)"
 * ```
 */
export function shorten(text: string, max = 200): string {
  const shown = printable(text);
  if (shown.length <= max) return shown;
  return `${shown.slice(0, max)}… (${shown.length - max} more characters)`;
}

/**
 * `text` quoted for a POSIX shell, so a printed command can be pasted.
 *
 * @example
 * ```ts
 * import { shellQuote } from "./text.ts";
 * shellQuote("deploy"); // "deploy"
 * shellQuote("it's"); // "'it'\\''s'"
 * ```
 */
export function shellQuote(text: string): string {
  if (/^[\w@%+=:,./-]+$/.test(text)) return text;
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

// Control characters: U+001F marks the waiting queue's bookkeeping, NUL
// starts the redis backend's side keys, and none belongs in a lock's name.
// deno-lint-ignore no-control-regex
const RESERVED = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Why `resource` can't name a lock, or `undefined` when it can. Control
 * characters (C0, DEL, C1) are reserved: the waiting queue and the stores
 * use them to keep their bookkeeping apart from locks.
 *
 * @example
 * ```ts
 * import { resourceNameProblem } from "./text.ts";
 * resourceNameProblem("deploy"); // undefined
 * resourceNameProblem("deploy\u001fwait"); // "contains the control character U+001F, …"
 * ```
 */
export function resourceNameProblem(resource: string): string | undefined {
  if (typeof resource !== "string") return "is not text";
  const found = RESERVED.exec(resource);
  if (!found) return undefined;
  const code = found[0].charCodeAt(0).toString(16).toUpperCase();
  return `contains the control character U+${
    code.padStart(4, "0")
  }, which Stormlock reserves for its own bookkeeping`;
}
