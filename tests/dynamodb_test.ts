import assert from "assert";
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import { ConfigError, LockHeldError, openBackend } from "../mod.ts";
import type { Backend, BackendOptions } from "../mod.ts";
import {
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
  uniqueResource,
} from "./helpers.ts";

const endpoint = Deno.env.get("STORMLOCK_TEST_DYNAMODB_ENDPOINT");
if (!endpoint) {
  throw new Error(
    "set STORMLOCK_TEST_DYNAMODB_ENDPOINT (e.g. http://127.0.0.1:4567, a dynalite) or run scripts/test.sh",
  );
}

// dynalite checks that requests are signed, not by whom.
const SECRET = "dummy-secret-never-printed";
const context = { name: "dynamodb", section: "backend.dynamodb" };

function uniqueTable(): string {
  return `stormlock-test-${crypto.randomUUID()}`;
}

function options(extra: BackendOptions = {}): BackendOptions {
  return {
    endpoint: endpoint!,
    region: "us-east-1",
    access_key_id: "AKIDDUMMY",
    secret_access_key: SECRET,
    ...extra,
  };
}

function open(extra: BackendOptions = {}): Promise<Backend> {
  return openBackend(options(extra), context);
}

// The contract runs on a table made once by init(), without auto-creation,
// so a missing table could not hide behind create_table.
const table = uniqueTable();
{
  const backend = await open({ table });
  await backend.init!();
  await backend.close();
}

testBackendContract("dynamodb", () => open({ table }));

// Under 2s the SDK arms its connect timer at once and leaves it running
// after a refused connection, which the sanitizers report as a leak.
testUnavailableContract(
  "dynamodb",
  (host, port) =>
    open({ table, endpoint: `http://${host}:${port}`, timeout: "2s" }),
  { secret: SECRET, silent: /did not answer within 2s/, sanitize: true },
);

const test = backendTest("dynamodb", { sanitize: true });

test("items carry a ttl in epoch seconds for DynamoDB's sweeper", async () => {
  const backend = await open({ table });
  const resource = uniqueResource();
  const lease = await backend.acquire(resource, "ann@host", 60);
  const renewed = await backend.renew(resource, lease.id, 600);
  await backend.close();
  const client = new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDDUMMY", secretAccessKey: SECRET },
  });
  try {
    const { Item } = await client.send(
      new GetItemCommand({
        TableName: table,
        Key: { resource: { S: resource } },
        ConsistentRead: true,
      }),
    );
    assert.equal(Item?.expires.N, String(renewed.expires.getTime()));
    assert.equal(
      Item?.ttl.N,
      String(Math.ceil(renewed.expires.getTime() / 1000)),
    );
  } finally {
    client.destroy();
  }
});

test("a missing table is a ConfigError that says to run stormlock init", async () => {
  const backend = await open({ table: uniqueTable() });
  try {
    await rejectsCleanly(backend.acquire("r", "ann@host", 60), ConfigError, {
      mentions: [/does not exist/, /stormlock init/, /create_table = true/],
      secrets: [SECRET],
    });
  } finally {
    await backend.close();
  }
});

test("init() creates the table and can run again", async () => {
  const fresh = uniqueTable();
  const backend = await open({ table: fresh });
  try {
    await backend.init!();
    await backend.init!();
    const lease = await backend.acquire("r", "ann@host", 60);
    assert.equal((await backend.current("r"))?.id, lease.id);
  } finally {
    await backend.close();
  }
});

test("create_table = true creates a missing table on first use, once for many racers", async () => {
  const fresh = uniqueTable();
  const backends = await Promise.all(
    Array.from(
      { length: 5 },
      () => open({ table: fresh, create_table: "true" }),
    ),
  );
  try {
    const resource = uniqueResource();
    const results = await Promise.allSettled(
      backends.map((backend, i) => backend.acquire(resource, `racer${i}`, 60)),
    );
    const winners = results.filter((result) => result.status === "fulfilled");
    assert.equal(winners.length, 1);
    for (const result of results) {
      if (result.status === "rejected") {
        assert.ok(result.reason instanceof LockHeldError, result.reason);
      }
    }
  } finally {
    await Promise.all(backends.map((backend) => backend.close()));
  }
});

test("bad option values are ConfigErrors naming the key", async () => {
  const cases: Array<[BackendOptions, RegExp]> = [
    [{ endpoint: "127.0.0.1:8000" }, /endpoint/],
    [{ endpoint: "http://user:pw@127.0.0.1:8000" }, /endpoint/],
    [{ table: "no" }, /table/],
    [{ table: "bad name!" }, /table/],
    [{ timeout: "soon" }, /timeout/],
    [{ create_table: "maybe" }, /create_table/],
    [{ access_key_id: "AKID" }, /secret_access_key/],
  ];
  for (const [extra, key] of cases) {
    await rejectsCleanly(
      openBackend({ endpoint: endpoint!, ...extra }, context),
      ConfigError,
      { mentions: [key] },
    );
  }
});

function cliConfig(extra: Record<string, string>): string {
  const lines = Object.entries(options({ table, timeout: "2s", ...extra }))
    .map(([key, value]) => `${key} = ${value}`);
  return `[default]\nbackend = dynamodb\n\n[backend.dynamodb]\n${
    lines.join("\n")
  }\n`;
}

test("the CLI acquires, refuses a second acquire and releases", async () => {
  using home = new CliHome();
  home.write(".stormlock.cfg", cliConfig({}));
  await assertCliLockCycle(home, uniqueResource("cli"));
});

test("the CLI gives exit 69 and one clean line when the server is down", async () => {
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    cliConfig({ endpoint: `http://127.0.0.1:${closedPort()}` }),
  );
  const result = await home.run(["acquire", "r"]);
  assertCleanExit(result, 69, /^stormlock: DynamoDB at 127\.0\.0\.1:\d+ /, [
    SECRET,
  ]);
});

test("the CLI reports missing credentials as a config error", async () => {
  using home = new CliHome();
  const config = cliConfig({}).replace(
    /^(access_key_id|secret_access_key).*\n/gm,
    "",
  );
  home.write(".stormlock.cfg", config);
  // No instance metadata either: on EC2 it would supply real credentials.
  const result = await home.run(["current", "r"], {
    AWS_EC2_METADATA_DISABLED: "true",
  });
  assertCleanExit(result, 78, /No AWS credentials found/);
});

test("a too long resource name says to use a shorter one", async () => {
  const backend = await open();
  try {
    await assert.rejects(
      backend.acquire("r".repeat(3000), "ann@host", 60),
      /is 3000 bytes; DynamoDB keys hold at most 2048, so use a shorter name$/,
    );
  } finally {
    await backend.close();
  }
});
