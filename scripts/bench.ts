/**
 * The benchmark, in one go: starts the same real servers as the tests
 * (`scripts/servers/`), then measures, side by side in interleaved rounds,
 *
 * - per backend, a whole-process CLI `acquire` through the launcher
 *   against the original Python Stormlock (when `STORMLOCK_ORIGINAL` names
 *   its `stormlock` executable), against an empty `deno run`, against the
 *   floor (bare Deno and a client doing the same writes), and against a
 *   native tool doing them (the physical floor);
 * - `--version` against an empty `deno run`, and the launcher's own cost
 *   (the same `--version` without it);
 * - library throughput: acquire+release pairs per second in one process,
 *   through `Lock` (what `openLock` gives), through the backend layer, and
 *   with the raw client doing the same check-and-set work;
 * - one `list` over 10,000 live locks;
 * - release-to-waiter wake-up latency, from the release's reply to the
 *   waiter's lease, after a random delay;
 * - a burst of 1,000 contenders (10 processes × 100 concurrent acquires)
 *   on one resource, repeated in rounds; after each round it reads the
 *   store: a round fails unless exactly one won and nothing is left over.
 *
 * It prints one markdown table of medians and ratios, with the date and the
 * machine. The machines here are noisy, so only ratios taken in the same
 * rounds mean anything; each ratio is the median of per-round ratios.
 * `--write` also puts that table into docs/performance.md (between
 * `<!-- bench -->` and `<!-- /bench -->`), for a full run only.
 *
 *   deno run -A scripts/bench.ts [--quick] [--only=version,sqlite,redis]
 *     [--cases=cli,throughput,list,wake-up,burst] [--rate-rounds=N] [--write]
 *
 * @module
 */
import { join } from "node:path";
import { withBlock } from "./doc_blocks.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { Redis } from "ioredis";
import postgres from "postgres";
import {
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import { Lock, openBackend } from "../mod.ts";
import type { Backend, BackendOptions } from "../mod.ts";
import { waiters } from "../lib/composition/queue.ts";
import type { ServerModule, StartedServer } from "./servers/_server.ts";

const root = new URL("..", import.meta.url).pathname;
const rootUrl = new URL("..", import.meta.url).href;
const deno = Deno.execPath();
const denoJson = join(root, "deno.json");
const launcher = join(root, "scripts", "stormlock");

const quick = Deno.args.includes("--quick");
const onlyArg = Deno.args.find((arg) => arg.startsWith("--only="));
const only = onlyArg?.slice("--only=".length).split(",");
const casesArg = Deno.args.find((arg) => arg.startsWith("--cases="));
const cases = casesArg?.slice("--cases=".length).split(",");
const rateRoundsArg = Deno.args.find((arg) => arg.startsWith("--rate-rounds="));
/** The page whose `bench` block `--write` replaces with the results. */
const performancePage = join(root, "docs", "performance.md");
const write = Deno.args.includes("--write");
if (write && (quick || only || cases || rateRoundsArg)) {
  console.error(
    "--write records a full run only; drop --quick, --only, --cases and --rate-rounds, or drop --write",
  );
  Deno.exit(64);
}
if (write) withBlock(readPerformancePage(), "bench", "", "docs/performance.md");
/** Interleaved rounds of the whole-process cases. */
const ROUNDS = quick ? 3 : 21;
/** Rounds of the in-process throughput cases, and each one's length. */
const RATE_ROUNDS = rateRoundsArg
  ? Number(rateRoundsArg.slice("--rate-rounds=".length))
  : quick
  ? 2
  : 7;
const RATE_MS = quick ? 200 : 500;
const LIST_LOCKS = quick ? 1_000 : 10_000;
const BURST = { processes: 10, acquirers: 100, rounds: 5 };
/** The original Python CLI's executable, when installed. */
const ORIGINAL = Deno.env.get("STORMLOCK_ORIGINAL");
/** TTL of every lease the benchmark takes, in seconds. */
const TTL = 600;

function log(message: string): void {
  console.error(`[bench] ${message}`);
}

// ---------------------------------------------------------------- timing

/** A measurement: returns milliseconds, or a rate, per call. */
type Sample = () => Promise<number>;

const median = (values: number[]): number =>
  values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * The one timing helper: runs every case once to warm up, then `rounds`
 * rounds in which each case runs once, in an order rotated each round, so
 * drift and noise hit every case alike. Returns each case's samples.
 */
async function sideBySide(
  cases: Record<string, Sample>,
  rounds: number,
): Promise<Record<string, number[]>> {
  const names = Object.keys(cases);
  const samples = Object.fromEntries(
    names.map((name) => [name, [] as number[]]),
  );
  for (const name of names) await cases[name]();
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(round + i) % names.length];
      samples[name].push(await cases[name]());
    }
  }
  return samples;
}

/** The median of the per-round ratios a[i] / b[i]. */
function ratio(a: number[], b: number[]): number {
  return median(a.map((value, i) => value / b[i]));
}

