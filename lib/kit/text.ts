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
