import assert from "assert";
import {
  BackendUnavailableError,
  ConfigError,
  LockHeldError,
  openBackend,
  UsageError,
} from "../mod.ts";
import type { Backend, BackendOptions } from "../mod.ts";
import {
  tableStore,
  testBackendContract,
  testUnavailableContract,
} from "../lib/testing/mod.ts";
import {
  assertCleanExit,
  assertCliLockCycle,
  backendTest,
  CliHome,
  closedPort,
  rejectsCleanly,
  replyingServer,
  runDeno,
  sleep,
  uniqueResource,
} from "./helpers.ts";
import { eventsChannel } from "../backends/postgres/mod.ts";

const URL_VAR = "STORMLOCK_TEST_POSTGRES_URL";
const url = Deno.env.get(URL_VAR) ?? "";
if (!url) {
  throw new Error(
    `set ${URL_VAR} (and the other STORMLOCK_TEST_POSTGRES_* variables) or run scripts/test.sh`,
  );
}
const ca = Deno.env.get("STORMLOCK_TEST_POSTGRES_CA");
const password = decodeURIComponent(new URL(url).password);
const context = { name: "postgres", section: "backend.postgres" };

/** A table name no other test run uses. */
function uniqueTable(): string {
  return `stormlock_test_${crypto.randomUUID().replaceAll("-", "")}`;
}

/** A raw postgres.js client on the test database, for setting scenes. */
async function rawSql() {
  const { default: postgres } = await import("postgres");
  return postgres(url, { max: 1, onnotice: () => {} });
}

function open(options: BackendOptions): Promise<Backend> {
  return openBackend({ url, ...options }, context);
}

/** Runs `body` on a fresh backend and closes it. */
async function withPostgres<T>(
  options: BackendOptions,
  body: (backend: Backend) => Promise<T>,
): Promise<T> {
  const backend = await open(options);
  try {
    return await body(backend);
  } finally {
    await backend.close();
  }
}

/** Asserts that `promise` fails with `type` and shows neither password nor URL. */
function clean<T extends Error>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => T,
): Promise<T> {
  return rejectsCleanly(promise, type, { secrets: [password, url] });
}

// The contract creates its table on first use, exercising create_table.
const contractTable = uniqueTable();
testBackendContract(
  "postgres",
  (extra) => open({ table: contractTable, create_table: "true", ...extra }),
  {
    store: tableStore(uniqueTable),
    secrets: {
      options: ["url"],
      openWith: (secret) => {
        const wrong = new URL(url);
        wrong.password = secret;
        return open({ url: wrong.href });
      },
      refusal: /refused the login/,
    },
  },
);

testUnavailableContract(
  "postgres",
  (host, port) => {
    const at = new URL(url);
    at.hostname = host;
    at.port = String(port);
    return open({ url: at.href, timeout: "500ms" });
  },
  {
    secret: password,
    address: (host, port) => `${host}:${port}${new URL(url).pathname}`,
    silent: /did not answer within 500ms/,
  },
);

const test = backendTest("postgres");

test("init() refuses a table that is not shaped like Stormlock's", async () => {
  const table = uniqueTable();
  const backend = await open({ table });
  try {
    // Make a foreign table through a second, raw client.
    const { default: postgres } = await import("postgres");
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    await sql`CREATE TABLE ${sql(table)} (resource text PRIMARY KEY)`;
    await sql.end();
    const error = await clean(backend.init!(), ConfigError);
    assert.match(error.message, /not a Stormlock table/);
  } finally {
    await backend.close();
  }
});

