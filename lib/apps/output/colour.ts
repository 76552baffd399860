/**
 * Colours for people at a terminal, and none for anyone else: off when
 * `NO_COLOR` is set (no-color.org), when `TERM=dumb`, or when the stream is
 * not a terminal, so scripts and logs get plain text.
 *
 * @module
 */

/** The few styles the CLI uses, each a no-op when colour is off. */
export interface Colours {
  /** Whether styles add escape codes. */
  readonly enabled: boolean;
  /** Something wrong: a broken lease, an error. */
  red(text: string): string;
  /** Something to watch: expiring soon, a warning. */
  yellow(text: string): string;
  /** Something fine: free, released. */
  green(text: string): string;
  /** Who holds it. */
  bold(text: string): string;
  /** Less important detail. */
  dim(text: string): string;
}

/**
 * Colours for output to `stream`, following `NO_COLOR`, `TERM` and whether
 * it is a terminal.
 * @example
 * ```ts
 * import { coloursFor } from "./colour.ts";
 * const { red } = coloursFor(Deno.stderr);
 * console.error(red("broken"));
 * ```
 */
export function coloursFor(
  stream: { isTerminal(): boolean },
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Colours {
  let enabled = false;
  try {
    enabled = stream.isTerminal() && !env("NO_COLOR") &&
      env("TERM") !== "dumb";
  } catch {
    enabled = false; // no permission to ask: plain text
  }
  const style = (open: number, close: number) => (text: string) =>
    enabled && text !== "" ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    enabled,
    red: style(31, 39),
    yellow: style(33, 39),
    green: style(32, 39),
    bold: style(1, 22),
    dim: style(2, 22),
  };
}