/** Runs a whole process; returns its wall time in ms, or throws. */
async function wall(
  command: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<number> {
  const started = performance.now();
  const output = await new Deno.Command(command, {
    args,
    env: { ...baseEnv, ...env },
    cwd: work,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  if (!output.success) {
    const text = new TextDecoder().decode(output.stderr).trim();
    throw new Error(`${command} ${args.at(-1)} exited ${output.code}: ${text}`);
  }
  return ms;
}

/** Pairs per second of `pair` over about RATE_MS. */
function rate(pair: (n: number) => Promise<void>): Sample {
  let n = 0;
  return async () => {
    const started = performance.now();
    let count = 0;
    while (performance.now() - started < RATE_MS) {
      await pair(n++);
      count++;
    }
    return count / ((performance.now() - started) / 1000);
  };
}

// ---------------------------------------------------------------- the table

interface Row {
  backend: string;
  measure: string;
  median: string;
  against?: string;
  ratio?: number;
  /** e.g. ["≤", 1.6]: the ratio's target. */
  target?: ["≤" | "≥", number];
  note?: string;
}

const rows: Row[] = [];

const ms = (values: number[]) => `${median(values).toFixed(0)} ms`;
const perSecond = (values: number[]) => `${median(values).toFixed(0)} pairs/s`;

function cell(row: Row): string {
  const ratioText = row.ratio === undefined ? "" : `${row.ratio.toFixed(2)}×`;
  let target = "";
  if (row.target && row.ratio !== undefined) {
    const [op, value] = row.target;
    const met = op === "≤" ? row.ratio <= value : row.ratio >= value;
    target = `${op}${value}× ${met ? "✓" : "✗ missed"}`;
  }
  return `| ${row.backend} | ${row.measure} | ${row.median} | ${
    row.against ?? ""
  } | ${ratioText} | ${target} | ${row.note ?? ""} |`;
}

function machine(): string {
  let cpu = "unknown CPU";
  let cores = navigator.hardwareConcurrency;
  try {
    const info = Deno.readTextFileSync("/proc/cpuinfo");
    cpu = /^model name\s*:\s*(.*)$/m.exec(info)?.[1] ?? cpu;
    cores = info.match(/^processor\s*:/gm)?.length ?? cores;
  } catch { /* not Linux */ }
  return `Deno ${Deno.version.deno}, ${cpu}, ${cores} cores, ${Deno.build.os}`;
}

// ---------------------------------------------------------------- setup

const work = Deno.makeTempDirSync({ prefix: "stormlock-bench-" });
const stateHome = join(work, "state");
const empty = join(work, "empty.ts");
Deno.writeTextFileSync(empty, "");
const baseEnv: Record<string, string> = {
  DENO: deno, // the launcher skips its install check
  XDG_STATE_HOME: stateHome,
  USER: "bench",
  AWS_EC2_METADATA_DISABLED: "true",
  NO_COLOR: "1",
};
let unique = 0;
/** A resource name no earlier run used. */
const fresh = (what: string) => `${what}-${Date.now()}-${unique++}`;

async function startServers(): Promise<Record<string, string>> {
  const servers: StartedServer[] = [];
  const folder = join(root, "scripts", "servers");
  const files = [...Deno.readDirSync(folder)]
    .map((entry) => entry.name)
    .filter((name) => name.endsWith(".ts") && !name.startsWith("_"))
    .sort();
  for (const file of files) {
    const module: ServerModule = await import(join(folder, file));
    if (only && !only.includes(module.name)) continue;
    log(`starting ${module.name}`);
    try {
      servers.push(await module.start(join(work, module.name)));
    } catch (error) {
      log(`${module.name} did not start: ${(error as Error).message}`);
    }
  }
  stopServers = () => Promise.all(servers.map((s) => s.stop().catch(() => {})));
  return Object.assign({}, ...servers.map((server) => server.env));
}
let stopServers = () => Promise.resolve([] as void[]);

/** Writes a floor script: bare Deno and the client doing one write. */
function floorScript(name: string, body: string): string {
  const file = join(work, `floor-${name}.ts`);
  Deno.writeTextFileSync(file, `const key = Deno.args[0];\n${body}\n`);
  return file;
}

/**
 * Private parts of a backend file, for the raw client to run the very same
 * statements: a copy of the file with its relative imports made absolute
 * and `names` exported.
 */
async function internals(file: string, names: string[]) {
  const text = Deno.readTextFileSync(join(root, "backends", file))
    .replaceAll('from "../', `from "${rootUrl}`)
    .replaceAll('from "./', `from "${rootUrl}backends/`);
  const copy = join(work, `internals-${file}`);
  Deno.writeTextFileSync(copy, `${text}\nexport { ${names.join(", ")} };\n`);
  return await import(copy);
}

/** The raw client's acquire+release pair, and how to close it. */
interface Raw {
  label: string;
  pair(resource: string): Promise<void>;
  close(): Promise<void> | void;
}

/** One backend's cases. */
interface Spec {
  name: string;
  options: BackendOptions;
  cliTarget: number;
  floorLabel: string;
  floor: string;
  native?: { label: string; command: string; args: (key: string) => string[] };
  env?: Record<string, string>;
  setup?: () => Promise<void>;
  raw: () => Promise<Raw>;
  /** Another raw client, reported beside the first (no target). */
  rawAlso?: () => Promise<Raw>;
  /** Raw-client throughput is a target on these; others are reported. */
  rateTarget?: number;
  /** The most a CLI acquire may cost against the original's. */
  originalTarget?: number;
  /** The original's `[backend.NAME]` section and its setup, if it runs. */
  original?: { backend: string; lines: string[]; setup?(): Promise<void> };
  /** Counts what the store keeps beside the locks (etcd: its leases). */
  storeLeases?: () => Promise<number>;
}

// ------------------------------------------------------------ per backend

function sqliteSpec(): Spec {
  const floorDb = join(work, "floor.db");
  const rawDb = join(work, "raw.db");
  const insert =
    "INSERT INTO floor (resource, lease, expires) VALUES (?, ?, ?) ON CONFLICT DO NOTHING";
  return {
    name: "sqlite",
    options: { path: join(work, "library.db") },
    cliTarget: 1.6,
    rateTarget: 0.9,
    floorLabel: "node:sqlite INSERT",
    floor: `import { DatabaseSync } from "node:sqlite";
const db = new DatabaseSync(${JSON.stringify(floorDb)}, { timeout: 5000 });
db.exec("PRAGMA journal_mode = WAL");
db.prepare(${
      JSON.stringify(insert)
    }).run(key, crypto.randomUUID(), Date.now() + 600000);
db.close();`,
    native: {
      label: "sqlite3 INSERT",
      command: "sqlite3",
      args: (key) => [
        floorDb,
        `.timeout 5000`,
        `INSERT INTO floor VALUES ('${key}', 'x', 0) ON CONFLICT DO NOTHING`,
      ],
    },
    setup() {
      const db = new DatabaseSync(floorDb);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec(
        "CREATE TABLE floor (resource TEXT PRIMARY KEY, lease TEXT, expires INTEGER)",
      );
      db.close();
      return Promise.resolve();
    },
    async raw() {
      // The schema as Stormlock makes it, then its statements by hand.
      const made = await openBackend({ path: rawDb }, context("sqlite"));
      await made.close();
      const db = new DatabaseSync(rawDb, { timeout: 5000 });
      db.exec("PRAGMA journal_mode = WAL");
      const cache = new Map<string, StatementSync>();
      const sql = (text: string) => {
        if (!cache.has(text)) cache.set(text, db.prepare(text));
        return cache.get(text)!;
      };
      const record = (
        kind: string,
        row: Record<string, unknown>,
        at: number,
      ) => {
        sql(
          `INSERT INTO events (resource, kind, at_ms, lease_id, principal, host,
         reason, link, fence, created_ms, expires_ms, by_principal, by_host,
         by_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(
          row.resource as string,
          kind,
          at,
          row.lease_id as string,
          row.principal as string,
          row.host as string,
          null,
          null,
          row.fence as number,
          row.created_ms as number,
          row.expires_ms as number,
          null,
          null,
          null,
        );
        sql(`DELETE FROM events WHERE resource = ?1 AND (at_ms < ?2 OR seq <= (
         SELECT seq FROM events WHERE resource = ?1
         ORDER BY seq DESC LIMIT 1 OFFSET ?3))`).run(
          row.resource as string,
          at - 30 * 86400_000,
          1000,
        );
      };
      const transaction = (body: () => void) => {
        db.exec("BEGIN IMMEDIATE");
        try {
          body();
          db.exec("COMMIT");
        } catch (error) {
          if (db.isTransaction) db.exec("ROLLBACK");
          throw error;
        }
      };
      return {
        label: "node:sqlite, the same statements",
        pair(resource) {
          const id = crypto.randomUUID().replaceAll("-", "");
          transaction(() => {
            const now = Date.now();
            const old = sql("SELECT * FROM leases WHERE resource = ?").get(
              resource,
            ) as { expires_ms: number } | undefined;
            if (old && old.expires_ms > now) throw new Error("held");
            const { last } = sql(
              `INSERT INTO fences (resource, last) VALUES (?, 1)
         ON CONFLICT (resource) DO UPDATE SET last = last + 1
         RETURNING last`,
            ).get(resource) as { last: number };
            const row = {
              resource,
              lease_id: id,
              principal: "bench@host",
              host: "host",
              fence: last,
              created_ms: now,
              expires_ms: now + TTL * 1000,
            };
            sql(
              `INSERT INTO leases (resource, lease_id, principal, host, reason,
           link, fence, created_ms, expires_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            ).run(
              resource,
              id,
              row.principal,
              row.host,
              null,
              null,
              last,
              now,
              row.expires_ms,
            );
            record("acquired", row, now);
          });
          transaction(() => {
            const now = Date.now();
            const row = sql(`DELETE FROM leases
         WHERE resource = ? AND lease_id = ? AND expires_ms > ?
         RETURNING *`).get(resource, id, now);
            if (!row) throw new Error("not held");
            record("released", row, now);
          });
          return Promise.resolve();
        },
        close: () => db.close(),
      };
    },
  };
}

// A minimal acquire and release with the same writes as Stormlock's
// scripts: the lease hash with its expiry, the fence, the expiry index and
// a history entry (without the 0.1 compatibility and expired-event checks).
// KEYS lease, state, history, index; ARGV resource, id, principal, ttl ms.
const RAW_ACQUIRE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fence = redis.call('HINCRBY', KEYS[2], 'last', 1)
local expires = string.format('%.0f', now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'principal', ARGV[3],
  'created', string.format('%.0f', now), 'expires', expires, 'fence', fence)
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('ZADD', KEYS[4], expires, ARGV[1])
redis.call('LPUSH', KEYS[3], cjson.encode({kind = 'acquired', at = now,
  id = ARGV[2], principal = ARGV[3], fence = fence}))
redis.call('LTRIM', KEYS[3], 0, 999)
return fence
`;
const RAW_RELEASE = `
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[2] then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local t = redis.call('TIME')
redis.call('LPUSH', KEYS[3], cjson.encode({kind = 'released', at = t[1], id = ARGV[2]}))
redis.call('LTRIM', KEYS[3], 0, 999)
return 1
`;

function redisSpec(env: Record<string, string>): Spec {
  const url = env.STORMLOCK_TEST_REDIS_URL;
  const clientOptions = {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  };
  return {
    name: "redis",
    options: { url },
    cliTarget: 5,
    originalTarget: 0.8,
    original: { backend: "redis", lines: [`url = ${url}`] },
    floorLabel: "ioredis SET NX PX",
    floor: `import { Redis } from "npm:ioredis@^5.8.0";
const redis = new Redis(${JSON.stringify(url)}, {
  lazyConnect: true,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
});
await redis.connect();
await redis.set("floor:" + key, crypto.randomUUID(), "PX", 600000, "NX");
await redis.quit();`,
    native: {
      label: "redis-cli SET NX PX",
      command: "redis-cli",
      args: (key) => [
        "--no-auth-warning",
        "-u",
        url,
        "SET",
        `floor:${key}`,
        "x",
        "NX",
        "PX",
        "600000",
      ],
    },
    async raw() {
      const redis = new Redis(url, clientOptions);
      await redis.connect();
      const acquire = await redis.script("LOAD", RAW_ACQUIRE) as string;
      const release = await redis.script("LOAD", RAW_RELEASE) as string;
      return {
        label: "ioredis EVALSHA, minimal scripts",
        async pair(resource) {
          const id = crypto.randomUUID().replaceAll("-", "");
          const keys = ["lease", "state", "history"].map((kind) =>
            `rawbench:${kind}:${resource}`
          ).concat("rawbench:index");
          const fence = await redis.evalsha(
            acquire,
            4,
            ...keys,
            resource,
            id,
            "bench@host",
            TTL * 1000,
          );
          if (!fence) throw new Error("held");
          if (!await redis.evalsha(release, 4, ...keys, resource, id)) {
            throw new Error("not held");
          }
        },
        close: () => void redis.disconnect(),
      };
    },
    async rawAlso() {
      // Stormlock's own scripts, from its file: what is left is the library.
      const { ACQUIRE, END } = await internals("redis.ts", ["ACQUIRE", "END"]);
      const redis = new Redis(url, clientOptions);
      await redis.connect();
      const acquire = await redis.script("LOAD", ACQUIRE) as string;
      const release = await redis.script("LOAD", END) as string;
      return {
        label: "ioredis EVALSHA, Stormlock's own scripts",
        async pair(resource) {
          const id = crypto.randomUUID().replaceAll("-", "");
          const keys = ["lease", "state", "history"].map((kind) =>
            `rawsame:${kind}:${resource}`
          ).concat("rawsame:index", `rawsame:waiters:${resource}`);
          const kept = [resource, 1000, 30 * 86400_000];
          const [status] = await redis.evalsha(
            acquire,
            5,
            ...keys,
            ...kept,
            id,
            "bench@host",
            TTL * 1000,
            "host",
            "",
            "",
          ) as string[];
          if (status !== "acquired") throw new Error(status);
          if (
            !await redis.evalsha(release, 5, ...keys, ...kept, id, "released")
          ) {
            throw new Error("not held");
          }
        },
        close: () => void redis.disconnect(),
      };
    },
  };
}

const b64 = (text: string) => btoa(text);

function etcdSpec(env: Record<string, string>): Spec {
  const url = env.STORMLOCK_TEST_ETCD_URL;
  const call = async (path: string, body: unknown) => {
    const response = await fetch(`${url}${path}`, {
      method: "POST",
      body: JSON.stringify(body),
    });
    const json = await response.json();
    if (!response.ok) throw new Error(`${path}: ${JSON.stringify(json)}`);
    return json;
  };
  return {
    name: "etcd",
    options: { hosts: url },
    cliTarget: 2.5,
    originalTarget: 0.85,
    original: {
      backend: "etcd",
      lines: [
        `host = ${new URL(url).hostname}`,
        `port = ${new URL(url).port}`,
        "prefix = /original/",
      ],
    },
    floorLabel: "fetch: lease grant + txn",
    floor: `const k = btoa("/floor/" + key);
const call = async (path, body) => {
  const response = await fetch(${JSON.stringify(url)} + path, {
    method: "POST",
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await response.text());
  return await response.json();
};
const { ID } = await call("/v3/lease/grant", { TTL: 600 });
await call("/v3/kv/txn", {
  compare: [{ key: k, result: "EQUAL", target: "CREATE", create_revision: "0" }],
  success: [{ request_put: { key: k, value: btoa(crypto.randomUUID()), lease: ID } }],
});`,
    native: {
      label: "curl: lease grant + txn",
      command: "sh",
      args: (key) => [
        "-c",
        `id=$(curl -sf -d '{"TTL":600}' "$1/v3/lease/grant" | sed 's/.*"ID":"\\([0-9]*\\)".*/\\1/') && curl -sf -d "{\\"compare\\":[{\\"key\\":\\"$2\\",\\"result\\":\\"EQUAL\\",\\"target\\":\\"CREATE\\",\\"create_revision\\":\\"0\\"}],\\"success\\":[{\\"request_put\\":{\\"key\\":\\"$2\\",\\"value\\":\\"eA==\\",\\"lease\\":\\"$id\\"}}]}" "$1/v3/kv/txn" >/dev/null`,
        "sh",
        url,
        b64(`/floor/${key}`),
      ],
    },
    async storeLeases() {
      const { leases } = await call("/v3/lease/leases", {});
      return (leases ?? []).length;
    },
    raw() {
      return Promise.resolve({
        label: "fetch: grant, txn put, txn delete, revoke",
        async pair(resource) {
          const key = b64(`/rawbench/${resource}`);
          const value = b64(JSON.stringify({ id: crypto.randomUUID() }));
          const { ID } = await call("/v3/lease/grant", { TTL });
          const put = await call("/v3/kv/txn", {
            compare: [{
              key,
              result: "EQUAL",
              target: "CREATE",
              create_revision: "0",
            }],
            success: [{ request_put: { key, value, lease: ID } }],
          });
          if (!put.succeeded) throw new Error("held");
          const deleted = await call("/v3/kv/txn", {
            compare: [{ key, result: "EQUAL", target: "VALUE", value }],
            success: [{ request_delete_range: { key } }],
          });
          if (!deleted.succeeded) throw new Error("not held");
          await call("/v3/lease/revoke", { ID });
        },
        close() {},
      });
    },
  };
}

/** `url` with libpq's options parameter setting the search path. */
function withSearchPath(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("options", `-csearch_path=${schema}`);
  return parsed.href;
}

function postgresSpec(env: Record<string, string>): Spec {
  const url = env.STORMLOCK_TEST_POSTGRES_URL;
  const insert = (key: string) =>
    `INSERT INTO floor (resource, lease, expires) VALUES ('${key}', gen_random_uuid(), now() + interval '10 minutes') ON CONFLICT DO NOTHING`;
  return {
    name: "postgres",
    options: { url },
    cliTarget: 4,
    rateTarget: 0.9,
    originalTarget: 0.85,
    original: {
      backend: "postgresql",
      // Its own table, in a schema of its own (the names would clash).
      lines: [`connection = ${withSearchPath(url, "original")}`],
      async setup() {
        const sql = postgres(url, { max: 1, onnotice: () => {} });
        await sql`CREATE SCHEMA IF NOT EXISTS original`;
        await sql`CREATE TABLE IF NOT EXISTS original.stormlock (
          resource text PRIMARY KEY, lease uuid NOT NULL,
          principal text NOT NULL,
          created timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
          expires timestamp NOT NULL)`;
        await sql.end();
      },
    },
    floorLabel: "postgres.js INSERT … ON CONFLICT",
    floor: `import postgres from "npm:postgres@^3.4.7";
const sql = postgres(${JSON.stringify(url)}, { max: 1, onnotice: () => {} });
await sql\`INSERT INTO floor (resource, lease, expires)
  VALUES (\${key}, \${crypto.randomUUID()}, now() + interval '10 minutes')
  ON CONFLICT DO NOTHING\`;
await sql.end();`,
    native: {
      label: "psql -c INSERT",
      command: "psql",
      args: (key) => [url, "-X", "-q", "-c", insert(key)],
    },
    async setup() {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      await sql`CREATE TABLE IF NOT EXISTS floor
        (resource text PRIMARY KEY, lease uuid, expires timestamptz)`;
      await sql.end();
    },
    async raw() {
      // The very statements the backend sends, from its own file.
      const { statements, quoteName, DEFAULT_TABLE } = await internals(
        "postgres.ts",
        ["statements", "quoteName"],
      );
      const s = statements(
        quoteName(DEFAULT_TABLE),
        quoteName(`${DEFAULT_TABLE}_events`),
      );
      const sql = postgres(url, {
        max: 1,
        fetch_types: false,
        onnotice: () => {},
      });
      return {
        label: "postgres.js, the same two statements",
        async pair(resource) {
          const id = crypto.randomUUID();
          const [row] = await sql.unsafe(s.acquire, [
            resource,
            id,
            "bench@host",
            "host",
            null,
            null,
            TTL,
            1000,
            30 * 86400,
            `${DEFAULT_TABLE}_events`,
            null, // no waiters to defer to, as the backend layer
            null,
          ], { prepare: true });
          if (!row?.won) throw new Error("held");
          const [ended] = await sql.unsafe(s.end, [
            resource,
            id,
            "released",
            null,
            null,
            null,
            1000,
            30 * 86400,
            `${DEFAULT_TABLE}_events`,
          ], { prepare: true });
          if (!ended) throw new Error("not held");
        },
        close: () => sql.end(),
      };
    },
  };
}

