/**
 * The original Stormlock's own CLI test (its `tests/test_cli.sh`, v0.4.1),
 * step for step, written again here: on every store, through the launcher,
 * with the original's CI config files (tests/fixtures/original-ci/, only
 * hosts and ports changed). Each store gets a server of its own without
 * passwords, as the original's CI had (scripts/servers/), and is
 * set up with `stormlock init` where the original's CI ran its setup
 * scripts.
 *
 * With `STORMLOCK_ORIGINAL_TEST_CLI` naming the original's `test_cli.sh`,
 * that script also runs, unchanged, against our CLI on each store.
 */
// test-servers: etcd redis postgres dynamodb mysql
// (it starts its own, but needs them installed as their starters do)
import assert from "assert";
import { join } from "node:path";
import { hasCommand } from "../scripts/servers/_server.ts";
import { CliHome, type CliResult, repoPath, sleep } from "./helpers.ts";
import type { FaultServer } from "../scripts/servers/_daemon.ts";
import { startEtcd } from "../scripts/servers/etcd.ts";
import { hasPostgres, startPostgres } from "../scripts/servers/postgres.ts";
import { hasDynalite, startDynalite } from "../scripts/servers/dynamodb.ts";
import { hasMysql, startMysql } from "../scripts/servers/mysql.ts";
import { startRedis } from "../scripts/servers/redis.ts";

const LEASE_ID = /^[0-9a-f]{32}$/;
/** ISO 8601 with milliseconds, as `current -f oneline` prints it. */
const CREATED = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:Z|[+-]\d\d:\d\d)$/;

/** Where the original's CI ran the dynamodb backend: no AWS account. */
const AWS_ENV = { AWS_EC2_METADATA_DISABLED: "true" };

/** One store: its fixture, and how to start its server. */
interface Store {
  name: string;
  available: () => boolean;
  /** Starts the server; undefined for sqlite, which needs none. */
  start?: (dir: string) => Promise<FaultServer>;
  /** Sets up what the original's CI set up before its test. */
  setup?: (server: FaultServer) => Promise<void>;
  /** Whether the original's CI ran its setup script (we run `init`). */
  init: boolean;
}

const STORES: Store[] = [
  { name: "sqlite", available: () => true, init: false },
  {
    name: "redis",
    available: () => hasCommand("redis-server"),
    start: (dir) => startRedis(dir, false),
    init: false,
  },
  {
    name: "etcd",
    available: () => hasCommand("etcd"),
    start: (dir) => startEtcd(dir, 1),
    init: false,
  },
  {
    name: "postgresql",
    available: hasPostgres,
    start: startPostgres,
    // The original's CI ran PostgreSQL as user "test" with a database
    // "test"; the server here trusts loopback, as that one did.
    setup: async (server) => {
      const { default: postgres } = await import("postgres");
      const sql = postgres(
        `postgres://postgres@127.0.0.1:${server.port}/postgres`,
        { max: 1, onnotice: () => {} },
      );
      try {
        await sql.unsafe("CREATE ROLE test LOGIN");
        await sql.unsafe("CREATE DATABASE test OWNER test");
      } finally {
        await sql.end();
      }
    },
    init: true,
  },
  {
    name: "dynamodb",
    available: hasDynalite,
    start: startDynalite,
    init: true,
  },
  { name: "mysql", available: hasMysql, start: startMysql, init: true },
];

/** The fixture for `store`, with the server's port and a folder put in. */
function config(store: string, port: number | undefined, dir: string) {
  const text = Deno.readTextFileSync(
    repoPath("tests", "fixtures", "original-ci", `${store}.cfg`),
  );
  return text.replaceAll("{port}", String(port)).replaceAll("{dir}", dir);
}

/** Runs the CLI with the config in STORMLOCK_CONFIG, as the original's CI. */
function cli(home: CliHome, path: string, args: string[]): Promise<CliResult> {
  return home.run(args, { STORMLOCK_CONFIG: path, ...AWS_ENV });
}

/** Asserts that a run succeeded and returns its stdout, trimmed. */
function ok(result: CliResult, what: string): string {
  assert.equal(result.code, 0, `${what}: ${result.stderr}`);
  return result.stdout.trim();
}

