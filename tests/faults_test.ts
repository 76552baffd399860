/**
 * Faults and failover, against real servers started for this file alone
 * (scripts/servers/: each starter also starts a dedicated one): a server paused before and in the middle of
 * a command, an acquire delivered late, a server killed and restarted or
 * paused during `acquire --wait`, PostgreSQL restarted with `pg_ctl`, and
 * an etcd cluster losing its leader while 20 acquirers race. A loopback
 * proxy (tests/faults/proxy.ts) puts a fault inside one chosen request:
 * the acquire, found by a unique `--reason`. Every server and proxy is on
 * 127.0.0.1; no host name is ever resolved.
 *
 * The suite never asserts how long something took: it waits for states
 * with bounded polls, and checks exit codes, messages and what the store
 * holds afterwards.
 */
// test-servers: etcd redis postgres dynamodb mysql
// (it starts its own, but needs them installed as their starters do)
import assert from "assert";
import { join } from "node:path";
import {
  AcquireUnknownError,
  BackendUnavailableError,
  LockHeldError,
  openBackend,
} from "../mod.ts";
import type { Backend, Lease } from "../mod.ts";
import { waiters } from "../lib/composition/queue.ts";
import { hasCommand } from "../scripts/servers/_server.ts";
import {
  assertCleanExit,
  CliHome,
  type CliResult,
  repoPath,
  uniqueResource,
} from "./helpers.ts";
import { base64Fragments, FaultProxy } from "./faults/proxy.ts";
import type { BurstReport } from "./faults/burst.ts";
import { delay, type FaultServer, until } from "../scripts/servers/_daemon.ts";
import {
  etcdCall,
  type EtcdCluster,
  startEtcd,
} from "../scripts/servers/etcd.ts";
import {
  hasPostgres,
  type PostgresServer,
  startPostgres,
} from "../scripts/servers/postgres.ts";
import { hasDynalite, startDynalite } from "../scripts/servers/dynamodb.ts";
import { hasMysql, startMysql } from "../scripts/servers/mysql.ts";
import { startRedis } from "../scripts/servers/redis.ts";

/** The per-operation bound the fault configs use. */
const TIMEOUT = "1s";

/** Credentials for dynalite, which checks none; no metadata lookups. */
const AWS_ENV = {
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_ACCESS_KEY_ID: "AKIAFAULTTESTS000000",
  AWS_SECRET_ACCESS_KEY: "fault-tests-secret",
  AWS_REGION: "us-east-1",
};

const LEASE_ID = /^[0-9a-f]{32}$/;

/** A CLI home with configs for one fault server. */
class Harness {
  readonly home = new CliHome();
  readonly server: FaultServer;
  readonly #timeout: string;

  constructor(server: FaultServer, timeout = TIMEOUT) {
    this.server = server;
    this.#timeout = timeout;
  }

  /** Writes a config that reaches the server on `port` (default: directly). */
  config(port?: number, name = `${port ?? "direct"}.cfg`): string {
    const lines = [
      "[default]",
      `backend = ${this.server.backend}`,
      "",
      `[backend.${this.server.backend}]`,
      `timeout = ${this.#timeout}`,
      ...Object.entries(this.server.options(port)).map(([key, value]) =>
        `${key} = ${value}`
      ),
      "",
    ];
    const text = lines.join("\n");
    // Loopback only: every address in a config is 127.0.0.1.
    for (const [, host] of text.matchAll(/\/\/(?:[^@/\s,]*@)?([^:/\s,]+)/g)) {
      assert.equal(host, "127.0.0.1", `a config names ${host}`);
    }
    return this.home.write(name, text);
  }

  /** Runs the CLI with `config` (default: the direct one). */
  run(args: string[], config = this.config()): Promise<CliResult> {
    return this.home.run(["-c", config, ...args], AWS_ENV);
  }

  /** Opens a library backend straight to the server, runs `body`, closes it. */
  async backend<T>(
    body: (backend: Backend) => Promise<T>,
    timeout = "3s",
  ): Promise<T> {
    const backend = await openBackend(
      { ...this.server.options(), timeout },
      { name: this.server.backend, section: `backend.${this.server.backend}` },
    );
    try {
      return await body(backend);
    } finally {
      await backend.close();
    }
  }