function mysqlSpec(env: Record<string, string>): Spec {
  const server = {
    host: env.STORMLOCK_TEST_MYSQL_HOST,
    port: env.STORMLOCK_TEST_MYSQL_PORT,
    user: env.STORMLOCK_TEST_MYSQL_USER,
    password: env.STORMLOCK_TEST_MYSQL_PASSWORD,
    database: env.STORMLOCK_TEST_MYSQL_DATABASE,
  };
  const connection = { ...server, port: Number(server.port), timezone: "Z" };
  return {
    name: "mysql",
    options: server,
    cliTarget: 4,
    floorLabel: "mysql2 INSERT IGNORE",
    floor: `import mysql from "npm:mysql2@^3.24.6/promise";
const db = await mysql.createConnection(${JSON.stringify(connection)});
await db.execute("INSERT IGNORE INTO floor (resource, lease, expires) VALUES (?, UNHEX(?), DATE_ADD(UTC_TIMESTAMP(3), INTERVAL 10 MINUTE))", [key, crypto.randomUUID().replaceAll("-", "")]);
await db.end();`,
    native: {
      label: "mariadb -e INSERT IGNORE",
      command: "mariadb",
      args: (key) => [
        "--no-defaults",
        `--host=${server.host}`,
        `--port=${server.port}`,
        `--user=${server.user}`,
        `--password=${server.password}`,
        server.database,
        "-e",
        `INSERT IGNORE INTO floor (resource, lease, expires) VALUES ('${key}', UNHEX(REPLACE(UUID(), '-', '')), DATE_ADD(UTC_TIMESTAMP(3), INTERVAL 10 MINUTE))`,
      ],
    },
    async setup() {
      const { default: mysql } = await import("mysql2/promise");
      const db = await mysql.createConnection(connection);
      await db.query(`CREATE TABLE IF NOT EXISTS floor (resource VARCHAR(200)
        PRIMARY KEY, lease BINARY(16), expires DATETIME(3))`);
      await db.end();
    },
    async raw() {
      // The very statements the backend sends, from its own file.
      const { statements, quoteName, DEFAULT_TABLE } = await internals(
        "mysql.ts",
        ["statements", "quoteName"],
      );
      const s = statements(
        quoteName(DEFAULT_TABLE),
        quoteName(`${DEFAULT_TABLE}_events`),
      );
      const { default: mysql } = await import("mysql2/promise");
      const db = await mysql.createConnection(connection);
      type Row = { live?: number; events: number; fence: number; now: Date };
      const run = async (sql: string, params: unknown[]) =>
        (await db.execute(sql, params as never))[0] as Row[];
      return {
        label: "mysql2, the same statements",
        async pair(resource) {
          const key = new TextEncoder().encode(resource);
          const id = crypto.randomUUID().replaceAll("-", "");
          await db.query("START TRANSACTION");
          let [row] = await run(s.lock, [key]);
          if (!row) {
            await db.query("COMMIT");
            await run(s.makeRow, [key]);
            await db.query("START TRANSACTION");
            [row] = await run(s.lock, [key]);
          }
          if (row.live) throw new Error("held");
          const { now } = row;
          if (Number(row.events) === 0) [row] = await run(s.counts, [key]);
          const n = Number(row.events) + 1;
          const fence = Number(row.fence) + 1;
          await run(s.take, [
            id,
            "bench@host",
            "host",
            null,
            null,
            fence,
            n,
            now,
            now,
            TTL,
            key,
          ]);
          await run(s.recordRow, ["acquired", null, null, null, null, key]);
          await db.query("COMMIT");
          await db.query("START TRANSACTION");
          const [live] = await run(s.liveLease, [key, id]);
          if (!live) throw new Error("not held");
          await run(s.recordOld, [
            n + 1,
            "released",
            null,
            null,
            null,
            null,
            key,
          ]);
          await run(s.end, [key]);
          await db.query("COMMIT");
        },
        close: () => db.end(),
      };
    },
  };
}