test("a table from before slots is upgraded in place on first use, keeping its lease", async () => {
  const table = uniqueTable();
  const sql = await rawSql();
  try {
    let held = "";
    await withPostgres({ table, create_table: "true" }, async (backend) => {
      held = (await backend.acquire("pool", "ann@old", 60)).id;
    });
    // The layout before slots: no holders table, no holder_limit, top_fence.
    await sql.unsafe(`DROP TABLE "${table}_holds"`);
    await sql.unsafe(
      `ALTER TABLE "${table}" DROP COLUMN holder_limit, DROP COLUMN top_fence`,
    );
    await sql.unsafe(`ALTER TABLE "${table}_events" DROP COLUMN holder_limit`);
    await withPostgres({ table, create_table: "true" }, async (backend) => {
      assert.equal((await backend.current("pool"))?.id, held);
      await assert.rejects(
        backend.acquire("pool", "bob", 60, { limit: 2 }),
        LockHeldError,
      );
      await backend.release("pool", held);
      const one = await backend.acquire("pool", "bob", 60, { limit: 2 });
      const two = await backend.acquire("pool", "cy", 60, { limit: 2 });
      assert.deepEqual(
        (await backend.holders!("pool")).map((lease) => lease.id),
        [one.id, two.id],
      );
      assert.ok(one.fence > 1 && two.fence > one.fence);
      const kinds = (await backend.history("pool")).map((event) => event.kind);
      assert.deepEqual(kinds, ["acquired", "acquired", "released", "acquired"]);
    });
  } finally {
    await sql.end();
  }
});

test("init() upgrades a Stormlock 0.1 table in place, keeping its leases", async () => {
  const table = uniqueTable();
  const sql = await rawSql();
  const id = crypto.randomUUID();
  try {
    // The layout Stormlock 0.1 created, with a lease it took.
    await sql`
      CREATE TABLE ${sql(table)} (
        resource  text        PRIMARY KEY,
        lease     uuid        NOT NULL,
        principal text        NOT NULL,
        created   timestamptz NOT NULL,
        expires   timestamptz NOT NULL
      )`;
    await sql`
      INSERT INTO ${sql(table)} VALUES
        ('old', ${id}::uuid, 'ann@old', now(), now() + interval '1 hour')`;
    await withPostgres({ table }, async (backend) => {
      // Before init, the missing columns name the remedy.
      const error = await clean(backend.current("old"), ConfigError);
      assert.match(error.message, /stormlock init/);
      assert.equal(await backend.init(), true);
      assert.equal(await backend.init(), true); // Safe to repeat.
      const old = await backend.current("old");
      assert.equal(old?.id, id.replaceAll("-", ""));
      assert.equal(old?.principal, "ann@old");
      assert.equal(old?.fence, 0);
      assert.equal(old?.reason, undefined);
      await assert.rejects(
        backend.acquire("old", "bob@new", 60),
        LockHeldError,
      );
      await backend.release("old", old!.id);
      const fences: number[] = [];
      for (const resource of ["old", "old", "new"]) {
        const lease = await backend.acquire(resource, "bob@new", 60, {
          reason: "upgraded",
        });
        assert.equal((await backend.current(resource))?.reason, "upgraded");
        fences.push(lease.fence);
        await backend.release(resource, lease.id);
      }
      assert.deepEqual(fences, [1, 2, 1]);
      const kinds = (await backend.history("old")).map((event) => event.kind);
      assert.deepEqual(kinds, [
        "released",
        "acquired",
        "released",
        "acquired",
        "released",
      ]);
    });
    // A 0.1 client still running takes the free row over its own way: its
    // lease reads with fence 0 and none of the last holder's details.
    const taken = crypto.randomUUID();
    await sql`
      INSERT INTO ${sql(table)} AS held
        (resource, lease, principal, created, expires)
      VALUES ('old', ${taken}::uuid, 'cy@old', now(), now() + interval '1 hour')
      ON CONFLICT (resource) DO UPDATE
        SET lease = excluded.lease, principal = excluded.principal,
          created = excluded.created, expires = excluded.expires
        WHERE held.expires <= now()`;
    await withPostgres({ table }, async (backend) => {
      const lease = await backend.current("old");
      assert.equal(lease?.principal, "cy@old");
      assert.equal(lease?.fence, 0);
      assert.equal(lease?.reason, undefined);
      await backend.release("old", lease!.id);
      // Then a 0.1 release deletes the row; fences still never repeat.
      const next = await backend.acquire("old", "dan@new", 60);
      assert.equal(next.fence, 3);
      await sql`DELETE FROM ${sql(table)} WHERE resource = 'old'`;
      assert.equal((await backend.acquire("old", "eve@new", 60)).fence, 4);
    });
  } finally {
    await sql.end();
  }
});