  /** The live lease of `resource`, asking until the server answers. */
  current(resource: string): Promise<Lease | null> {
    return until(
      `reading ${resource}`,
      () => this.backend((backend) => backend.current(resource)),
      100,
    );
  }

  /** Takes `resource` through the CLI and returns the lease (`--json`). */
  async acquire(resource: string, extra: string[] = []): Promise<LeaseJson> {
    const result = await this.run(["acquire", "--json", ...extra, resource]);
    assert.equal(result.code, 0, result.stderr);
    const lease = JSON.parse(result.stdout) as LeaseJson;
    assert.match(lease.id, LEASE_ID);
    return lease;
  }

  [Symbol.dispose](): void {
    this.home[Symbol.dispose]();
  }
}

/** A lease as `--json` prints it. */
interface LeaseJson {
  id: string;
  fence: number;
  resource: string;
}

/**
 * Checks that no lease of `resource` is left whose id nobody has: after a
 * failed acquire, the store holds either nothing or the lease id the CLI
 * printed, and then releasing with that id works.
 */
async function assertNoOrphan(
  harness: Harness,
  resource: string,
  result: CliResult,
): Promise<void> {
  const named =
    /lease ([0-9a-f]{32}): release it with "stormlock release (\S+) \1"/
      .exec(result.stderr);
  const released = /the lease it may have taken was released/.test(
    result.stderr,
  );
  assert.ok(
    !(named && released),
    `both released and not: ${result.stderr}`,
  );
  // Requests the paused server buffered are applied once it runs again:
  // look a few times, and every look must agree.
  let last: Lease | null = null;
  for (let i = 0; i < 8; i++) {
    last = await harness.current(resource);
    if (last !== null) {
      assert.ok(
        named !== null && last.id === named[1],
        `lease ${last.id} of "${resource}" is held, and the CLI named ${
          named?.[1] ?? "no lease"
        }: ${result.stderr}`,
      );
    }
    await delay(100);
  }
  if (named && last) {
    const release = await harness.run(["release", resource, named[1]]);
    assert.equal(release.code, 0, release.stderr);
    assert.equal(await harness.current(resource), null);
  }
}

/** A unique marker for `--reason`, and how it looks on the wire. */
function marker(backend: string): { reason: string; wire: string[] } {
  const reason = `fault${crypto.randomUUID().replaceAll("-", "")}`;
  const wire = backend === "etcd"
    ? [reason, ...base64Fragments(reason)]
    : [reason];
  return { reason, wire };
}

/** `init` on a paused server exits 69 with one line, never 0. */
async function pausedInit(harness: Harness): Promise<void> {
  const config = harness.config();
  harness.server.pause();
  let result: CliResult;
  try {
    result = await harness.run(["init", uniqueResource("init")], config);
  } finally {
    harness.server.resume();
  }
  assertCleanExit(result, 69, /did not answer within 1s/);
}

/** `acquire` against a server paused before the command starts. */
async function pausedBefore(harness: Harness): Promise<void> {
  const config = harness.config();
  const resource = uniqueResource("paused");
  harness.server.pause();
  let result: CliResult;
  try {
    result = await harness.run(["acquire", resource], config);
  } finally {
    harness.server.resume();
  }
  assertCleanExit(result, 69, /did not answer within 1s/);
  await assertNoOrphan(harness, resource, result);
}

/**
 * `acquire` whose request reached the server just before it was paused,
 * its answer lost: exit 69 at the timeout with one line, and no lease
 * left that nobody has the id of.
 */
