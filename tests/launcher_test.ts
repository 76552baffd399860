/** The launcher: the Deno check is remembered, and a bad ~/.npmrc is one line. */
import assert from "assert";
import { assertCleanExit, CliHome } from "./helpers.ts";

Deno.test("launcher: a malformed ~/.npmrc is one clear line and exit 69, not a Deno stack trace", async () => {
  using home = new CliHome();
  home.write(".npmrc", "@scope:registry = :::\n");
  assertCleanExit(
    await home.run(["--version"]),
    69,
    /Deno can't read .*\.npmrc \(.*\); fix or move that file/,
  );
  home.write(".npmrc", "; a valid, empty npmrc\n");
  const fixed = await home.run(["--version"]);
  assert.equal(fixed.code, 0, fixed.stderr);
});