test("create_table = true upgrades a Stormlock 0.1 table on first use", async () => {
  const table = uniqueTable();
  const sql = await rawSql();
  try {
    await sql`
      CREATE TABLE ${sql(table)} (
        resource text PRIMARY KEY, lease uuid NOT NULL,
        principal text NOT NULL, created timestamptz NOT NULL,
        expires timestamptz NOT NULL
      )`;
  } finally {
    await sql.end();
  }
  await withPostgres({ table, create_table: "true" }, async (backend) => {
    const lease = await backend.acquire("r", "ann@host", 60, { link: "l" });
    assert.equal(lease.fence, 1);
    assert.equal((await backend.current("r"))?.link, "l");
  });
});

test("list() is an index range scan on the resource key", async () => {
  const table = uniqueTable();
  await withPostgres({ table, create_table: "true" }, async (backend) => {
    await backend.acquire("a/1", "ann@host", 60);
    await backend.acquire("a/2\u{10ffff}x", "ann@host", 60);
    await backend.acquire("b/1", "ann@host", 60);
    const listed = await backend.list("a/");
    assert.deepEqual(listed.map((lease) => lease.resource), [
      "a/1",
      "a/2\u{10ffff}x",
    ]);
  });
  const sql = await rawSql();
  try {
    // The query list() runs, with prefix "a/" and its successor "a0".
    await sql`SET enable_seqscan = off`;
    await sql`SET enable_bitmapscan = off`;
    const plan = await sql.unsafe(
      `EXPLAIN SELECT * FROM "${table}"
       WHERE resource COLLATE "C" >= $1::text AND resource COLLATE "C" < $2::text
         AND expires > now() ORDER BY resource COLLATE "C"`,
      ["a/", "a0"],
    );
    const text = plan.map((row) => Object.values(row)[0]).join("\n");
    assert.match(text, /Index Scan using .*_pkey/);
    assert.match(text, /Index Cond: .*resource/);
    assert.doesNotMatch(text, /Sort/);
  } finally {
    await sql.end();
  }
});

test("a resource name too long for the index is a usage error naming the limit", async () => {
  const table = uniqueTable();
  await withPostgres({ table, create_table: "true" }, async (backend) => {
    // Names that compress well are accepted far past the limit.
    const long = "x".repeat(100_000);
    const lease = await backend.acquire(long, "ann@host", 60);
    assert.equal((await backend.current(long))?.id, lease.id);
    // Random text does not compress: 2,684 bytes fit, 2,700 do not.
    const random = (bytes: number) =>
      Array.from(
        crypto.getRandomValues(new Uint8Array(bytes)),
        (byte) => String.fromCharCode(33 + (byte % 90)),
      ).join("");
    const fits = random(2684);
    await backend.release(fits, (await backend.acquire(fits, "a", 60)).id);
    const error = await clean(
      backend.acquire(random(2700), "ann@host", 60),
      UsageError,
    );
    assert.match(error.message, /2704 bytes/);
    assert.match(error.message, /2,684 bytes/);
    assert.match(error.message, /shorter/);
    // Nothing half-done: the backend still works.
    await backend.release(long, lease.id);
  });
});

test("a server setting in the url that the server rejects is a config error", async () => {
  for (const param of ["no_such_setting=1", "statement_timeout=soon"]) {
    const at = new URL(url);
    at.search = param;
    await withPostgres({ url: at.href }, async (backend) => {
      const error = await clean(backend.current("r"), ConfigError);
      assert.match(error.message, /server setting in the url/);
    });
  }
});

test("a schema-qualified table name with quotes in it works", async () => {
  const table = `public.odd "name" ${crypto.randomUUID()}`;
  await withPostgres({ table, create_table: "true" }, async (backend) => {
    const lease = await backend.acquire("r", "ann@host", 60);
    await assert.rejects(backend.acquire("r", "bob@host", 60), LockHeldError);
    await backend.release("r", lease.id);
  });
});

test("bad option values are config errors", async () => {
  const cases: BackendOptions[] = [
    { table: "a.b.c" },
    { table: "x".repeat(64) },
    { timeout: "soon" },
    { create_table: "maybe" },
    { url: `${url}?sslmode=sometimes` },
    { url: "mysql://ann@host/db" },
  ];
  for (const options of cases) {
    await clean(open(options), ConfigError);
  }
  await clean(
    openBackend({ table: "t" }, context),
    ConfigError,
  );
});

