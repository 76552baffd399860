/**
 * "Did you mean …?": the one edit-distance helper behind every typo
 * suggestion (commands, flags, duration units, config sections, backend
 * names), so they all judge nearness the same way.
 *
 * @module
 */

/**
 * The number of single-character insertions, deletions, substitutions
 * and swaps of neighbours that turn `a` into `b` (optimal string
 * alignment distance), ignoring case.
 *
 * @example
 * ```ts
 * import { editDistance } from "./suggest.ts";
 * editDistance("aquire", "acquire"); // 1
 * editDistance("relaese", "release"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  const x = [...a.toLowerCase()];
  const y = [...b.toLowerCase()];
  // Three rows suffice: the swap looks two rows back.
  let before: number[] = [];
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const row = [i];
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1;
      row[j] = Math.min(
        row[j - 1] + 1,
        previous[j] + 1,
        previous[j - 1] + cost,
      );
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) {
        row[j] = Math.min(row[j], before[j - 2] + 1);
      }
    }
    before = previous;
    previous = row;
  }
  return previous[y.length];
}

/**
 * The candidate nearest to `word`, if one is near enough to be a typo: at
 * most one edit for short words, two from six characters, three from ten.
 * Ties go to the earlier candidate.
 *
 * @example
 * ```ts
 * import { closest } from "./suggest.ts";
 * closest("aquire", ["acquire", "release"]); // "acquire"
 * closest("zzz", ["acquire", "release"]); // undefined
 * ```
 */
export function closest(
  word: string,
  candidates: Iterable<string>,
): string | undefined {
  const allowed = word.length >= 10 ? 3 : word.length >= 6 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    if (candidate === word) return candidate;
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= allowed ? best : undefined;
}

/**
 * ` (did you mean "acquire"?)` when a candidate is near `word`, else "".
 * Messages append it right after naming what was wrong.
 *
 * @example
 * ```ts
 * import { didYouMean } from "./suggest.ts";
 * didYouMean("aquire", ["acquire"]); // ' (did you mean "acquire"?)'
 * didYouMean("x", ["acquire"]); // ""
 * ```
 */
export function didYouMean(
  word: string,
  candidates: Iterable<string>,
  show: (candidate: string) => string = (candidate) => `"${candidate}"`,
): string {
  const near = closest(word, candidates);
  return near === undefined || near === word
    ? ""
    : ` (did you mean ${show(near)}?)`;
}

/**
 * A `#` or `;` comment written after a value (`redis   # shared`), which
 * the config keeps as part of the value (as the original's configparser
 * did): the value before it and the comment, or `undefined`.
 *
 * @example
 * ```ts
 * import { trailingComment } from "./suggest.ts";
 * trailingComment("redis   # shared"); // { value: "redis", comment: "# shared" }
 * trailingComment("redis"); // undefined
 * ```
 */
export function trailingComment(
  value: string,
): { value: string; comment: string } | undefined {
  const match = /^(.*?\S)\s+([#;].*)$/.exec(value);
  return match ? { value: match[1], comment: match[2] } : undefined;
}

/**
 * Names a comment written after a value, for the end of an error about
 * that value; "" when there is none.
 *
 * @example
 * ```ts
 * import { commentNote } from "./suggest.ts";
 * commentNote("1h ; an hour"); // ' (it ends in "; an hour", which reads as part of the value: …)'
 * ```
 */
export function commentNote(value: string): string {
  const found = trailingComment(value);
  return found
    ? ` (it ends in "${found.comment}", which reads as part of the value: put a comment on a line of its own)`
    : "";
}