function dynamodbSpec(env: Record<string, string>): Spec {
  const endpoint = env.STORMLOCK_TEST_DYNAMODB_ENDPOINT;
  const credentials = { accessKeyId: "AKIDBENCH", secretAccessKey: "bench" };
  const clientOptions = {
    region: "us-east-1",
    endpoint,
    credentials,
    maxAttempts: 1,
  };
  const createTable = async (name: string) => {
    const client = new DynamoDBClient(clientOptions);
    await client.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: [{
          AttributeName: "resource",
          AttributeType: "S",
        }],
        KeySchema: [{ AttributeName: "resource", KeyType: "HASH" }],
        BillingMode: "PAY_PER_REQUEST",
      }),
    );
    for (let i = 0; i < 100; i++) {
      const { Table } = await client.send(
        new DescribeTableCommand({ TableName: name }),
      );
      if (Table?.TableStatus === "ACTIVE") break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    client.destroy();
  };
  const put = (key: string) => ({
    TableName: "floor",
    Item: { resource: { S: key }, lease: { S: crypto.randomUUID() } },
    ConditionExpression: "attribute_not_exists(#r)",
    ExpressionAttributeNames: { "#r": "resource" },
  });
  return {
    name: "dynamodb",
    options: {
      endpoint,
      region: "us-east-1",
      access_key_id: credentials.accessKeyId,
      secret_access_key: credentials.secretAccessKey,
      table: "stormlock",
    },
    cliTarget: 6.5,
    originalTarget: 0.85,
    original: {
      backend: "dynamodb",
      lines: [
        `endpoint = ${endpoint}`,
        "region = us-east-1",
        "table = original",
      ],
      setup: () => createTable("original"),
    },
    floorLabel: "AWS SDK conditional PutItem",
    floor:
      `import { DynamoDBClient, PutItemCommand } from "npm:@aws-sdk/client-dynamodb@^3.900.0";
const client = new DynamoDBClient(${JSON.stringify(clientOptions)});
await client.send(new PutItemCommand({
  TableName: "floor",
  Item: { resource: { S: key }, lease: { S: crypto.randomUUID() } },
  ConditionExpression: "attribute_not_exists(#r)",
  ExpressionAttributeNames: { "#r": "resource" },
}));
client.destroy();`,
    native: {
      label: "curl --aws-sigv4 conditional PutItem",
      command: "curl",
      args: (key) => [
        "-sf",
        "--aws-sigv4",
        "aws:amz:us-east-1:dynamodb",
        "--user",
        `${credentials.accessKeyId}:${credentials.secretAccessKey}`,
        "-H",
        "X-Amz-Target: DynamoDB_20120810.PutItem",
        "-H",
        "Content-Type: application/x-amz-json-1.0",
        "-d",
        JSON.stringify(put(key)),
        "-o",
        "/dev/null",
        endpoint,
      ],
    },
    env: {
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
    },
    setup: () => createTable("floor"),
    raw() {
      const client = new DynamoDBClient(clientOptions);
      return Promise.resolve({
        label: "AWS SDK conditional PutItem + DeleteItem",
        async pair(resource) {
          const lease = crypto.randomUUID();
          await client.send(
            new PutItemCommand({
              TableName: "floor",
              Item: {
                resource: { S: `raw-${resource}` },
                lease: { S: lease },
                expires: { N: String(Date.now() + TTL * 1000) },
              },
              ConditionExpression: "attribute_not_exists(#r) OR #e < :now",
              ExpressionAttributeNames: { "#r": "resource", "#e": "expires" },
              ExpressionAttributeValues: { ":now": { N: String(Date.now()) } },
            }),
          );
          await client.send(
            new DeleteItemCommand({
              TableName: "floor",
              Key: { resource: { S: `raw-${resource}` } },
              ConditionExpression: "#l = :lease",
              ExpressionAttributeNames: { "#l": "lease" },
              ExpressionAttributeValues: { ":lease": { S: lease } },
            }),
          );
        },
        close: () => client.destroy(),
      });
    },
  };
}

