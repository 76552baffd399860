/**
 * The mysql backend against a real MariaDB (scripts/servers/mysql.ts): the
 * shared contract, init and its upgrade of the original Stormlock's table,
 * TLS, and the errors users see.
 */
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
  assertCliLockCycle,
  backendTest,
  CliHome,
  rejectsCleanly,
  sleep,
  uniqueResource,
} from "./helpers.ts";

const env = (name: string) => {
  const value = Deno.env.get(`STORMLOCK_TEST_MYSQL_${name}`);
  if (value === undefined) {
    throw new Error(
      `set STORMLOCK_TEST_MYSQL_${name} (and the other STORMLOCK_TEST_MYSQL_* variables) or run scripts/test.sh`,
    );
  }
  return value;
};
const server = {
  host: env("HOST"),
  port: env("PORT"),
  user: env("USER"),
  password: env("PASSWORD"),
  database: env("DATABASE"),
};
const ca = env("CA");
const context = { name: "mysql", section: "backend.mysql" };

/** A table name no other test run uses. */
function uniqueTable(): string {
  return `stormlock_test_${crypto.randomUUID().replaceAll("-", "")}`;
}

function open(options: BackendOptions): Promise<Backend> {
  return openBackend({ ...server, ...options }, context);
}

/** Runs `body` on a fresh backend and closes it. */
async function withMysql<T>(
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

/** Runs SQL as the test user, through the same client the backend uses. */
async function rawSql(sql: string): Promise<unknown> {
  const { default: mysql } = await import("mysql2/promise");
  const connection = await mysql.createConnection({
    ...server,
    port: Number(server.port),
    timezone: "Z",
    multipleStatements: true,
  });
  try {
    const [rows] = await connection.query(sql);
    return rows;
  } finally {
    await connection.end();
  }
}

/** Asserts that `promise` fails with `type` and shows no password. */
function clean<T extends Error>(
  promise: Promise<unknown>,
  type: abstract new (...args: never[]) => T,
): Promise<T> {
  return rejectsCleanly(promise, type, { secrets: [server.password] });
}

// The contract creates its table on first use, exercising create_table.
const contractTable = uniqueTable();
testBackendContract(
  "mysql",
  (extra) => open({ table: contractTable, create_table: "true", ...extra }),
  {
    store: tableStore(uniqueTable),
    secrets: {
      options: ["password"],
      openWith: (secret) => open({ password: secret }),
      refusal: /refused the login/,
    },
  },
);

testUnavailableContract(
  "mysql",
  (host, port) => open({ host, port: String(port), timeout: "500ms" }),
  {
    secret: server.password,
    address: (host, port) => `${host}:${port}/${server.database}`,
    silent: /did not answer within 500ms/,
  },
);

const test = backendTest("mysql");

test("init() upgrades a table made by the original's setup/mysql.sql, keeping its lease", async () => {
  const table = uniqueTable();
  // The original's schema, and a lease as the original wrote it.
  await rawSql(
    `CREATE TABLE ${table} (
       resource VARCHAR(128) PRIMARY KEY,
       lease BINARY(16) NOT NULL,
       principal VARCHAR(128) NOT NULL,
       created TIMESTAMP NOT NULL DEFAULT NOW(),
       expires TIMESTAMP NOT NULL);
     INSERT INTO ${table} VALUES ('old', UNHEX('00112233445566778899AABBCCDDEEFF'),
       'ann', NOW(), DATE_ADD(NOW(), INTERVAL 1 HOUR));`,
  );
  await withMysql({ table }, async (backend) => {
    await backend.init();
    const lease = await backend.current("old");
    assert.equal(lease?.id, "00112233445566778899aabbccddeeff");
    assert.equal(lease?.principal, "ann");
    const left = lease!.expires.getTime() - Date.now();
    assert.ok(left > 50 * 60_000 && left <= 3600_000, `${left} ms left`);
    await assert.rejects(backend.acquire("old", "bob@host", 60), LockHeldError);
    await backend.release("old", lease!.id);
    const next = await backend.acquire("old", "bob@host", 60);
    assert.equal(next.fence, 1);
  });
});

test("a table from before slots is upgraded in place on first use, keeping its lease", async () => {
  const table = uniqueTable();
  let held = "";
  await withMysql({ table, create_table: "true" }, async (backend) => {
    held = (await backend.acquire("pool", "ann@old", 60)).id;
  });
  // The layout before slots: no holders table, no holder_limit, top_fence.
  await rawSql(
    `DROP TABLE ${table}_holds;
     ALTER TABLE ${table} DROP COLUMN holder_limit, DROP COLUMN top_fence;
     ALTER TABLE ${table}_events DROP COLUMN holder_limit;`,
  );
  await withMysql({ table, create_table: "true" }, async (backend) => {
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
});

test("init() refuses a table that is not shaped like Stormlock's", async () => {
  const table = uniqueTable();
  await rawSql(`CREATE TABLE ${table} (id INT PRIMARY KEY, name TEXT)`);
  await withMysql({ table }, async (backend) => {
    const error = await clean(backend.init!(), ConfigError);
    assert.match(error.message, /not a Stormlock table/);
    assert.match(error.message, /set table in \[backend\.mysql\]/);
  });
});

test("a row deleted by hand keeps its fence from history", async () => {
  const table = uniqueTable();
  await withMysql({ table, create_table: "true" }, async (backend) => {
    const first = await backend.acquire("r", "ann@host", 60);
    await rawSql(`DELETE FROM ${table}`);
    const second = await backend.acquire("r", "bob@host", 60);
    assert.ok(second.fence > first.fence, `${second.fence} > ${first.fence}`);
  });
});

test("names that differ only by trailing spaces or case are separate locks", async () => {
  await withMysql(
    { table: uniqueTable(), create_table: "true" },
    async (backend) => {
      const names = ["r", "r ", "R", "r\u00a0", "ŕ"];
      const leases = [];
      for (const name of names) {
        leases.push(await backend.acquire(name, "ann@host", 60));
      }
      for (const [i, name] of names.entries()) {
        assert.equal((await backend.current(name))?.id, leases[i].id);
      }
      const listed = await backend.list("r");
      assert.deepEqual(
        listed.map((lease) => lease.resource),
        ["r", "r ", "r\u00a0"],
      );
    },
  );
});

test("an idle connection the server closed is not used again", async () => {
  await withMysql(
    { table: uniqueTable(), create_table: "true" },
    async (backend) => {
      const lease = await backend.acquire("r", "ann@host", 60);
      // Ends every other connection of the test user, as wait_timeout would.
      await rawSql(
        `BEGIN NOT ATOMIC
           FOR c IN (SELECT ID FROM information_schema.PROCESSLIST
                     WHERE USER = CURRENT_USER() OR USER = '${server.user}')
           DO IF c.ID <> CONNECTION_ID() THEN KILL CONNECTION c.ID; END IF;
           END FOR;
         END`,
      );
      await sleep(500);
      assert.equal((await backend.current("r"))?.id, lease.id);
    },
  );
});

test("a resource name over 3000 bytes is a usage error naming the limit", async () => {
  await withMysql(
    { table: uniqueTable(), create_table: "true" },
    async (backend) => {
      const fits = "x".repeat(3000);
      await backend.release(fits, (await backend.acquire(fits, "a", 60)).id);
      const error = await clean(
        backend.acquire("x".repeat(3001), "ann@host", 60),
        UsageError,
      );
      assert.match(error.message, /3000 bytes/);
    },
  );
});

test("table = DATABASE.NAME works without database, and odd names are quoted", async () => {
  const table = `${server.database}.odd \`name\` ${crypto.randomUUID()}`
    .slice(0, 60);
  const { database: _, ...noDatabase } = server;
  const backend = await openBackend(
    { ...noDatabase, table, create_table: "true" },
    context,
  );
  try {
    const lease = await backend.acquire("r", "ann@host", 60);
    await assert.rejects(backend.acquire("r", "bob@host", 60), LockHeldError);
    await backend.release("r", lease.id);
  } finally {
    await backend.close();
  }
});

test("bad option values are config errors", async () => {
  const cases: BackendOptions[] = [
    { table: "a.b.c" },
    { table: "x".repeat(60) },
    { timeout: "soon" },
    { create_table: "maybe" },
    { port: "99999" },
    { ssl_ca: "/nonexistent/ca.pem" },
    { ssl_cert: ca },
  ];
  for (const options of cases) {
    await clean(open(options), ConfigError);
  }
  const { database: _, ...noDatabase } = server;
  const error = await clean(openBackend(noDatabase, context), ConfigError);
  assert.match(error.message, /database: required/);
});

test("a missing database is a config error naming the option", async () => {
  await withMysql({ database: "no_such_db" }, async (backend) => {
    const error = await clean(backend.current("r"), ConfigError);
    assert.match(error.message, /database in \[backend\.mysql\]/);
  });
});

test("TLS with ssl_ca verifies the server and its name", async () => {
  const table = uniqueTable();
  await withMysql(
    { ssl_ca: ca, table, create_table: "true" },
    async (backend) => {
      const lease = await backend.acquire("r", "ann@host", 60);
      await backend.release("r", lease.id);
    },
  );
  // The system's CAs don't know the test CA.
  await withMysql({ tls: "true" }, async (backend) => {
    const error = await clean(backend.current("r"), BackendUnavailableError);
    assert.match(error.message, /TLS/);
  });
});

test("the session really is encrypted with ssl_ca", async () => {
  const backend = await open({ ssl_ca: ca, table: uniqueTable() });
  await backend.close();
  const { default: mysql } = await import("mysql2/promise");
  const connection = await mysql.createConnection({
    ...server,
    port: Number(server.port),
    ssl: { ca: Deno.readTextFileSync(ca) },
  });
  try {
    const [rows] = await connection.query(
      "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
    );
    const cipher = (rows as { Value: string }[])[0]?.Value ?? "";
    assert.ok(cipher.length > 0, "a cipher is in use");
  } finally {
    await connection.end();
  }
});

test("the CLI acquires, refuses and releases through the launcher", async () => {
  using home = new CliHome();
  const table = uniqueTable();
  const config = home.write(
    "mysql.cfg",
    [
      "[default]",
      "backend = mysql",
      "[backend.mysql]",
      ...Object.entries({ ...server, table, create_table: "true" }).map((
        [key, value],
      ) => `${key} = ${value}`),
      "",
    ].join("\n"),
  );
  const runs = await assertCliLockCycle(home, uniqueResource(), {
    args: ["-c", config],
  });
  for (const run of runs) {
    assert.ok(!run.stderr.includes(server.password));
  }
});