test("a URL that does not parse is rejected without echoing it", async () => {
  const secret = "hunter2-do-not-print";
  const error = await clean(
    open({ url: `postgres://ann:${secret}@host:notaport/db` }),
    ConfigError,
  );
  assert.ok(!error.message.includes(secret));
});

test("a stray % in the URL is a config error that does not echo it", async () => {
  const secret = "100%secret";
  const error = await clean(
    open({ url: `postgres://ann:${secret}@127.0.0.1/db` }),
    ConfigError,
  );
  assert.ok(!error.message.includes(secret));
});

test("init() upgrades a table made by the original's setup/postgresql.sql, keeping its lease", async () => {
  const table = uniqueTable();
  const sql = await rawSql();
  try {
    // The original's schema, and a lease as the original wrote it.
    await sql.unsafe(`CREATE TABLE ${table} (
      resource text PRIMARY KEY,
      lease uuid NOT NULL,
      principal text NOT NULL,
      created timestamp without time zone NOT NULL DEFAULT CURRENT_TIMESTAMP,
      expires timestamp without time zone NOT NULL)`);
    await sql.unsafe(
      `INSERT INTO ${table} (resource, lease, principal, expires) VALUES
       ('old', '00112233-4455-6677-8899-aabbccddeeff', 'ann',
        CURRENT_TIMESTAMP + interval '1 hour')`,
    );
  } finally {
    await sql.end();
  }
  await withPostgres({ table }, async (backend) => {
    await backend.init();
    const lease = await backend.current("old");
    assert.equal(lease?.id, "00112233445566778899aabbccddeeff");
    const left = lease!.expires.getTime() - Date.now();
    assert.ok(left > 50 * 60_000 && left <= 3600_000, `${left} ms left`);
    await assert.rejects(backend.acquire("old", "bob@host", 60), LockHeldError);
    await backend.release("old", lease!.id);
    assert.ok((await backend.acquire("old", "bob@host", 60)).fence >= 1);
  });
});

test("the original's connection option takes libpq's key=value form", async () => {
  const at = new URL(url);
  const conninfo = `host=${at.hostname} port=${at.port} dbname=${
    at.pathname.slice(1)
  } user='${decodeURIComponent(at.username)}' password='${
    password.replaceAll("\\", "\\\\").replaceAll("'", "\\'")
  }'`;
  const backend = await openBackend(
    { connection: conninfo, table: uniqueTable(), create_table: "true" },
    context,
  );
  try {
    const lease = await backend.acquire("r", "ann@host", 60);
    await backend.release("r", lease.id);
  } finally {
    await backend.close();
  }
  const bad = await clean(
    openBackend({ connection: "host=db sslfactory=x" }, context),
    ConfigError,
  );
  assert.match(bad.message, /"sslfactory" is not a connection key/);
});

test("the original's connection option still works as url", async () => {
  const backend = await openBackend(
    { connection: url, table: uniqueTable(), create_table: "true" },
    context,
  );
  try {
    await backend.acquire("r", "ann@host", 60);
  } finally {
    await backend.close();
  }
});

test("sslmode=require encrypts without checking the certificate", async () => {
  await withPostgres(
    { url: `${url}?sslmode=require`, table: uniqueTable(), create_table: "1" },
    async (backend) => {
      const lease = await backend.acquire("r", "ann@host", 60);
      await backend.release("r", lease.id);
    },
  );
});

test("sslmode=verify-full checks the certificate against sslrootcert", async () => {
  assert.ok(ca, "set STORMLOCK_TEST_POSTGRES_CA or run scripts/test.sh");
  const table = uniqueTable();
  const verified = `${url}?sslmode=verify-full&sslrootcert=${
    encodeURIComponent(ca)
  }`;
  await withPostgres(
    { url: verified, table, create_table: "1" },
    async (backend) => {
      await backend.acquire("r", "ann@host", 60);
    },
  );
  // Without the root certificate the self-signed one is not trusted.
  await withPostgres({ url: `${url}?sslmode=verify-full` }, async (backend) => {
    await clean(backend.current("r"), BackendUnavailableError);
  });
});