function context(name: string) {
  return { name, section: `backend.${name}` };
}

/** The INI config the CLI gets for a backend. */
function writeConfig(spec: Spec): string {
  const file = join(work, `${spec.name}.cfg`);
  const options = spec.name === "sqlite" ? {} : spec.options;
  Deno.writeTextFileSync(
    file,
    [
      "[default]",
      `backend = ${spec.name}`,
      "ttl = 10m",
      "",
      `[backend.${spec.name}]`,
      ...Object.entries(options).map(([key, value]) => `${key} = "${value}"`),
      "",
    ].join("\n"),
  );
  return file;
}

// ------------------------------------------------------------ the sections

async function startup(): Promise<void> {
  const flags = [
    "run",
    "--quiet",
    "--no-prompt",
    "--no-remote",
    "--allow-env",
    "--allow-sys=hostname",
    "--allow-read",
    "--allow-net",
    `--allow-write=${join(stateHome, "stormlock")}`,
    join(root, "main.ts"),
    "--version",
  ];
  const s = await sideBySide({
    empty: () => wall(deno, ["run", "--quiet", empty]),
    launcher: () => wall(launcher, ["--version"]),
    direct: () => wall(deno, flags),
  }, ROUNDS);
  const against = `empty deno run ${ms(s.empty)}`;
  rows.push({
    backend: "—",
    measure: "`--version` via the launcher",
    median: ms(s.launcher),
    against,
    ratio: ratio(s.launcher, s.empty),
    target: ["≤", 1.3],
  }, {
    backend: "—",
    measure: "`--version`, `deno run main.ts` without the launcher",
    median: ms(s.direct),
    against,
    ratio: ratio(s.direct, s.empty),
  }, {
    backend: "—",
    measure: "the launcher's own cost (`--version` with it, without it)",
    median: `${
      median(s.launcher.map((value, i) => value - s.direct[i])).toFixed(1)
    } ms`,
    against: `without ${ms(s.direct)}`,
    ratio: ratio(s.launcher, s.direct),
    note: "median of per-round differences",
  });
}

