/**
 * The CLI's terminal: the answer on stdout (all of it, or an
 * {@linkcode OutputError}), one-line messages on stderr, tables cut to the
 * width, the waiting line, and the break prompt.
 *
 * @module
 */
import { UsageError } from "../../kit/errors.ts";
import { printable, shorten } from "../../kit/text.ts";
import type { Lease } from "../../kit/types.ts";
import type { WaitState } from "../../composition/queue.ts";
import { coloursFor } from "./colour.ts";
import { OutputError } from "./exit.ts";
import { fitTable, heldMessage, span, when } from "./format.ts";
import type { TableColumn } from "./format.ts";

/** Writes all of `text` to stdout, or throws an {@linkcode OutputError}. */
export function writeOut(text: string): void {
  const bytes = new TextEncoder().encode(text);
  try {
    for (let done = 0; done < bytes.length;) {
      done += Deno.stdout.writeSync(bytes.subarray(done));
    }
  } catch (error) {
    throw new OutputError(error, "nothing else was changed");
  }
}

/** Writes one line to stdout, or throws an {@linkcode OutputError}. */
export function print(line: string): void {
  writeOut(`${line}\n`);
}

/**
 * One message style: a capital first letter, so the CLI's own messages,
 * the library's errors and the backends' warnings read alike; names that
 * are written in lower case (etcd) stay as they are.
 */
export function sentence(message: string): string {
  if (/^(?:etcd|dynalite|npm|deno|stormlock)\b/.test(message)) return message;
  return message.replace(/^[a-z]/, (first) => first.toUpperCase());
}

/** Colours for stderr: on only at a terminal. */
const stderrColours = coloursFor(Deno.stderr);

/** Writes one line to stderr; multi-line client messages are folded. */
export function complain(message: string, label = ""): void {
  try {
    console.error(
      `stormlock: ${label}${
        printable(sentence(message.replace(/\s*\n\s*/g, " ")))
      }`,
    );
  } catch {
    // Exit codes never depend on whether stderr can be written.
  }
}

/** A warning line, in yellow at a terminal. */
export function warn(message: string): void {
  complain(message, `${stderrColours.yellow("Warning:")} `);
}

/** The terminal's width for stdout, or `Infinity` for a pipe or file. */
export function outputWidth(): number {
  try {
    if (!Deno.stdout.isTerminal()) return Infinity;
    return Deno.consoleSize().columns || 80;
  } catch {
    return Infinity;
  }
}

/** Prints a table to stdout and says on stderr what was cut to fit. */
export function printTable(
  columns: TableColumn[],
  paint?: (column: string, row: number, text: string) => string,
): void {
  const width = outputWidth();
  const fitted = fitTable(columns, width, paint);
  print(fitted.text);
  const left = fitted.dropped.map((title) => title.toLowerCase());
  if (fitted.cut > 0 || left.length > 0) {
    complain(
      `${
        [
          ...(fitted.cut > 0
            ? [
              `${fitted.cut} cell${
                fitted.cut === 1 ? " was" : "s were"
              } cut (…)`,
            ]
            : []),
          ...(left.length > 0 ? [`left out: ${left.join(", ")}`] : []),
        ].join("; ")
      } to fit ${
        Number.isFinite(width) ? `${width} columns` : "the table"
      }; --json shows everything`,
    );
  }
}

/**
 * Reports a wait on stderr: on a terminal, one status line updated in
 * place, what changes first (time waited, place in line) and cut to the
 * width; elsewhere, a plain line only when something changes.
 */
export function waitReporter(wait: string): {
  onWait(holder: Lease, state: WaitState): void;
  onRetry(error: Error): void;
  done(): void;
} {
  const terminal = (() => {
    try {
      return Deno.stderr.isTerminal();
    } catch {
      return false;
    }
  })();
  let said = "";
  let drawn = false;
  const show = (key: string, line: string) => {
    if (terminal) {
      const width = (() => {
        try {
          return Deno.consoleSize().columns || 80;
        } catch {
          return 80;
        }
      })();
      const text = `stormlock: ${printable(sentence(line))}`;
      const fitted = [...text].length < width
        ? text
        : `${[...text].slice(0, width - 2).join("")}…`;
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${fitted}`));
        drawn = true;
      } catch { /* exit codes never depend on stderr */ }
    } else if (key !== said) complain(line);
    said = key;
  };
  return {
    onWait(holder: Lease, state: WaitState) {
      const place = state.position === 0
        ? "next in line"
        : `${state.position} ahead of you`;
      const about = state.queued
        ? `"${shorten(holder.resource, 60)}" is free, earlier waiters first`
        : `held by ${shorten(holder.principal, 60)} until ${
          when(holder.expires)
        }${holder.reason ? ` for "${shorten(holder.reason, 60)}"` : ""}`;
      show(
        `${holder.id} ${state.position} ${state.queued}`,
        `waited ${span(state.waitedMs)} of ${wait}; ${place}; ${about}`,
      );
    },
    onRetry(error: Error) {
      show(
        `retry ${error.message}`,
        `waiting up to ${wait}: the backend failed, retrying: ${error.message}`,
      );
    },
    done() {
      if (!drawn) return;
      try {
        Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
      } catch { /* nothing to tidy */ }
    },
  };
}

/** Reads one line from a terminal's stdin, after asking on stderr. */
export async function ask(question: string): Promise<string> {
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(question));
  } catch { /* still read the answer */ }
  const buffer = new Uint8Array(1024);
  let text = "";
  while (!text.includes("\n")) {
    const read = await Deno.stdin.read(buffer);
    if (read === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, read));
  }
  return text.trim();
}

/**
 * Shows the lease about to be broken and asks on the terminal; `true`
 * when the answer is yes. Says on stderr when nothing was broken.
 *
 * @param holder The live lease.
 * @throws {UsageError} when stdin is not a terminal.
 */
export async function confirmBreak(holder: Lease): Promise<boolean> {
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError(
      "break without LEASE_ID asks first, but stdin is not a terminal; add --yes, or give the LEASE_ID",
    );
  }
  complain(`about to break: ${heldMessage(holder)}`);
  const answer = await ask("stormlock: break this lease? [y/N] ");
  if (/^y(es)?$/i.test(answer)) return true;
  complain("nothing was broken");
  return false;
}