test("a statement stuck behind a row lock gives BackendUnavailableError", async () => {
  const table = uniqueTable();
  await withPostgres(
    { table, create_table: "true", timeout: "500ms" },
    async (backend) => {
      const lease = await backend.acquire("r", "ann@host", 60);
      const { default: postgres } = await import("postgres");
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      let release!: () => void;
      const released = new Promise<void>((resolve) => release = resolve);
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => locked = resolve);
      const holding = sql.begin(async (tx) => {
        await tx`SELECT 1 FROM ${tx(table)} WHERE resource = 'r' FOR UPDATE`;
        locked();
        await released;
      });
      try {
        await isLocked;
        await clean(
          backend.release("r", lease.id),
          BackendUnavailableError,
        );
      } finally {
        release();
        await holding;
        await sql.end();
      }
      // The lease survived, and the backend works again.
      await backend.release("r", lease.id);
    },
  );
});

test("a percent-encoded folder as the host connects over the unix socket", async () => {
  const folder = Deno.env.get("STORMLOCK_TEST_POSTGRES_SOCKET_DIR");
  assert.ok(
    folder,
    "set STORMLOCK_TEST_POSTGRES_SOCKET_DIR or run scripts/test.sh",
  );
  const { port, pathname } = new URL(url);
  const socketUrl = `postgres://stormlock@${
    encodeURIComponent(folder)
  }:${port}${pathname}`;
  await withPostgres(
    { url: socketUrl, table: uniqueTable(), create_table: "true" },
    async (backend) => {
      const lease = await backend.acquire("r", "ann@host", 60);
      await backend.release("r", lease.id);
    },
  );
});

test("a server that hangs up during startup is not retried in a loop", async () => {
  // Like an HTTP server on the port: it answers garbage and closes.
  await using server = replyingServer("HTTP/1.1 400 Bad Request\r\n\r\n");
  await withPostgres(
    { url: `postgres://ann@127.0.0.1:${server.port}/db`, timeout: "2s" },
    async (backend) => {
      const error = await clean(backend.current("r"), BackendUnavailableError);
      assert.match(error.message, /closed the connection/);
    },
  );
  assert.ok(server.accepted <= 2, `${server.accepted} connections`);
});

test("the CLI acquires, refuses, releases and sets up its table", async () => {
  using home = new CliHome();
  const table = uniqueTable();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = postgres\n\n[backend.postgres]\nurl = ${url}\ntable = ${table}\n`,
  );
  const resource = uniqueResource();

  const missing = await home.run(["acquire", resource]);
  assert.equal(missing.code, 78, missing.stderr);
  assert.match(missing.stderr, /stormlock init/);

  const init = await home.run(["init", resource]);
  assert.equal(init.code, 0, init.stderr);

  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = postgres\n\n[backend.postgres]\nurl = ${url}?no_such_setting=1\ntable = ${table}\n`,
  );
  const setting = await home.run(["acquire", resource]);
  assertCleanExit(setting, 78, /server setting in the url/, [password]);
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = postgres\n\n[backend.postgres]\nurl = ${url}\ntable = ${table}\n`,
  );

  const cycle = await assertCliLockCycle(home, resource);
  for (const result of [missing, init, setting, ...cycle]) {
    assert.ok(!(result.stdout + result.stderr).includes(password));
  }
});

test("the CLI reports a dead server or a wrong password with exit 69 on one line", async () => {
  using home = new CliHome();
  const dead = new URL(url);
  dead.port = String(closedPort());
  const wrong = new URL(url);
  wrong.password = encodeURIComponent(`not-${password}`);
  for (const target of [dead, wrong]) {
    home.write(
      ".stormlock.cfg",
      `[default]\nbackend = postgres\n\n[backend.postgres]\nurl = ${target.href}\ntimeout = 2s\n`,
    );
    const result = await home.run(["acquire", uniqueResource()]);
    assertCleanExit(result, 69, /PostgreSQL at 127\.0\.0\.1:\d+/, [
      password,
      target.password,
    ]);
  }
});

test("a unix socket Deno may not open names the permission to grant", async () => {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-pg-socket-" });
  const socket = `${folder}/.s.PGSQL.15432`;
  const url = `postgres://u@${encodeURIComponent(folder)}:15432/ops`;
  const script = `${folder}/probe.ts`;
  Deno.writeTextFileSync(
    script,
    `import { openBackend } from ${
      JSON.stringify(new URL("../mod.ts", import.meta.url).href)
    };
const backend = await openBackend(
  { url: ${JSON.stringify(url)}, timeout: "2s" },
  { name: "postgres", section: "backend.postgres" },
);
try {
  await backend.current("r");
} catch (error) {
  console.log(error.code, error.message);
}
await backend.close();
`,
  );
  try {
    // Everything the client needs but the right to write the socket.
    const result = await runDeno([
      "run",
      "--config",
      "deno.json",
      "--no-prompt",
      "--allow-env",
      "--allow-read",
      "--allow-net",
      "--allow-sys",
      script,
    ]);
    assert.equal(
      result.stdout.trim(),
      `CONFIG No permission for PostgreSQL at ${folder}:15432/ops: Deno needs write access to "${socket}"; start Deno with --allow-write=${socket}`,
      result.stderr,
    );
  } finally {
    Deno.removeSync(folder, { recursive: true });
  }
});

