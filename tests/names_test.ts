/**
 * Resource names with reserved (control) characters: the waiting queue
 * keeps its registrations under U+001F and the redis store its side keys
 * under NUL, so a user's name must never reach either. Checked through
 * the CLI here; the library, every store and plugins are covered by the
 * contract (lib/testing), and serve's API by tests/serve_test.ts.
 */
import assert from "assert";
import { assertCleanExit, CliHome } from "./helpers.ts";

Deno.test("cli: a forged waiter name is refused with exit 64, and the lock stays free", async () => {
  using home = new CliHome();
  const forged = "deploy\u001fwait\u001f0000000000000001";
  assertCleanExit(
    await home.run(["acquire", "--ttl", "365d", forged]),
    64,
    /The resource name "deploy\\u001fwait.*" contains the control character U\+001F, which Stormlock reserves for its own bookkeeping; use another name$/,
  );
  const taken = await home.run(["acquire", "deploy"]);
  assert.equal(taken.code, 0, taken.stderr);
  for (
    const name of ["x\u001fy", "tab\there", "del\u007f", "c1\u0085"]
  ) {
    const result = await home.run(["acquire", name]);
    assert.equal(result.code, 64, `${JSON.stringify(name)}: ${result.stderr}`);
    assert.match(result.stderr, /which Stormlock reserves/);
  }
});