async function cli(spec: Spec): Promise<void> {
  const config = writeConfig(spec);
  const floor = floorScript(spec.name, spec.floor);
  const cases: Record<string, Sample> = {
    empty: () => wall(deno, ["run", "--quiet", empty]),
    floor: () =>
      wall(deno, [
        "run",
        "--quiet",
        "-A",
        `--config=${denoJson}`,
        floor,
        fresh("floor"),
      ], spec.env),
    cli: () =>
      wall(launcher, ["-c", config, "acquire", fresh("cli")], spec.env),
  };
  const native = spec.native;
  if (native) {
    cases.native = () =>
      wall(native.command, native.args(fresh("native")), spec.env);
  }
  const original = ORIGINAL && spec.original;
  if (original) {
    await original.setup?.();
    const file = join(work, `${spec.name}-original.cfg`);
    Deno.writeTextFileSync(
      file,
      [
        "[default]",
        `backend = ${original.backend}`,
        "principal = bench",
        "ttl = 10 minutes",
        "",
        `[backend.${original.backend}]`,
        // configparser reads % as interpolation.
        ...original.lines.map((line) => line.replaceAll("%", "%%")),
        "",
      ].join("\n"),
    );
    cases.original = () =>
      wall(ORIGINAL, ["-c", file, "acquire", fresh("original")], spec.env);
  }
  const s = await sideBySide(cases, ROUNDS);
  if (original) {
    rows.push({
      backend: spec.name,
      measure: "CLI `acquire` via the launcher",
      median: ms(s.cli),
      against: `original Python CLI ${ms(s.original)}`,
      ratio: ratio(s.cli, s.original),
      target: spec.originalTarget ? ["≤", spec.originalTarget] : undefined,
    });
  } else if (spec.original) {
    rows.push({
      backend: spec.name,
      measure: "CLI `acquire` via the launcher",
      median: ms(s.cli),
      against: "original Python CLI: not installed",
      note: "set STORMLOCK_ORIGINAL to its `stormlock` executable",
    });
  }
  rows.push({
    backend: spec.name,
    measure: "CLI `acquire` via the launcher",
    median: ms(s.cli),
    against: `empty deno run ${ms(s.empty)}`,
    ratio: ratio(s.cli, s.empty),
    target: ["≤", spec.cliTarget],
  }, {
    backend: spec.name,
    measure: "CLI `acquire` via the launcher",
    median: ms(s.cli),
    against: `floor (${spec.floorLabel}) ${ms(s.floor)}`,
    ratio: ratio(s.cli, s.floor),
    target: ["≤", 1.1],
  }, {
    backend: spec.name,
    measure: `floor: bare Deno + ${spec.floorLabel}`,
    median: ms(s.floor),
    against: `empty deno run ${ms(s.empty)}`,
    ratio: ratio(s.floor, s.empty),
  });
  if (native) {
    rows.push({
      backend: spec.name,
      measure: `native: ${native.label}`,
      median: ms(s.native),
      against: `CLI acquire ${ms(s.cli)}`,
      ratio: ratio(s.native, s.cli),
    });
  }
}