async function pausedMidAcquire(
  harness: Harness,
  resumeAfterMs?: number,
): Promise<void> {
  using proxy = new FaultProxy(harness.server.port);
  const config = harness.config(proxy.port, "proxy.cfg");
  // On a loaded machine the reads before the acquire may themselves run
  // out of time; such a run must fail cleanly too, and is tried again.
  for (let attempt = 1;; attempt++) {
    const resource = uniqueResource("mid");
    const { reason, wire } = marker(harness.server.backend);
    let paused = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    proxy.armOnce(wire, () => {
      harness.server.pause();
      paused = true;
      if (resumeAfterMs !== undefined) {
        timer = setTimeout(() => {
          harness.server.resume();
          proxy.heal();
        }, resumeAfterMs);
      }
    });
    let result: CliResult;
    try {
      result = await harness.run(
        ["acquire", "--reason", reason, resource],
        config,
      );
    } finally {
      clearTimeout(timer);
      harness.server.resume();
      proxy.disarm();
      proxy.heal();
    }
    assertCleanExit(result, 69, /did not answer within 1s/);
    if (paused && resumeAfterMs === undefined) {
      assert.match(
        result.stderr,
        /the lease it may have taken was released|the lock may have been taken as lease [0-9a-f]{32}: release it with "stormlock release/,
      );
    }
    await assertNoOrphan(harness, resource, result);
    if (paused) return;
    assert.ok(
      attempt < 3,
      `the acquire never reached the server: ${result.stderr}`,
    );
  }
}

/**
 * An acquire the network delivers late: its request reaches the server
 * only after the CLI ran out of time, settled, and hung up (the proxy
 * holds the bytes back while the server stays up). Whatever the CLI
 * said, no lease may be left whose id nobody has.
 */
async function lateAcquire(harness: Harness): Promise<void> {
  using proxy = new FaultProxy(harness.server.port);
  const config = harness.config(proxy.port, "proxy.cfg");
  for (let attempt = 1;; attempt++) {
    const resource = uniqueResource("late");
    const { reason, wire } = marker(harness.server.backend);
    const request = proxy.holdOnce(wire);
    let result: CliResult;
    try {
      result = await harness.run(
        ["acquire", "--reason", reason, resource],
        config,
      );
    } finally {
      proxy.disarm();
      await request.deliver();
    }
    assertCleanExit(result, 69, /did not answer within 1s/);
    await assertNoOrphan(harness, resource, result);
    if (request.held) return;
    assert.ok(
      attempt < 3,
      `the acquire never reached the proxy: ${result.stderr}`,
    );
  }
}

/** A lease survives a kill and restart: same id and fence. */
async function survivesKill(harness: Harness): Promise<void> {
  const resource = uniqueResource("durable");
  const lease = await harness.acquire(resource, ["--ttl", "1h"]);
  await harness.server.kill();
  await harness.server.start();
  const shown = await until("current after the restart", async () => {
    const result = await harness.run(["current", "--json", resource]);
    if (result.code === 69) throw new Error(result.stderr);
    return result;
  }, 50);
  assert.equal(shown.code, 0, shown.stderr);
  const after = JSON.parse(shown.stdout) as LeaseJson;
  assert.equal(after.id, lease.id);
  assert.equal(after.fence, lease.fence);
  const release = await harness.run(["release", resource, lease.id]);
  assert.equal(release.code, 0, release.stderr);
}

/**
 * While `acquire --wait 30s` waits for a held lock, the server goes away
 * (`outage`); the wait does not end with 69, and once the holder
 * releases (after the server is back) the waiter gets the lock.
 */
async function waitSurvives(
  harness: Harness,
  outage: () => Promise<void>,
): Promise<void> {
  const resource = uniqueResource("wait");
  const holder = await harness.acquire(resource, ["--ttl", "1h"]);
  const waiting = harness.run(["acquire", "--wait", "30s", resource]);
  let failure: unknown;
  try {
    await until("the waiter in the queue", async () => {
      const queue = await harness.backend((backend) =>
        waiters(backend, resource)
      );
      if (queue.length === 0) throw new Error("nobody waits yet");
    }, 150);
    await outage();
    await until("the holder's release", async () => {
      const release = await harness.run(["release", resource, holder.id]);
      if (release.code === 69) throw new Error(release.stderr);
      assert.equal(release.code, 0, release.stderr);
    }, 50);
  } catch (error) {
    failure = error;
  }
  // The waiter ends on its own within its 30 s wait in any case.
  const result = await waiting;
  if (failure) throw failure;
  assert.equal(result.code, 0, result.stderr);
  const id = result.stdout.trim();
  assert.match(id, LEASE_ID);
  assert.equal((await harness.current(resource))?.id, id);
  const release = await harness.run(["release", resource, id]);
  assert.equal(release.code, 0, release.stderr);
}

