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

Deno.test("launcher: an https DynamoDB endpoint works with NODE_EXTRA_CA_CERTS set (no sys-permission refusal)", async () => {
  using home = new CliHome();
  const config = home.write(
    "dyn.cfg",
    "[default]\nbackend = dynamodb\n[backend.dynamodb]\nendpoint = https://127.0.0.1:9\nregion = us-east-1\naccess_key_id = x\nsecret_access_key = y\ntimeout = 2s\n",
  );
  const withCa: Record<string, string> = {
    NODE_EXTRA_CA_CERTS: "/etc/ssl/certs/ca-certificates.crt",
  };
  for (const extra of [{}, withCa]) {
    assertCleanExit(
      await home.run(["-c", config, "current", "r"], {
        AWS_EC2_METADATA_DISABLED: "true",
        ...extra,
      }),
      69,
      /DynamoDB at 127\.0\.0\.1:9 could not be reached/,
    );
  }
});
