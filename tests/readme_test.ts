/** The README's option tables say what the backends' schemas say. */
import assert from "assert";
import { repoPath } from "./helpers.ts";
import { withTables } from "../scripts/readme_tables.ts";

/** Table cells, with the padding and dashes that deno fmt adds removed. */
function cells(text: string): string[][] {
  return text.split("\n").filter((line) => line.startsWith("|")).map((line) =>
    line.split("|").slice(1, -1).map((cell) => cell.trim())
  ).filter((row) => !row.every((cell) => /^-+$/.test(cell)));
}

Deno.test("README: every backend's option table matches its schema", async () => {
  const readme = Deno.readTextFileSync(repoPath("README.md"));
  const expected = await withTables(readme);
  const blocks = (text: string) =>
    [...text.matchAll(/<!-- options: (\S+) -->([\s\S]*?)<!-- \/options -->/g)]
      .map(([, name, body]) => [name, cells(body)]);
  assert.deepEqual(
    blocks(readme),
    blocks(expected),
    "run: deno run --allow-read --allow-write scripts/readme_tables.ts",
  );
});
