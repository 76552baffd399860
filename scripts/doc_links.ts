/**
 * Checks that every relative link in the repository's Markdown (README.md,
 * CONTRIBUTING.md and docs/**) names a file that exists and, for a `#anchor`,
 * a heading that page has, with GitHub's rules for heading anchors.
 * `tests/doc_links_test.ts` runs it; by hand:
 * `deno run --allow-read scripts/doc_links.ts` prints what is broken.
 *
 * @module
 */
import { dirname, join, relative } from "node:path";

/** One broken link: where it is, what it points at, and why it fails. */
export interface BrokenLink {
  /** The Markdown file holding the link, relative to the root. */
  file: string;
  /** The 1-based line of the link. */
  line: number;
  /** The link's target as written. */
  target: string;
  /** What is wrong with it. */
  problem: string;
}

/** Text with fenced code blocks blanked line by line (line numbers kept). */
function withoutFences(text: string): string[] {
  let fence: string | undefined;
  return text.split("\n").map((line) => {
    const opener = line.match(/^\s*(```+|~~~+)/)?.[1];
    if (fence === undefined && opener) {
      fence = opener;
      return "";
    }
    if (fence !== undefined) {
      if (line.trim().startsWith(fence)) fence = undefined;
      return "";
    }
    return line;
  });
}

/** The anchor GitHub gives a heading's text. */
export function headingAnchor(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links show their text
    .replace(/`/g, "")
    .replace(/\*/g, "")
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "").replace(/ /g, "-");
}

/** Every anchor a Markdown page offers: headings (with GitHub's -1, -2 for repeats) and `id=` attributes. */
export function anchorsOf(text: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of withoutFences(text)) {
    const heading = line.match(/^#{1,6}\s+(.*?)\s*#*\s*$/)?.[1];
    if (heading !== undefined) {
      const base = headingAnchor(heading);
      const count = seen.get(base) ?? 0;
      seen.set(base, count + 1);
      anchors.add(count === 0 ? base : `${base}-${count}`);
    }
    for (const match of line.matchAll(/\b(?:id|name)="([^"]+)"/g)) {
      anchors.add(match[1]);
    }
  }
  return anchors;
}

/** The relative link targets of a page, with their lines; code is skipped. */
export function linksOf(text: string): { line: number; target: string }[] {
  const links: { line: number; target: string }[] = [];
  withoutFences(text).forEach((raw, index) => {
    const line = raw.replace(/`[^`]*`/g, "");
    for (
      const match of line.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\)/g)
    ) {
      const target = match[1];
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:
      links.push({ line: index + 1, target });
    }
  });
  return links;
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The Markdown files whose links are checked: README.md, CONTRIBUTING.md and docs/**. */
export function markdownFiles(root: string): string[] {
  const files = ["README.md", "CONTRIBUTING.md"].filter((name) =>
    isFile(join(root, name))
  );
  const walk = (folder: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(join(root, folder))];
    } catch {
      return;
    }
    for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(folder, entry.name);
      if (entry.isDirectory) walk(path);
      else if (entry.name.endsWith(".md")) files.push(path);
    }
  };
  walk("docs");
  return files;
}

/** Every broken relative link and anchor in the Markdown under `root`. */
export function brokenLinks(root: string): BrokenLink[] {
  const broken: BrokenLink[] = [];
  const anchors = new Map<string, Set<string>>();
  const anchorsAt = (path: string) => {
    if (!anchors.has(path)) {
      anchors.set(path, anchorsOf(Deno.readTextFileSync(path)));
    }
    return anchors.get(path)!;
  };
  for (const file of markdownFiles(root)) {
    const source = join(root, file);
    for (const { line, target } of linksOf(Deno.readTextFileSync(source))) {
      const hash = target.indexOf("#");
      const path = hash < 0 ? target : target.slice(0, hash);
      const anchor = hash < 0 ? "" : decodeURIComponent(target.slice(hash + 1));
      const linked = path === ""
        ? source
        : join(dirname(source), decodeURI(path));
      const problem = (() => {
        if (relative(root, linked).startsWith("..")) {
          return "points outside the repository";
        }
        if (!isFile(linked)) return `no file ${relative(root, linked)}`;
        if (anchor && !linked.endsWith(".md")) {
          return "an anchor into a file that is not Markdown";
        }
        if (anchor && !anchorsAt(linked).has(anchor)) {
          return `${relative(root, linked)} has no heading #${anchor}`;
        }
      })();
      if (problem) broken.push({ file, line, target, problem });
    }
  }
  return broken;
}

if (import.meta.main) {
  const root = join(dirname(new URL(import.meta.url).pathname), "..");
  const broken = brokenLinks(root);
  for (const { file, line, target, problem } of broken) {
    console.log(`${file}:${line}: ${target}: ${problem}`);
  }
  Deno.exit(broken.length ? 1 : 0);
}