/** Kill, 2 s down, start again. */
function restartFor2s(server: FaultServer): () => Promise<void> {
  return async () => {
    await server.kill();
    await delay(2000);
    await server.start();
  };
}

/** SIGSTOP for 2 s, then SIGCONT. */
function pauseFor2s(server: FaultServer): () => Promise<void> {
  return async () => {
    server.pause();
    try {
      await delay(2000);
    } finally {
      server.resume();
    }
  };
}

/** The steps every server backend goes through. */
async function commonFaults(
  t: Deno.TestContext,
  harness: Harness,
): Promise<void> {
  await t.step(
    "init on a paused server exits 69, not 0",
    () => pausedInit(harness),
  );
  await t.step(
    "acquire on a paused server exits 69 at the timeout and leaves no lease",
    () => pausedBefore(harness),
  );
  await t.step(
    "a pause in the middle of acquire exits 69 with one line and leaves no lease nobody has the id of",
    () => pausedMidAcquire(harness),
  );
  await t.step(
    "a pause that ends while the lost acquire is being settled leaves no lease nobody has the id of",
    () => pausedMidAcquire(harness, 1400),
  );
  await t.step(
    "an acquire delivered after the CLI gave up leaves no lease nobody has the id of",
    () => lateAcquire(harness),
  );
  await t.step(
    "a lease survives a kill and restart, same id and fence",
    () => survivesKill(harness),
  );
  await t.step(
    "run stops its command before the lease expires when the server is paused",
    () => runStopsBeforeExpiry(harness),
  );
  await t.step(
    "acquire --wait 30s outlasts a 2 s restart and then acquires",
    () => waitSurvives(harness, restartFor2s(harness.server)),
  );
  await t.step(
    "acquire --wait 30s outlasts a 2 s SIGSTOP and then acquires",
    () => waitSurvives(harness, pauseFor2s(harness.server)),
  );
}

/**
 * `run` with a paused server: no renewal can succeed, so `run` must stop
 * its command (SIGTERM to the group) before the lease expires on the
 * server, when someone else could take it. The command notes the time it
 * was told to stop; history gives the lease's last expiry.
 */
async function runStopsBeforeExpiry(harness: Harness): Promise<void> {
  const resource = uniqueResource("run");
  const ready = join(harness.home.home, `${resource}.ready`);
  const stopped = join(harness.home.home, `${resource}.stopped`);
  const child = new Deno.Command("sh", {
    args: [
      repoPath("scripts", "stormlock"),
      "-c",
      harness.config(),
      "run",
      "--ttl",
      "6s",
      "--kill-after",
      "2s",
      resource,
      "--",
      "sh",
      "-c",
      `trap 'date +%s%3N > "${stopped}"; exit 0' TERM; echo up > "${ready}"; while :; do sleep 0.1; done`,
    ],
    cwd: harness.home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      ...harness.home.env,
      ...AWS_ENV,
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  try {
    await until("the command to start", () => Deno.statSync(ready), 100);
    harness.server.pause();
    const status = await child.status;
    assert.equal(status.code, 75, await stderr);
  } finally {
    harness.server.resume();
    try {
      child.kill("SIGKILL");
    } catch { /* ended */ }
  }
  const killedAt = Number(Deno.readTextFileSync(stopped).trim());
  const events = await until(
    "history",
    () => harness.backend((backend) => backend.history(resource, 50)),
    100,
  );
  const expires = Math.max(...events.map((event) => event.expires.getTime()));
  assert.ok(events.length > 0, "the lease is in history");
  assert.ok(
    killedAt < expires,
    `stopped at ${killedAt}, but the lease ran until ${expires}`,
  );
  assert.match((await stderr).trim(), /^stormlock: .*lease/im);
}

/** Runs `body` with a server of its own, closing it whatever happens. */
async function withServer<S extends FaultServer>(
  start: (dir: string) => Promise<S>,
  body: (server: S) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-faults-" });
  let server: S | undefined;
  try {
    server = await start(dir);
    await body(server);
  } finally {
    await server?.close().catch(() => {});
    Deno.removeSync(dir, { recursive: true });
  }
}

const options = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "faults: redis with AOF, paused, killed and restarted",
  ignore: !hasCommand("redis-server"),
  ...options,
  fn: (t) =>
    withServer(
      (dir) => startRedis(join(dir, "redis"), true),
      async (server) => {
        using harness = new Harness(server);
        await commonFaults(t, harness);
      },
    ),
});

