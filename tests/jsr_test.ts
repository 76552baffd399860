/**
 * The JSR package: the dry publish passes (no slow types, the right
 * files), and the docs of every export pass `deno doc --lint`.
 */
import assert from "assert";
import { repoPath, runDeno } from "./helpers.ts";
import { linksOf } from "../scripts/doc_links.ts";

/** Runs deno in the repository; `output` is stdout then stderr. */
async function deno(
  ...args: string[]
): Promise<{ ok: boolean; output: string }> {
  const { code, stdout, stderr } = await runDeno(args);
  return { ok: code === 0, output: stdout + stderr };
}

Deno.test("deno publish --dry-run passes and publishes only the library", async () => {
  const run = await deno("publish", "--dry-run", "--allow-dirty");
  assert.ok(run.ok, run.output);
  assert.match(run.output, /Success Dry run complete/);
  // Paths relative to the repository, wherever it is checked out.
  const root = `file://${repoPath()}`.replace(/\/?$/, "/");
  const files = [...run.output.matchAll(/(file:\/\/\S+) \(/g)]
    .map((match) => match[1].replace(root, ""));
  for (
    const needed of [
      "mod.ts",
      "lib/composition/lock.ts",
      "backends/sqlite/mod.ts",
    ]
  ) {
    assert.ok(files.includes(needed), `${needed} is published`);
  }
  for (const file of files) {
    assert.match(
      file,
      /^(mod\.ts|deno\.json|README\.md|CONTRIBUTING\.md|LICENSE|lib\/|backends\/|docs\/)/,
    );
    assert.doesNotMatch(file, /_test\.ts$/);
  }
  // The package page is the README: the pages it links to are published too.
  const readme = Deno.readTextFileSync(repoPath("README.md"));
  for (const { target } of linksOf(readme)) {
    const linked = target.replace(/#.*/, "");
    if (linked) assert.ok(files.includes(linked), `${linked} is published`);
  }
});

Deno.test("deno doc --lint finds every export of every entry point documented", async () => {
  const run = await deno(
    "doc",
    "--lint",
    "mod.ts",
    "lib/kit/mod.ts",
    "lib/testing/mod.ts",
  );
  assert.ok(run.ok, run.output);
});