/** Waits, in bounded steps, until `check` holds. */
async function eventually(what: string, check: () => Promise<boolean>) {
  for (let tries = 0; tries < 500; tries++) {
    if (await check()) return;
    await sleep(20);
  }
  assert.fail(`${what} never happened`);
}

test("acquire, release and break notify <table>_events with the resource; renew and a refused acquire do not", async () => {
  const table = uniqueTable();
  const channel = `${table}_events`;
  const sql = await rawSql();
  const heard: string[] = [];
  await sql.listen(channel, (payload) => heard.push(payload));
  try {
    await withPostgres({ table, create_table: "true" }, async (backend) => {
      const lease = await backend.acquire("a resource", "ann", 60);
      await assert.rejects(
        backend.acquire("a resource", "bob", 60),
        LockHeldError,
      );
      await backend.renew("a resource", lease.id, 60, { reason: "why" });
      await backend.release("a resource", lease.id);
      await assert.rejects(backend.release("a resource", lease.id));
      const next = await backend.acquire("other", "bob", 60);
      await backend.breakLease("other", next.id, {
        principal: "ops",
        reason: "x",
      });
    });
    // Notifications arrive in commit order: the marker comes last.
    await sql.notify(channel, "marker");
    await eventually(
      "the marker",
      () => Promise.resolve(heard.at(-1) === "marker"),
    );
    assert.deepEqual(heard, [
      "a resource",
      "a resource",
      "other",
      "other",
      "marker",
    ]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test("a resource name too long for a payload is announced by its hash, and still wakes its watch", async () => {
  const table = uniqueTable();
  // Compressible, so the index takes it, but far past 8000 bytes.
  const long = "é".repeat(6000);
  const similar = "é".repeat(5999) + "e";
  await withPostgres({ table, create_table: "true" }, async (backend) => {
    const stop = new AbortController();
    let seen = 0;
    let wrong = 0;
    try {
      await backend.watch(long, () => seen++, stop.signal);
      await backend.watch(similar, () => wrong++, stop.signal);
      await backend.watch("marker", () => wrong += 100, stop.signal);
      const lease = await backend.acquire(long, "ann", 60);
      await backend.release(long, lease.id);
      await eventually("both changes heard", () => Promise.resolve(seen === 2));
      const marker = await backend.acquire("marker", "ann", 60);
      await eventually("the marker", () => Promise.resolve(wrong >= 100));
      assert.equal(wrong, 100, "the similar name heard nothing");
      await backend.release("marker", marker.id);
    } finally {
      stop.abort();
    }
  });
});

test("watches share one LISTEN connection per store, UNLISTEN when the last ends, and close() ends it", async () => {
  const table = uniqueTable();
  const listen = `LISTEN "${table}_events"`;
  const sql = await rawSql();
  const sessions = async () =>
    (await sql`SELECT query FROM pg_stat_activity
      WHERE query IN (${listen}, ${"UN" + listen})`).map((row) => row.query);
  const backend = await open({ table, create_table: "true" });
  try {
    const [a, b] = [new AbortController(), new AbortController()];
    let seen = 0;
    await backend.watch("x", () => seen++, a.signal);
    await backend.watch("y", () => seen++, b.signal);
    assert.deepEqual(await sessions(), [listen], "one listener, one LISTEN");
    const lease = await backend.acquire("x", "ann", 60);
    await eventually("x's change heard", () => Promise.resolve(seen === 1));
    a.abort();
    await backend.release("x", lease.id);
    const other = await backend.acquire("y", "ann", 60);
    await eventually("y's change heard", () => Promise.resolve(seen === 2));
    assert.deepEqual(await sessions(), [listen], "y is still watched");
    b.abort();
    await eventually(
      "UNLISTEN",
      async () => (await sessions())[0] === "UN" + listen,
    );
    await backend.release("y", other.id);
    assert.equal(seen, 2);
    await backend.close();
    await eventually(
      "the listener closed",
      async () => (await sessions()).length === 0,
    );
  } finally {
    await backend.close();
    await sql.end({ timeout: 1 });
  }
});

test("the events channel is <table>_events, or the name without its schema when that is too long", () => {
  assert.equal(eventsChannel("stormlock"), "stormlock_events");
  assert.equal(eventsChannel("ops.locks"), "ops.locks_events");
  const schema = "s".repeat(60);
  assert.equal(eventsChannel(`${schema}.locks`), "locks_events");
  return Promise.resolve();
});

test("watch works over TLS and through a unix socket", async () => {
  const folder = Deno.env.get("STORMLOCK_TEST_POSTGRES_SOCKET_DIR");
  assert.ok(
    folder,
    "set STORMLOCK_TEST_POSTGRES_SOCKET_DIR or run scripts/test.sh",
  );
  const { port, pathname } = new URL(url);
  const targets = {
    TLS: `${url}?sslmode=require`,
    socket: `postgres://stormlock@${
      encodeURIComponent(folder)
    }:${port}${pathname}`,
  };
  const table = uniqueTable();
  await withPostgres({ table, create_table: "true" }, async (writer) => {
    for (const [how, target] of Object.entries(targets)) {
      const backend = await openBackend({ url: target, table }, context);
      const stop = new AbortController();
      try {
        let seen = 0;
        await backend.watch("r", () => seen++, stop.signal);
        const lease = await writer.acquire("r", "ann", 60);
        await writer.release("r", lease.id);
        await eventually(
          `changes heard via ${how}`,
          () => Promise.resolve(seen === 2),
        );
      } finally {
        stop.abort();
        await backend.close();
      }
    }
  });
});

test("a listener whose connection drops goes quiet; the next watch opens another", async () => {
  const table = uniqueTable();
  const sql = await rawSql();
  const stop = new AbortController();
  const backend = await open({ table, create_table: "true" });
  try {
    let before = 0;
    await backend.watch("r", () => before++, stop.signal);
    const killed = await sql`SELECT pg_terminate_backend(pid) AS done
      FROM pg_stat_activity WHERE query = ${`LISTEN "${table}_events"`}`;
    assert.equal(killed.length, 1);
    await eventually(
      "the listener gone",
      async () =>
        (await sql`SELECT 1 FROM pg_stat_activity
        WHERE query = ${`LISTEN "${table}_events"`}`).length === 0,
    );
    // The client may not have heard yet: watch until a watch opens a new
    // listener.
    let after = 0;
    await eventually("a new listener", async () => {
      after = 0;
      await backend.watch("r", () => after++, stop.signal);
      return (await sql`SELECT 1 FROM pg_stat_activity
        WHERE query = ${`LISTEN "${table}_events"`}`).length === 1;
    });
    const lease = await backend.acquire("r", "ann", 60);
    await eventually(
      "the new watch hears it",
      () => Promise.resolve(after === 1),
    );
    await backend.release("r", lease.id);
    await eventually("and again", () => Promise.resolve(after === 2));
    assert.equal(before, 0, "the dropped watch heard nothing");
  } finally {
    stop.abort();
    await backend.close();
    await sql.end({ timeout: 1 });
  }
});