Deno.test({
  name:
    "faults: etcd (one member with a data dir), paused, killed and restarted",
  ignore: !hasCommand("etcd"),
  ...options,
  fn: (t) =>
    withServer((dir) => startEtcd(join(dir, "etcd"), 1), async (server) => {
      using harness = new Harness(server);
      await commonFaults(t, harness);
    }),
});

Deno.test({
  name: "faults: postgres, paused, killed, and restarted with pg_ctl",
  ignore: !hasPostgres(),
  ...options,
  fn: (t) =>
    withServer(
      (dir) => startPostgres(join(dir, "postgres")),
      async (server: PostgresServer) => {
        using harness = new Harness(server);
        await harness.backend((backend) => backend.init());
        await commonFaults(t, harness);
        await t.step(
          "a lease survives pg_ctl restart -m fast, same id and fence",
          async () => {
            const resource = uniqueResource("pg-restart");
            const lease = await harness.acquire(resource, ["--ttl", "1h"]);
            await server.restartFast();
            const shown = await harness.run(["current", "--json", resource]);
            assert.equal(shown.code, 0, shown.stderr);
            const after = JSON.parse(shown.stdout) as LeaseJson;
            assert.equal(after.id, lease.id);
            assert.equal(after.fence, lease.fence);
            const release = await harness.run(["release", resource, lease.id]);
            assert.equal(release.code, 0, release.stderr);
          },
        );
        await t.step(
          "acquire --wait 30s outlasts pg_ctl restart -m fast",
          () => waitSurvives(harness, () => server.restartFast()),
        );
        await t.step(
          "acquire --wait 30s outlasts pg_ctl stop -m fast, 2 s down, start",
          () =>
            waitSurvives(harness, async () => {
              await server.stopFast();
              await delay(2000);
              await server.start();
            }),
        );
      },
    ),
});

Deno.test({
  name: "faults: mysql (MariaDB), paused, killed and restarted",
  ignore: !hasMysql(),
  ...options,
  fn: (t) =>
    withServer(
      (dir) => startMysql(join(dir, "mysql")),
      async (server) => {
        using harness = new Harness(server);
        await harness.backend((backend) => backend.init());
        await commonFaults(t, harness);
      },
    ),
});

Deno.test({
  name: "faults: dynamodb (dynalite on disk), paused, killed and restarted",
  ignore: !hasDynalite(),
  ...options,
  fn: (t) =>
    withServer(
      (dir) => startDynalite(join(dir, "dynalite")),
      async (server) => {
        using harness = new Harness(server);
        await harness.backend((backend) => backend.init());
        await commonFaults(t, harness);
      },
    ),
});

/** How one racer's acquire ended. */
type Outcome =
  | { won: Lease }
  | { lost: Lease }
  | { unknown: string }
  | { failed: string };

/**
 * One racer: its own backend instance; retries only failures that say the
 * acquire was not applied (a plain unavailable error is settled by the
 * kit), and reports an unknown outcome with its lease id.
 */
async function race(cluster: EtcdCluster, resource: string): Promise<Outcome> {
  const backend = await openBackend(
    { ...cluster.options(), timeout: "3s" },
    { name: "etcd", section: "backend.etcd" },
  );
  try {
    let last = "";
    // As Lock's wait does: an attempt whose answer was lost is retried,
    // and its lease id, if it turns up as the holder, is a win.
    const sent = new Set<string>();
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        return { won: await backend.acquire(resource, "racer@faults", 3600) };
      } catch (error) {
        if (error instanceof LockHeldError) {
          return sent.has(error.holder.id)
            ? { unknown: error.holder.id }
            : { lost: error.holder };
        }
        if (error instanceof AcquireUnknownError) sent.add(error.leaseId);
        if (!(error instanceof BackendUnavailableError)) throw error;
        last = error.message;
        await delay(200);
      }
    }
    return { failed: last };
  } finally {
    await backend.close();
  }
}

