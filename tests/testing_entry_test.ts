/**
 * The `./testing` entry point as a plugin author uses it: the minimal
 * plugin of docs/writing-a-backend.md, loaded the ways Stormlock loads plugins, passes the
 * published contract. (`plugin_test.ts` runs the example template.)
 */
import assert from "assert";
import * as testing from "../lib/testing/mod.ts";
import { testBackendContract } from "../lib/testing/mod.ts";
import { openBackend } from "../mod.ts";
import type { BackendContext } from "../mod.ts";
import { definitionOf } from "../lib/composition/plugin_adapter.ts";
import { loadPlugin } from "../lib/composition/plugin.ts";
import { repoPath } from "./helpers.ts";

const MINIMAL = repoPath("tests", "fixtures", "minimal-plugin.js");
const context: BackendContext = {
  name: "memory",
  section: "backend.memory",
  configDir: repoPath("tests", "fixtures"),
};

// As docs/writing-a-backend.md shows it.
testBackendContract(
  "minimal plugin",
  (extra) => openBackend({ module: MINIMAL, ...extra }, context),
);

testBackendContract(
  "minimal plugin imported as a data: URL",
  async (extra) => {
    const module = await loadPlugin("./minimal-plugin.js", context, "data");
    return await definitionOf(module, "memory").createBackend(
      { ...extra },
      context,
      { plugin: "module ./minimal-plugin.js" },
    );
  },
);

Deno.test("the testing entry point exports the contract and its helpers", () => {
  for (
    const name of [
      "testBackendContract",
      "testUnavailableContract",
      "tableStore",
    ] as const
  ) {
    assert.equal(typeof testing[name], "function", name);
  }
  assert.ok(testing.AWKWARD_NAMES.length > 0);
});

Deno.test("docs/writing-a-backend.md's minimal plugin listing is the tested fixture", () => {
  const page = Deno.readTextFileSync(repoPath("docs", "writing-a-backend.md"));
  const fixture = Deno.readTextFileSync(MINIMAL);
  const listings = [...page.matchAll(/```js\n([\s\S]*?)```/g)]
    .map((match) => match[1])
    .filter((listing) => listing.includes("A complete, minimal Stormlock"));
  assert.equal(listings.length, 1, "one listing of the minimal plugin");
  assert.equal(listings[0], fixture);
});
