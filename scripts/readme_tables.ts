/**
 * Writes each built-in backend's option table into the README, between
 * `<!-- options: NAME -->` and `<!-- /options -->`, from its schema. Run
 * `deno run --allow-read --allow-write scripts/readme_tables.ts` after
 * changing a schema; `tests/readme_test.ts` checks they agree.
 */
import { builtinBackends } from "../lib/registry.ts";
import { definitionOf } from "../lib/kit/backend.ts";
import { optionTable } from "../lib/kit/options.ts";

/** The README with every backend's table regenerated. */
export async function withTables(readme: string): Promise<string> {
  let text = readme;
  for (const [name, load] of Object.entries(builtinBackends)) {
    const table = optionTable(definitionOf(await load(), name).schema);
    const pattern = new RegExp(
      `(<!-- options: ${name} -->\\n)[\\s\\S]*?(<!-- /options -->)`,
    );
    if (!pattern.test(text)) {
      throw new Error(`README.md has no <!-- options: ${name} --> block`);
    }
    text = text.replace(pattern, `$1\n${table}\n\n$2`);
  }
  return text;
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  Deno.writeTextFileSync(path, await withTables(Deno.readTextFileSync(path)));
}