/** The steps of the original's test_cli.sh, with our stricter checks. */
async function originalSteps(home: CliHome, path: string, prefix: string) {
  const run = (...args: string[]) => cli(home, path, args);
  const resource1 = `${prefix}test`;
  const resource2 = `${prefix}test2`;

  // Clear any existing locks, as reset_lock does.
  for (const resource of [resource1, resource2]) {
    const current = await run("current", resource, "--id-only");
    if (current.code === 0) {
      ok(await run("release", resource, current.stdout.trim()), "reset");
    }
  }

  const id1 = ok(await run("acquire", resource1), "acquire");
  assert.match(id1, LEASE_ID);

  ok(await run("is-held", resource1, id1), "is-held");

  // `read principle timestamp lease_id < <(stormlock current -f oneline …)`
  const line = ok(await run("current", "-f", "oneline", resource1), "current");
  const [principal, timestamp, leaseId, ...rest] = line.split(/\s+/);
  assert.deepEqual(rest, []);
  assert.equal(principal, "test_user");
  assert.match(timestamp, CREATED);
  assert.equal(leaseId, id1);

  // A refused acquire; unlike the original's, it never prints the
  // holder's lease id on stdout.
  const refused = await run("acquire", resource1);
  assert.equal(refused.code, 2, refused.stderr);
  assert.equal(refused.stdout, "");
  assert.ok(!refused.stderr.includes(id1), refused.stderr);

  const res2Id = ok(await run("acquire", resource2), "acquire on another");
  assert.match(res2Id, LEASE_ID);

  ok(await run("release", resource1, id1), "release");

  // Reacquire with a 4-second TTL, renew it, and be refused while it is
  // live. A loaded machine may take longer than the TTL between two of
  // these commands; then the lease has lapsed for a reason the test is not
  // about, and the round runs again (what each round checks never changes).
  let id2 = "";
  let renewed: { id: string; expires: string } | undefined;
  for (let round = 1; !renewed; round++) {
    const slow = (since: number, what: string, result: CliResult) => {
      const elapsed = Date.now() - since;
      assert.ok(elapsed > 3000 && round < 5, `${what}: ${result.stderr}`);
    };
    const taken = Date.now();
    id2 = ok(await run("acquire", resource1, "-t", "4 seconds"), "reacquire");
    assert.notEqual(id2, id1);

    const old = await run("is-held", resource1, id1);
    assert.notEqual(old.code, 0, "old lock still held");

    await sleep(1000);
    const renew = await run("renew", resource1, id2, "-t", "4 seconds");
    if (renew.code !== 0) {
      slow(taken, "renew", renew);
      continue;
    }
    const renewedAt = Date.now();
    const current = await run("current", "--json", resource1);
    const stillHeld = await run("acquire", resource1);
    if (current.code !== 0 || stillHeld.code !== 2) {
      slow(renewedAt, "able to acquire held lock", stillHeld);
      if (stillHeld.code === 0) {
        ok(await run("release", resource1, stillHeld.stdout.trim()), "undo");
      }
      continue;
    }
    renewed = JSON.parse(current.stdout);
    assert.equal(renewed!.id, id2);
  }

  // Expiry: wait until the renewed lease has surely ended.
  const ends = Date.parse(renewed.expires);
  while (Date.now() < ends + 1000) await sleep(250);

  const late = await run("renew", resource1, id2, "-t", "4 seconds");
  assert.equal(late.code, 3, `able to renew expired lock: ${late.stderr}`);
  assert.equal(late.stdout, "");

  const expired = await run("is-held", resource1, id2);
  assert.equal(expired.code, 1, `expired lock still held: ${expired.stderr}`);

  ok(await run("release", resource2, res2Id), "release the other");
}

/** Runs the original's test_cli.sh, unchanged, with `stormlock` on PATH. */
async function originalScript(
  home: CliHome,
  path: string,
  script: string,
  prefix: string,
): Promise<CliResult> {
  const bin = join(home.home, "bin");
  Deno.mkdirSync(bin, { recursive: true });
  Deno.writeTextFileSync(
    join(bin, "stormlock"),
    `#!/bin/sh\nexec sh '${repoPath("scripts", "stormlock")}' "$@"\n`,
  );
  Deno.chmodSync(join(bin, "stormlock"), 0o755);
  const output = await new Deno.Command("bash", {
    args: [script, prefix],
    cwd: home.cwd,
    clearEnv: true,
    env: {
      ...home.env,
      PATH: `${bin}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`,
      DENO: Deno.execPath(),
      STORMLOCK_CONFIG: path,
      ...AWS_ENV,
    },
  }).output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return {
    code: output.code,
    stdout: decode(output.stdout),
    stderr: decode(output.stderr),
  };
}

const script = Deno.env.get("STORMLOCK_ORIGINAL_TEST_CLI");

for (const store of STORES) {
  Deno.test({
    name: `original CLI test: ${store.name}`,
    ignore: !store.available(),
    sanitizeOps: false,
    sanitizeResources: false,
    async fn(t) {
      using home = new CliHome();
      const dir = Deno.makeTempDirSync({ prefix: "stormlock-original-" });
      let server: FaultServer | undefined;
      try {
        server = await store.start?.(join(dir, store.name));
        await store.setup?.(server!);
        const path = home.write(
          `${store.name}.cfg`,
          config(store.name, server?.port, dir),
        );
        if (store.init) ok(await cli(home, path, ["init"]), "init");
        await t.step(
          "acquire, is-held, current -f oneline, refusal, a second resource, release, reacquire -t, renew, expiry, renew refused",
          () => originalSteps(home, path, `${crypto.randomUUID()}-`),
        );
        await t.step({
          name: "the original's test_cli.sh, unchanged",
          ignore: script === undefined,
          async fn() {
            const result = await originalScript(
              home,
              path,
              script!,
              `${crypto.randomUUID()}-`,
            );
            assert.equal(
              result.code,
              0,
              `test_cli.sh failed:\n${result.stdout}\n${result.stderr}`,
            );
          },
        });
      } finally {
        await server?.close().catch(() => {});
        Deno.removeSync(dir, { recursive: true });
      }
    },
  });
}
