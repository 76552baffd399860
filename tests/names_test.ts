/**
 * Resource names with reserved (control) characters: the waiting queue
 * keeps its registrations under U+001F and the redis store its side keys
 * under NUL, so a user's name must never reach either. Checked through
 * the CLI here; the library, every store and plugins are covered by the
 * contract (lib/testing), and serve's API by tests/serve_test.ts.
 */
import assert from "assert";
import { join } from "node:path";
import { LockHeldError, parseConfig, Stormlock } from "../mod.ts";
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

Deno.test("waiters arriving together all join the queue: none is refused by another's ticket", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-queue-" });
  const locks = new Stormlock(
    parseConfig(`[backend.sqlite]\npath = ${join(dir, "locks.db")}\n`),
    { warn() {} },
  );
  try {
    const held = await (await locks.lock("busy")).acquire();
    const results = await Promise.allSettled(
      Array.from(
        { length: 20 },
        async () => (await locks.lock("busy")).acquire(undefined, { wait: 2 }),
      ),
    );
    for (const result of results) {
      assert.equal(result.status, "rejected");
      const error = (result as PromiseRejectedResult).reason;
      assert.ok(error instanceof LockHeldError, String(error));
      // Refused by the holder at the wait's end, not by the ticket counter.
      assert.equal(error.holder.id, held.id, error.message);
    }
  } finally {
    await locks.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
