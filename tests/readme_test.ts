/** The backend pages' option tables say what the backends' schemas say. */
import assert from "assert";
import { repoPath } from "./helpers.ts";
import { backendPage, withTable } from "../scripts/readme_tables.ts";
import { builtinBackends } from "../lib/composition/registry.ts";
import { blockOf, withBlock } from "../scripts/doc_blocks.ts";

/** Table cells, with the padding and dashes that deno fmt adds removed. */
function cells(text: string): string[][] {
  return text.split("\n").filter((line) => line.startsWith("|")).map((line) =>
    line.split("|").slice(1, -1).map((cell) => cell.trim())
  ).filter((row) => !row.every((cell) => /^-+$/.test(cell)));
}

/** Each `<!-- options: NAME -->` block of a page, as its name and cells. */
function blocks(text: string) {
  return [
    ...text.matchAll(/<!-- options: (\S+) -->([\s\S]*?)<!-- \/options -->/g),
  ]
    .map(([, name, body]) => [name, cells(body)]);
}

Deno.test("docs/backends: every backend's option table matches its schema", async () => {
  for (const name of Object.keys(builtinBackends)) {
    const page = Deno.readTextFileSync(repoPath(backendPage(name)));
    const expected = await withTable(name, page);
    assert.equal(blocks(page).length, 1, `${backendPage(name)}: one table`);
    assert.deepEqual(
      blocks(page),
      blocks(expected),
      `${
        backendPage(name)
      }: run: deno run --allow-read --allow-write scripts/readme_tables.ts`,
    );
  }
});

Deno.test("the option table check fails on a page whose table is wrong", async () => {
  const page = Deno.readTextFileSync(repoPath(backendPage("sqlite")));
  const wrong = page.replace(/^\| `path`/m, "| `file`");
  assert.notEqual(wrong, page, "the sqlite page documents `path`");
  assert.notDeepEqual(blocks(wrong), blocks(await withTable("sqlite", wrong)));
});

Deno.test("docs/performance.md holds the benchmark's table where bench.ts --write puts it", () => {
  const page = Deno.readTextFileSync(repoPath("docs", "performance.md"));
  const table = blockOf(page, "bench");
  assert.ok(
    table !== undefined,
    "docs/performance.md has a <!-- bench --> block",
  );
  assert.match(
    table,
    /^\| backend +\| measure +\| median +\| against \(median\) +\| ratio +\| target +\| note +\|$/m,
  );
  const rewritten = withBlock(page, "bench", "| new |", "docs/performance.md");
  assert.equal(blockOf(rewritten, "bench"), "\n| new |\n\n");
  assert.ok(rewritten.includes("**Method.**"), "the text around it stays");
  assert.throws(
    () => withBlock("# Performance\n", "bench", "", "docs/performance.md"),
    /docs\/performance\.md has no <!-- bench --> block/,
  );
});
