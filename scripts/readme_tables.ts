/**
 * Writes each built-in backend's option table into its docs page,
 * `docs/backends/NAME.md`, between `<!-- options: NAME -->` and
 * `<!-- /options -->`, from its schema. Run
 * `deno run --allow-read --allow-write scripts/readme_tables.ts` after
 * changing a schema; `tests/readme_test.ts` checks they agree.
 */
import { builtinBackends } from "../lib/composition/registry.ts";
import { definitionOf } from "../lib/composition/plugin_adapter.ts";
import { optionTable } from "../lib/kit/options.ts";
import { withBlock } from "./doc_blocks.ts";

/** Where a built-in backend's docs page is, relative to the repository. */
export function backendPage(name: string): string {
  return `docs/backends/${name}.md`;
}

/** A built-in backend's docs page with its option table regenerated. */
export async function withTable(name: string, page: string): Promise<string> {
  const load = builtinBackends[name];
  if (!load) throw new Error(`${name} is not a built-in backend`);
  const table = optionTable(definitionOf(await load(), name).schema);
  return withBlock(page, `options: ${name}`, table, backendPage(name));
}

if (import.meta.main) {
  for (const name of Object.keys(builtinBackends)) {
    const path = new URL(`../${backendPage(name)}`, import.meta.url);
    Deno.writeTextFileSync(
      path,
      await withTable(name, Deno.readTextFileSync(path)),
    );
  }
}