Deno.test({
  name: "faults: etcd cluster of three loses its leader",
  ignore: !hasCommand("etcd"),
  ...options,
  fn: (t) =>
    withServer(
      (dir) => startEtcd(join(dir, "cluster"), 3),
      async (cluster: EtcdCluster) => {
        using harness = new Harness(cluster, "3s");
        const held = uniqueResource("held");
        const lease = await harness.acquire(held, ["--ttl", "1h"]);

        await t.step(
          "the first command after the leader dies fails over, and a held lease survives",
          async () => {
            const leader = await cluster.leader();
            await leader.daemon.kill();
            const first = await harness.run([
              "acquire",
              uniqueResource("first"),
            ]);
            assert.doesNotMatch(first.stderr, /leader changed/);
            assert.equal(first.code, 0, first.stderr);
            const shown = await harness.run(["current", "--json", held]);
            assert.equal(shown.code, 0, shown.stderr);
            const after = JSON.parse(shown.stdout) as LeaseJson;
            assert.equal(after.id, lease.id);
            assert.equal(after.fence, lease.fence);
            await cluster.startMember(leader);
            await cluster.healthy();
          },
        );

        await t.step(
          "20 racers while the leader is killed: exactly one winner",
          async () => {
            const resource = uniqueResource("race");
            const leader = await cluster.leader();
            const racing = Array.from(
              { length: 20 },
              () => race(cluster, resource),
            );
            await leader.daemon.kill();
            const outcomes = await Promise.all(racing);
            const failed = outcomes.flatMap((o) => "failed" in o ? [o] : []);
            assert.deepEqual(failed, [], "every racer got an answer");
            const current = await harness.current(resource);
            assert.ok(current, "the resource is held");
            const winners = outcomes.filter((o) =>
              "won" in o ||
              ("unknown" in o && o.unknown === current.id)
            );
            assert.equal(winners.length, 1, JSON.stringify(outcomes));
            const won = winners[0];
            assert.equal(
              "won" in won ? won.won.id : (won as { unknown: string }).unknown,
              current.id,
            );
            for (const outcome of outcomes) {
              if ("lost" in outcome) {
                assert.equal(
                  outcome.lost.id,
                  current.id,
                  "losers name the winner",
                );
              }
            }
            const shown = await harness.run(["current", "--json", held]);
            assert.equal(shown.code, 0, shown.stderr);
            assert.equal((JSON.parse(shown.stdout) as LeaseJson).id, lease.id);
            await cluster.startMember(leader);
          },
        );
      },
    ),
});

/** Processes in a burst, and acquires each sends at once. */
const BURST_PROCESSES = 10;
const BURST_EACH = 100;

/**
 * 1,000 contenders (10 processes of 100, each process one backend through
 * `openBackend`, at the store's default timeout) race for one free lock.
 * Then the store is read: one lease holds it, and it is the reported
 * winner's (or one whose id a caller was handed as unknown); every refusal
 * named it; nothing else is left in the store.
 *
 * @returns The reports, and the holder's id.
 */