async function throughput(spec: Spec, backend: Backend): Promise<void> {
  const raws = [
    await spec.raw(),
    ...(spec.rawAlso ? [await spec.rawAlso()] : []),
  ];
  try {
    // What users get from openLock: a Lock, which defers to waiters.
    const locks = Array.from(
      { length: 10 },
      (_, i) => lockOn(backend, `rate-lock-${i}`, "bench@host"),
    );
    const cases: Record<string, Sample> = {
      lock: rate(async (n) => {
        const lock = locks[n % 10];
        const lease = await lock.acquire();
        await lock.release(lease.id);
      }),
      backend: rate(async (n) => {
        const resource = `rate-${n % 10}`;
        const lease = await backend.acquire(resource, "bench@host", TTL, {
          host: "host",
        });
        await backend.release(resource, lease.id);
      }),
    };
    raws.forEach((raw, i) => {
      cases[`raw${i}`] = rate((n) => raw.pair(`rate-${n % 10}`));
    });
    const s = await sideBySide(cases, RATE_ROUNDS);
    const measure = "library: acquire+release, one process";
    rows.push({
      backend: spec.name,
      measure: `${measure}, through \`Lock\``,
      median: perSecond(s.lock),
      against: `the backend layer ${perSecond(s.backend)}`,
      ratio: ratio(s.lock, s.backend),
      target: ["≥", 0.85],
    });
    raws.forEach((raw, i) => {
      const against = `raw (${raw.label}) ${perSecond(s[`raw${i}`])}`;
      rows.push({
        backend: spec.name,
        measure: `${measure}, through \`Lock\``,
        median: perSecond(s.lock),
        against,
        ratio: ratio(s.lock, s[`raw${i}`]),
        target: spec.rateTarget && i === 0 ? ["≥", spec.rateTarget] : undefined,
      }, {
        backend: spec.name,
        measure: `${measure}, the backend layer`,
        median: perSecond(s.backend),
        against,
        ratio: ratio(s.backend, s[`raw${i}`]),
      });
    });
  } finally {
    for (const raw of raws) await raw.close();
  }
}

async function list(spec: Spec, backend: Backend): Promise<void> {
  const prefix = `list-${Date.now()}/`;
  const started = performance.now();
  for (let i = 0; i < LIST_LOCKS; i += 200) {
    const batch = [];
    for (let j = i; j < Math.min(LIST_LOCKS, i + 200); j++) {
      batch.push(backend.acquire(`${prefix}${j}`, "bench@host", TTL));
    }
    await Promise.all(batch);
  }
  const fill = performance.now() - started;
  let count = 0;
  const s = await sideBySide({
    list: async () => {
      const t = performance.now();
      count = (await backend.list(prefix)).length;
      return performance.now() - t;
    },
  }, quick ? 1 : 5);
  rows.push({
    backend: spec.name,
    measure: `library: one \`list\` of ${
      LIST_LOCKS.toLocaleString("en")
    } locks`,
    median: ms(s.list),
    note: `${count === LIST_LOCKS ? "all" : `${count} of`} ${
      LIST_LOCKS.toLocaleString("en")
    } listed; taking them (200 at a time) took ${(fill / 1000).toFixed(1)} s`,
  });
}

/** A lock on `resource` over `backend`, as the library opens one. */
function lockOn(backend: Backend, resource: string, principal: string): Lock {
  return new Lock(backend, {
    resource,
    principal,
    ttlSeconds: TTL,
    backend: backend.name,
    backendOptions: {},
    backendContext: context(backend.name),
    warnings: [],
  });
}

/**
 * Release-to-waiter latency: a waiter queued behind a holder, the time
 * from the reply to the holder's release to the waiter's lease (0 when the
 * waiter had it first). The release comes after a random delay, so a
 * polling waiter's phase is random too. Event backends wake the waiter;
 * the others find the lock free at their next poll.
 */
async function wakeUp(spec: Spec, backend: Backend): Promise<void> {
  const latencies: number[] = [];
  for (let round = 0; round < (quick ? 3 : 9); round++) {
    const resource = fresh("wake");
    const holder = await backend.acquire(resource, "holder@host", TTL);
    const waiting = lockOn(backend, resource, "waiter@host")
      .acquire(TTL, { wait: "1m" });
    while ((await waiters(backend, resource)).length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * 1000));
    let leased = 0;
    const waited = waiting.then((lease) => {
      leased = performance.now();
      return lease;
    });
    await backend.release(resource, holder.id);
    const released = performance.now();
    const lease = await waited;
    latencies.push(Math.max(0, leased - released));
    await backend.release(resource, lease.id);
  }
  rows.push({
    backend: spec.name,
    measure: "waiter wake-up: release to the waiter's acquire",
    median: ms(latencies),
    note: `${
      backend.capabilities.events
        ? "change events; aim < 50 ms"
        : "polling (no change events)"
    }; release after a random 0–1 s delay; ${latencies.length} rounds`,
  });
}

const BURST_CHILD = `
import { openBackend } from "${rootUrl}mod.ts";
const [name, options, resource, count] = Deno.args;
const backend = await openBackend(JSON.parse(options), {
  name,
  section: "backend." + name,
});
await backend.current(resource); // connected before the start signal
console.log("ready");
const reader = Deno.stdin.readable.getReader();
await reader.read();
const results = await Promise.allSettled(
  Array.from({ length: Number(count) }, () =>
    backend.acquire(resource, "burst-" + Deno.pid + "@host", 600)),
);
const refused = (r) => r.status === "rejected" && r.reason?.code === "LOCK_HELD";
// A deadline passed: the kit's "did not answer within", or an acquire
// whose answer was lost (it may have taken the lock).
const timedOut = (r) => r.status === "rejected" && !refused(r) &&
  (r.reason?.name === "AcquireUnknownError" ||
    /did not answer within|timed out/i.test(String(r.reason?.message)));
const failures = results.filter((r) =>
  r.status === "rejected" && !refused(r) && !timedOut(r)
).map((r) => String(r.reason?.message ?? r.reason));
console.log(JSON.stringify({
  won: results.flatMap((r) => r.status === "fulfilled" ? [r.value.id] : []),
  held: results.filter(refused).length,
  timeouts: results.filter(timedOut).length,
  failed: failures.length,
  first: failures[0] ??
    results.find(timedOut)?.reason?.message,
}));
await backend.close();
`;

interface BurstResult {
  /** The ids of the leases this process won. */
  won: string[];
  held: number;
  timeouts: number;
  failed: number;
  first?: string;
}

