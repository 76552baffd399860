/**
 * `stormlock run` and `Lock.hold`: the command runs under a renewed lease,
 * its status passes through, and a lost lease stops its whole process
 * group with exit 75. Runs on the embedded SQLite default, through the
 * launcher as a user would.
 */
import assert from "assert";
import { join } from "node:path";
import { CliHome, type CliResult, repoPath, sleep } from "./helpers.ts";
import {
  BackendUnavailableError,
  type Lease,
  LeaseLostError,
  Lock,
  openStormlock,
  type Stormlock,
} from "../mod.ts";

const LEASE_ID = /^[0-9a-f]{32}$/;

/** A `stormlock` run started in the background, as `home.run` would. */
function spawnCli(home: CliHome, args: string[], env = {}) {
  const child = new Deno.Command("sh", {
    args: [repoPath("scripts", "stormlock"), ...args],
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      ...home.env,
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return {
    child,
    async result(): Promise<CliResult> {
      const output = await child.output();
      const decoder = new TextDecoder();
      return {
        code: output.code,
        stdout: decoder.decode(output.stdout),
        stderr: decoder.decode(output.stderr),
      };
    },
  };
}

/** Waits until `path` exists and holds a line, and returns it. */
async function waitForFile(path: string): Promise<string> {
  for (;;) {
    try {
      const text = Deno.readTextFileSync(path);
      if (text.endsWith("\n")) return text.trim();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await sleep(50);
  }
}

/** Whether process `pid` is still running (a zombie is not). */
function running(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Asserts that `pid` has ended, allowing the kernel a moment to finish. */
async function assertEnded(pid: number): Promise<void> {
  for (let tries = 0; tries < 50 && running(pid); tries++) await sleep(100);
  assert.ok(!running(pid), `process ${pid} still runs`);
}

/** Asserts that the resource is free, so `run` released its lease. */
async function assertFree(home: CliHome, resource: string): Promise<void> {
  const current = await home.run(["current", resource]);
  assert.equal(current.code, 1, `still held: ${current.stdout}`);
}

Deno.test("run gives the command its lease in the environment and passes its status through", async () => {
  using home = new CliHome();
  const result = await home.run([
    "run",
    "--ttl",
    "9s",
    "env-check",
    "--",
    "sh",
    "-c",
    'printf "%s %s %s" "$STORMLOCK_RESOURCE" "$STORMLOCK_LEASE_ID" "$STORMLOCK_FENCE"; exit 7',
  ]);
  assert.equal(result.code, 7, result.stderr);
  assert.equal(result.stderr, "");
  const [resource, id, fence] = result.stdout.split(" ");
  assert.equal(resource, "env-check");
  assert.match(id, LEASE_ID);
  assert.match(fence, /^[1-9]\d*$/);
  await assertFree(home, "env-check");
  const history = await home.run(["history", "--json", "env-check"]);
  const kinds = JSON.parse(history.stdout).map((event: { kind: string }) =>
    event.kind
  );
  assert.equal(kinds[0], "released");
});

Deno.test("run releases the lease when the command fails or dies of a signal", async () => {
  using home = new CliHome();
  const failed = await home.run(["run", "-t", "9s", "failing", "--", "false"]);
  assert.equal(failed.code, 1, failed.stderr);
  assert.equal(failed.stderr, "");
  await assertFree(home, "failing");

  const killed = await home.run([
    "run",
    "-t",
    "9s",
    "failing",
    "--",
    "sh",
    "-c",
    "kill -KILL $$",
  ]);
  assert.equal(killed.code, 128 + 9, killed.stderr);
  await assertFree(home, "failing");

  const missing = await home.run([
    "run",
    "-t",
    "9s",
    "failing",
    "--",
    "no-such-command-here",
  ]);
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /^stormlock: Could not start .*not found/);
  await assertFree(home, "failing");
});

Deno.test("run refuses a command without -- and a held lock, leaving it alone", async () => {
  using home = new CliHome();
  const bare = await home.run(["run", "-t", "9s", "r", "true"]);
  assert.equal(bare.code, 64);
  assert.match(bare.stderr, /^stormlock: "run" needs "--"/);

  const id = (await home.run(["acquire", "r"], { USER: "bob" })).stdout.trim();
  const held = await home.run(["run", "-t", "9s", "r", "--", "true"]);
  assert.equal(held.code, 2);
  assert.match(held.stderr, /^stormlock: .*"r" is held by bob@/);
  assert.equal((await home.run(["is-held", "r", id])).code, 0);
});

Deno.test("a break stops the command and its grandchild, exits 75 and names the breaker", async () => {
  using home = new CliHome();
  const pidFile = join(home.home, "grandchild.pid");
  const run = spawnCli(home, [
    "run",
    "--ttl",
    "9s",
    "broken",
    "--",
    "sh",
    "-c",
    `sleep 1000 & echo $! > '${pidFile}'; wait`,
  ]);
  const grandchild = Number(await waitForFile(pidFile));
  assert.ok(running(grandchild));
  const id = (await home.run(["current", "--id-only", "broken"])).stdout
    .trim();
  const broke = await home.run(
    ["break", "broken", id, "--reason", "job looked dead"],
    { USER: "bob" },
  );
  assert.equal(broke.code, 0, broke.stderr);

  const result = await run.result();
  assert.equal(result.code, 75, result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, result.stderr);
  assert.match(
    lines[0],
    /^stormlock: Lease on "broken" was broken by bob@\S+ .*: job looked dead$/,
  );
  await assertEnded(grandchild);
});

Deno.test("SIGTERM to run reaches the command, and the lease is released", async () => {
  using home = new CliHome();
  const ready = join(home.home, "ready");
  const run = spawnCli(home, [
    "run",
    "--ttl",
    "9s",
    "signalled",
    "--",
    "sh",
    "-c",
    `trap 'echo got TERM; exit 42' TERM; sleep 1000 & echo up > '${ready}'; wait`,
  ]);
  await waitForFile(ready);
  run.child.kill("SIGTERM");
  const result = await run.result();
  assert.equal(result.code, 42, result.stderr);
  assert.equal(result.stdout, "got TERM\n");
  assert.equal(result.stderr, "");
  await assertFree(home, "signalled");
});

Deno.test("max_hold from the config ends the command with 75, SIGKILL for what ignores SIGTERM", async () => {
  using home = new CliHome();
  home.write("work/.stormlock.cfg", "[default]\n\n[capped]\nmax_hold = 4s\n");
  const pidFile = join(home.home, "stubborn.pid");
  const result = await home.run([
    "run",
    "--ttl",
    "9s",
    "--kill-after",
    "1s",
    "capped",
    "--",
    "sh",
    "-c",
    `trap '' TERM; sleep 1000 & echo $! > '${pidFile}'; wait`,
  ]);
  assert.equal(result.code, 75, result.stderr);
  assert.match(
    result.stderr,
    /^stormlock: Lease on "capped" reached max_hold \(4s\) and is given up\n$/,
  );
  await assertEnded(Number(Deno.readTextFileSync(pidFile)));
  await assertFree(home, "capped");
});

Deno.test("--max-hold and --kill-after are checked before the lock is taken", async () => {
  using home = new CliHome();
  const bad = await home.run(
    ["run", "--max-hold", "soon", "r", "--", "true"],
  );
  assert.equal(bad.code, 64);
  assert.match(bad.stderr, /Bad --max-hold "soon"/);
  const never = await home.run(
    ["run", "--kill-after", "0s", "r", "--", "true"],
  );
  assert.equal(never.code, 64);
  assert.match(never.stderr, /Bad --kill-after "0s"/);
  const short = await home.run(["run", "--ttl", "1s", "r", "--", "true"]);
  assert.equal(short.code, 64);
  assert.match(short.stderr, /too short to hold a lease/);
  await assertFree(home, "r");
});

/** Two handles on one SQLite file, as two processes would have. */
async function twoHandles(): Promise<
  [Stormlock, Stormlock, () => Promise<void>]
> {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-hold-" });
  const path = join(folder, "stormlock.cfg");
  Deno.writeTextFileSync(
    path,
    `[default]\nprincipal = ann\n\n[backend.sqlite]\npath = ${
      join(folder, "locks.db")
    }\n`,
  );
  const first = await openStormlock({ path, warn: () => {} });
  const second = await openStormlock({ path, warn: () => {} });
  return [first, second, async () => {
    await first.close();
    await second.close();
    Deno.removeSync(folder, { recursive: true });
  }];
}

Deno.test("hold() renews in the background, returns the result and releases", async () => {
  const [mine, theirs, close] = await twoHandles();
  try {
    const lock = await mine.lock("held");
    const other = await theirs.lock("held");
    const result = await lock.hold(3, async (signal, lease) => {
      // Past the TTL: only renewals keep it.
      await sleep(4000);
      assert.ok(!signal.aborted);
      assert.equal(await other.isHeld(lease.id), true);
      return "done";
    });
    assert.equal(result, "done");
    assert.equal(await other.current(), null);
  } finally {
    await close();
  }
});

Deno.test("hold() aborts its signal when the lease is broken, and throws the loss", async () => {
  const [mine, theirs, close] = await twoHandles();
  try {
    const lock = await mine.lock("stolen");
    const other = await theirs.lock("stolen");
    let reason: unknown;
    const error = await lock.hold("3s", async (signal, lease) => {
      await other.breakLease(lease.id, "stuck migration");
      await new Promise((resolve) =>
        signal.addEventListener("abort", resolve, { once: true })
      );
      reason = signal.reason;
      return "ignored";
    }).then(() => undefined, (error) => error);
    assert.ok(error instanceof LeaseLostError, String(error));
    assert.equal(error, reason);
    assert.equal(error.kind, "broken");
    assert.equal(error.code, "LEASE_NOT_HELD");
    assert.equal(error.broken?.by?.principal, "ann");
    assert.match(error.message, /broken by ann .*: stuck migration/);
    // Free for the next taker.
    const next = await other.acquire(60);
    await other.release(next.id);
  } finally {
    await close();
  }
});

Deno.test("hold() presumes the lease lost when no renewal succeeds in time, and still releases it", async () => {
  const [mine, theirs, close] = await twoHandles();
  try {
    const real = await mine.lock("flaky");
    const down = new Proxy(real.backend, {
      get(backend, key) {
        if (key === "renew") {
          return () =>
            Promise.reject(new BackendUnavailableError("store is down"));
        }
        const value = Reflect.get(backend, key, backend);
        return typeof value === "function" ? value.bind(backend) : value;
      },
    });
    const lock = new Lock(down, real.settings);
    const retries: string[] = [];
    let held: Lease | undefined;
    const error = await lock.hold(
      3,
      async (signal, lease) => {
        held = lease;
        await new Promise((resolve) =>
          signal.addEventListener("abort", resolve, { once: true })
        );
      },
      { onRenewRetry: (error) => retries.push(error.message) },
    ).then(() => undefined, (error) => error);
    assert.ok(error instanceof LeaseLostError, String(error));
    assert.equal(error.kind, "expired");
    assert.match(error.message, /presumed lost.*store is down/);
    assert.ok(retries.length > 0);
    assert.ok(held);
    assert.equal(await (await theirs.lock("flaky")).current(), null);
  } finally {
    await close();
  }
});

Deno.test("hold() releases when the work throws, and rethrows", async () => {
  const [mine, theirs, close] = await twoHandles();
  try {
    const lock = await mine.lock("throws");
    await assert.rejects(
      lock.hold(3, () => {
        throw new Error("work failed");
      }),
      /work failed/,
    );
    assert.equal(await (await theirs.lock("throws")).current(), null);
  } finally {
    await close();
  }
});

Deno.test("a SIGKILL of run stops its command and grandchild too, and stdin still reaches the command", async () => {
  using home = new CliHome();
  const pidFile = join(home.home, "command.pid");
  const grandchildFile = join(home.home, "grandchild.pid");
  const readFile = join(home.home, "stdin.txt");
  const run = new Deno.Command("sh", {
    args: [
      repoPath("scripts", "stormlock"),
      "run",
      "-t",
      "30s",
      "--kill-after",
      "2s",
      "killed-run",
      "--",
      "sh",
      "-c",
      `read line; echo "$line" > "${readFile}"; sleep 600 & echo $! > "${grandchildFile}"; echo $$ > "${pidFile}"; wait`,
    ],
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      ...home.env,
    },
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = run.stdin.getWriter();
  await writer.write(new TextEncoder().encode("hello\n"));
  const command = Number(await waitForFile(pidFile));
  const grandchild = Number(await waitForFile(grandchildFile));
  assert.equal(await waitForFile(readFile), "hello");
  // The launcher execs Deno, so this is run itself.
  run.kill("SIGKILL");
  await run.status;
  await writer.close().catch(() => {});
  await assertEnded(command);
  await assertEnded(grandchild);
});