async function burst(
  backend: string,
  options: Record<string, string>,
): Promise<{ reports: BurstReport[]; holder: string }> {
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-burst-" });
  const resource = uniqueResource("burst");
  const gate = join(dir, "gate");
  try {
    const children = Array.from(
      { length: BURST_PROCESSES },
      (_, i) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--quiet",
            "-A",
            repoPath("tests", "faults", "burst.ts"),
            backend,
            JSON.stringify(options),
            resource,
            String(BURST_EACH),
            join(dir, `ready${i}`),
            gate,
          ],
          env: AWS_ENV,
          stdout: "piped",
          stderr: "piped",
        }).output(),
    );
    await until("every process to be ready", () => {
      const ready = [...Deno.readDirSync(dir)].length;
      if (ready < BURST_PROCESSES) throw new Error(`${ready} ready`);
      return true;
    }, 100);
    Deno.writeTextFileSync(gate, "");
    const outputs = await Promise.all(children);
    const reports = outputs.map((output) => {
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      return JSON.parse(new TextDecoder().decode(output.stdout)) as BurstReport;
    });
    const all = (key: keyof BurstReport) => reports.flatMap((r) => r[key]);
    const busy = all("failed").filter((m) => / is busy: /.test(m)).length;
    const summary = `won ${all("won").length}, refused ${
      all("heldBy").length
    }, unknown ${all("unknown").length}, busy (never sent) ${busy}, timed out ${
      all("failed").length - busy
    }`;
    console.log(
      `${backend} burst of ${BURST_PROCESSES * BURST_EACH}: ${summary}`,
    );
    const holder = await until(
      "reading the store",
      () =>
        withOpen(backend, options, (b) => b.list(resource, { internal: true })),
      100,
    );
    assert.equal(holder.length, 1, `one lease is left: ${summary}`);
    const [lease] = holder;
    assert.equal(lease.resource, resource);
    assert.ok(all("won").length <= 1, summary);
    assert.ok(
      all("won").includes(lease.id) || all("unknown").includes(lease.id),
      `the holder ${lease.id} was reported: ${summary}`,
    );
    for (const id of all("heldBy")) {
      assert.equal(id, lease.id, "every refusal named the holder");
    }
    await withOpen(backend, options, (b) => b.release(resource, lease.id));
    return { reports, holder: lease.id };
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

/** Opens a backend with `options`, runs `body`, closes it. */
async function withOpen<T>(
  name: string,
  options: Record<string, string>,
  body: (backend: Backend) => Promise<T>,
): Promise<T> {
  const backend = await openBackend(options, {
    name,
    section: `backend.${name}`,
  });
  try {
    return await body(backend);
  } finally {
    await backend.close();
  }
}

/** etcd leases that no key is attached to. */
async function keylessLeases(port: number): Promise<string[]> {
  const { leases } = await etcdCall(port, "/v3/lease/leases") as {
    leases?: { ID: string }[];
  };
  const keyless: string[] = [];
  for (const { ID } of leases ?? []) {
    const { keys, TTL } = await etcdCall(port, "/v3/lease/timetolive", {
      ID,
      keys: true,
    }) as { keys?: string[]; TTL?: string };
    if (!keys?.length && Number(TTL ?? 0) > 0) keyless.push(ID);
  }
  return keyless;
}

/** A burst's options for a fault server, at the store's default timeout. */
function burstOptions(server: FaultServer): Record<string, string> {
  const { timeout: _, ...rest } = server.options();
  return rest;
}

Deno.test({
  name:
    "faults: a burst of 1,000 contenders (10 processes x 100) on every store",
  ...options,
  async fn(t) {
    await t.step("sqlite", async () => {
      const dir = Deno.makeTempDirSync({ prefix: "stormlock-burst-db-" });
      try {
        await burst("sqlite", { path: join(dir, "locks.db") });
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
    await t.step({
      name: "redis",
      ignore: !hasCommand("redis-server"),
      fn: () =>
        withServer(
          (dir) => startRedis(join(dir, "redis"), false),
          async (server) => {
            await burst("redis", burstOptions(server));
          },
        ),
    });
    await t.step({
      name: "postgres",
      ignore: !hasPostgres(),
      fn: () =>
        withServer(
          (dir) => startPostgres(join(dir, "postgres")),
          async (server) => {
            await withOpen("postgres", server.options(), (b) => b.init());
            await burst("postgres", burstOptions(server));
          },
        ),
    });
    await t.step({
      name: "dynamodb",
      ignore: !hasDynalite(),
      fn: () =>
        withServer(
          (dir) => startDynalite(join(dir, "dynalite")),
          async (server) => {
            await withOpen("dynamodb", server.options(), (b) => b.init());
            await burst("dynamodb", burstOptions(server));
          },
        ),
    });
    await t.step({
      name: "etcd: and no granted etcd lease is left without a key",
      ignore: !hasCommand("etcd"),
      fn: () =>
        withServer((dir) => startEtcd(join(dir, "etcd"), 1), async (server) => {
          assert.deepEqual(await keylessLeases(server.port), []);
          await burst("etcd", burstOptions(server));
          assert.deepEqual(await keylessLeases(server.port), []);
        }),
    });
  },
});