/** Spawns one contender process; resolves once it is connected. */
async function contender(spec: Spec, resource: string) {
  const child = new Deno.Command(deno, {
    args: [
      "run",
      "--quiet",
      "-A",
      `--config=${denoJson}`,
      join(work, "burst.ts"),
      spec.name,
      JSON.stringify(spec.options),
      resource,
      String(BURST.acquirers),
    ],
    env: baseEnv,
    cwd: work,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const readLine = async () => {
    while (!text.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) return "";
      text += value;
    }
    const [line] = text.split("\n", 1);
    text = text.slice(line.length + 1);
    return line;
  };
  const ready = await readLine();
  const writer = child.stdin.getWriter();
  return {
    ready: ready === "ready",
    async go(): Promise<BurstResult> {
      await writer.write(new TextEncoder().encode("go\n"));
      await writer.close();
      const line = await readLine();
      await child.status;
      if (!line) {
        return {
          won: [],
          held: 0,
          timeouts: 0,
          failed: BURST.acquirers,
          first: await stderr,
        };
      }
      return JSON.parse(line);
    },
    kill() {
      try {
        child.kill();
      } catch { /* gone */ }
    },
  };
}

/** One burst round's outcome, from the children and from the store. */
interface Round {
  won: number;
  held: number;
  timeouts: number;
  failed: number;
  /** Leases left in the store that no winner reported, or not released. */
  leftovers: number;
  seconds: number;
  first?: string;
}

/**
 * One round: 10 processes × 100 acquirers on a fresh resource. Then it
 * reads the store: the holder must be the one reported winner; once the
 * winner releases, nothing may be left (for etcd, no lease beyond those
 * before the round).
 */
async function burstRound(spec: Spec, backend: Backend): Promise<Round> {
  const resource = fresh("burst");
  const before = await spec.storeLeases?.();
  const children = await Promise.all(
    Array.from({ length: BURST.processes }, () => contender(spec, resource)),
  );
  const timer = setTimeout(() => children.forEach((c) => c.kill()), 120_000);
  const started = performance.now();
  const results = await Promise.all(children.map((child) => child.go()));
  const seconds = (performance.now() - started) / 1000;
  clearTimeout(timer);
  const total = (key: "held" | "timeouts" | "failed") =>
    results.reduce((sum, result) => sum + result[key], 0);
  const winners = results.flatMap((result) => result.won);
  let leftovers = 0;
  const holder = await backend.current(resource);
  if (holder && !winners.includes(holder.id)) leftovers++;
  for (const id of winners) {
    await backend.release(resource, id).catch(() => {});
  }
  if (await backend.current(resource)) leftovers++;
  if (before !== undefined) {
    leftovers += Math.max(0, (await spec.storeLeases!()) - before);
  }
  return {
    won: winners.length,
    held: total("held"),
    timeouts: total("timeouts"),
    failed: total("failed"),
    leftovers,
    seconds,
    first: results.find((result) => result.first)?.first,
  };
}

async function burst(spec: Spec, backend: Backend): Promise<void> {
  Deno.writeTextFileSync(join(work, "burst.ts"), BURST_CHILD);
  const rounds: Round[] = [];
  for (let i = 0; i < BURST.rounds; i++) {
    rounds.push(await burstRound(spec, backend));
  }
  const failed = rounds.filter((round) =>
    round.won !== 1 || round.leftovers > 0
  );
  const sum = (key: "won" | "held" | "timeouts" | "failed" | "leftovers") =>
    rounds.reduce((total, round) => total + round[key], 0);
  const first = rounds.find((round) => round.first)?.first;
  rows.push({
    backend: spec.name,
    measure:
      `burst: ${BURST.rounds} rounds of ${BURST.processes} processes × ${BURST.acquirers} acquirers, one resource`,
    median: `${rounds.length - failed.length} of ${rounds.length} rounds ok`,
    against: `${
      median(rounds.map((round) => round.seconds)).toFixed(1)
    } s a round`,
    note: `winners per round ${rounds.map((round) => round.won).join("/")}; ${
      sum("held")
    } LockHeld, ${sum("timeouts")} timeouts, ${sum("failed")} failed, ${
      sum("leftovers")
    } leftovers${
      failed.length
        ? `; ✗ failed rounds: ${
          failed.map((round) =>
            round.won === 0
              ? "no winner"
              : round.won > 1
              ? `${round.won} winners`
              : `${round.leftovers} left over`
          ).join(", ")
        }`
        : " ✓"
    }${
      first ? `; first error: ${first.replace(/\s+/g, " ").slice(0, 160)}` : ""
    }`,
  });
}

async function benchBackend(spec: Spec): Promise<void> {
  const step = async (what: string, body: () => Promise<void>) => {
    if (cases && what !== "setup" && !cases.includes(what)) return;
    log(`${spec.name}: ${what}`);
    try {
      await body();
    } catch (error) {
      log(`${spec.name}: ${what} failed: ${(error as Error).stack}`);
      rows.push({
        backend: spec.name,
        measure: what,
        median: "n/a",
        note: `failed: ${
          String((error as Error).message).replace(/\s+/g, " ").slice(0, 200)
        }`,
      });
    }
  };
  let backend: Backend | undefined;
  await step("setup", async () => {
    backend = await openBackend(spec.options, context(spec.name));
    await backend.init();
    await spec.setup?.();
  });
  if (!backend) return;
  await step("cli", () => cli(spec));
  await step("throughput", () => throughput(spec, backend!));
  await step("list", () => list(spec, backend!));
  await step("wake-up", () => wakeUp(spec, backend!));
  await step("burst", () => burst(spec, backend!));
  await backend.close();
}

/** docs/performance.md, where `--write` puts the results. */
function readPerformancePage(): string {
  return Deno.readTextFileSync(performancePage);
}

// ------------------------------------------------------------ main

try {
  const env = await startServers();
  const specs = [
    sqliteSpec(),
    ...(env.STORMLOCK_TEST_REDIS_URL ? [redisSpec(env)] : []),
    ...(env.STORMLOCK_TEST_ETCD_URL ? [etcdSpec(env)] : []),
    ...(env.STORMLOCK_TEST_POSTGRES_URL ? [postgresSpec(env)] : []),
    ...(env.STORMLOCK_TEST_DYNAMODB_ENDPOINT ? [dynamodbSpec(env)] : []),
    ...(env.STORMLOCK_TEST_MYSQL_HOST ? [mysqlSpec(env)] : []),
  ].filter((spec) => !only || only.includes(spec.name));
  if (!only || only.includes("version")) {
    log("--version");
    await startup();
  }
  for (const spec of specs) await benchBackend(spec);
  const report = [
    `Measured ${
      new Date().toISOString().slice(0, 16).replace("T", " ")
    } UTC on ${machine()}; ${ROUNDS} interleaved rounds per process case, ${RATE_ROUNDS} × ${RATE_MS} ms per throughput case${
      quick ? " (--quick)" : ""
    }. Ratios are medians of per-round ratios.\n`,
    "| backend | measure | median | against (median) | ratio | target | note |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows.map(cell),
  ].join("\n");
  console.log(report);
  if (write) {
    Deno.writeTextFileSync(
      performancePage,
      withBlock(readPerformancePage(), "bench", report, "docs/performance.md"),
    );
    log("wrote the table into docs/performance.md; run deno fmt on it");
  }
} finally {
  log("stopping servers");
  await stopServers();
  Deno.removeSync(work, { recursive: true });
}
