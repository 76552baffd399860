/**
 * The library example of docs/library.md, `examples/acquire.ts`, runs as written:
 * inside this repository `jsr:@stormlock/stormlock` resolves to the local
 * package, so the very script a JSR user copies runs against `mod.ts`.
 */
import assert from "assert";
import { join } from "node:path";
import { CliHome, repoPath } from "./helpers.ts";
import type { CliResult } from "./helpers.ts";

const SCRIPT = repoPath("examples", "acquire.ts");

/** Runs the example as docs/library.md says, in the temporary HOME. */
function runExample(home: CliHome): Promise<CliResult> {
  return home.deno([
    "run",
    "--quiet",
    "--no-prompt",
    "--allow-env",
    "--allow-sys=hostname",
    "--allow-read",
    `--allow-write=${join(home.home, ".local", "state", "stormlock")}`,
    SCRIPT,
  ]);
}

Deno.test("the library example acquires and releases the lock", async () => {
  using home = new CliHome();
  for (let run = 0; run < 2; run++) {
    // The second run succeeds only if the first released the lock.
    const result = await runExample(home);
    assert.equal(result.stderr, "");
    assert.equal(result.code, 0);
    assert.match(
      result.stdout,
      /^Holding nightly-backup until \d{4}-\d\d-\d\dT/,
    );
  }
});

Deno.test("the library example exits 2 and names the holder when the lock is held", async () => {
  using home = new CliHome();
  const held = await home.run(["acquire", "--ttl", "1m", "nightly-backup"]);
  assert.equal(held.code, 0, held.stderr);
  const result = await runExample(home);
  assert.equal(result.code, 2);
  assert.equal(result.stdout, "");
  assert.match(result.stderr, /^Busy: tester@\S+ holds it\n$/);
});

Deno.test("docs/library.md shows the library example as it is in examples/acquire.ts", () => {
  const page = Deno.readTextFileSync(repoPath("docs", "library.md"));
  // The lint directive is for this repository, not for readers.
  const script = Deno.readTextFileSync(SCRIPT).replace(
    /^\/\/ deno-lint-ignore-file.*\n/,
    "",
  );
  assert.ok(
    page.includes(script),
    "docs/library.md should contain examples/acquire.ts verbatim (minus its lint directive)",
  );
});
