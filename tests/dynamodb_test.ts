import assert from "assert";
import {
  type AttributeValue,
  BatchWriteItemCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
} from "@aws-sdk/client-dynamodb";
import {
  BackendUnavailableError,
  ConfigError,
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

/** An item as Stormlock 0.1 wrote it, with the ttl its sweeper read. */
function v01Item(
  resource: string,
  id: string,
  principal: string,
  created: number,
  expires: number,
): Record<string, AttributeValue> {
  return {
    resource: { S: resource },
    lease: { S: id },
    principal: { S: principal },
    created: { N: String(created) },
    expires: { N: String(expires) },
    ttl: { N: String(Math.ceil(expires / 1000)) },
  };
}

/** Puts `item` into the contract's table with a client of its own. */
async function putItem(item: Record<string, AttributeValue>): Promise<void> {
  const client = rawClient();
  try {
    await client.send(new PutItemCommand({ TableName: table, Item: item }));
  } finally {
    client.destroy();
  }
}

testBackendContract("dynamodb", (extra) => open({ table, ...extra }), {
  store: tableStore(uniqueTable, 5),
  raw: {
    writeV01: (lease) =>
      putItem(v01Item(
        lease.resource,
        lease.id,
        lease.principal,
        lease.created.getTime(),
        lease.expires.getTime(),
      )),
    foreign: {
      "item with the wrong types": async (resource) => {
        await putItem({
          resource: { S: resource },
          lease: { S: "not-a-lease-id" },
          principal: { N: "7" },
          expires: { S: "tomorrow" },
        });
        return async () => {
          const client = rawClient();
          try {
            return await rawItem(client, resource);
          } finally {
            client.destroy();
          }
        };
      },
    },
    foreignMentions: [/backend\.dynamodb/],
  },
});

// A short timeout: every call to the silent server waits that long.
testUnavailableContract(
  "dynamodb",
  (host, port) =>
    open({ table, endpoint: `http://${host}:${port}`, timeout: "2s" }),
  { secret: SECRET, silent: /did not answer within 2s/, sanitize: true },
);

const test = backendTest("dynamodb", { sanitize: true });

/** A client of its own, to look at and write items as they are stored. */
function rawClient(): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: "us-east-1",
    credentials: { accessKeyId: "AKIDDUMMY", secretAccessKey: SECRET },
  });
}

async function rawItem(
  client: DynamoDBClient,
  resource: string,
): Promise<Record<string, AttributeValue> | undefined> {
  const { Item } = await client.send(
    new GetItemCommand({
      TableName: table,
      Key: { resource: { S: resource } },
      ConsistentRead: true,
    }),
  );
  return Item;
}

test("the item outlives its lease, keeping the fence, with no ttl for the sweeper", async () => {
  const backend = await open({ table });
  const client = rawClient();
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    const renewed = await backend.renew(resource, lease.id, 600);
    let item = await rawItem(client, resource);
    assert.equal(item?.expires.N, String(renewed.expires.getTime()));
    assert.equal(item?.fence.N, String(lease.fence));
    // DynamoDB's TTL sweeper would delete the fence with the item.
    assert.equal(item?.ttl, undefined);
    await backend.release(resource, lease.id);
    item = await rawItem(client, resource);
    assert.ok(item, "a released lease's item stays");
    assert.equal(item.fence.N, String(lease.fence));
    assert.equal(item.lease, undefined);
    assert.equal(item.expires, undefined);
    assert.equal(item.ttl, undefined);
    assert.equal(item.events.L?.length, 3);
  } finally {
    client.destroy();
    await backend.close();
  }
});

test("a 0.1 item loses its ttl on renew, and taking over an expired one records its expiry", async () => {
  const backend = await open({ table });
  const client = rawClient();
  try {
    const now = Date.now();
    const resource = uniqueResource("old");
    const expired = uniqueResource("old-expired");
    const id = "0123456789abcdef0123456789abcdef";
    await putItem(v01Item(resource, id, "old@host", now - 1000, now + 60_000));
    await putItem(v01Item(expired, id, "old@host", now - 1000, now - 1000));

    assert.equal((await backend.current(resource))?.fence, 0);
    assert.equal((await backend.renew(resource, id, 120)).fence, 0);
    await backend.release(resource, id);
    const first = await backend.acquire(resource, "new@host", 60);
    await backend.release(resource, first.id);
    const second = await backend.acquire(resource, "new@host", 60);
    assert.equal(first.fence, 1);
    assert.equal(second.fence, 2);
    assert.equal((await rawItem(client, resource))?.ttl, undefined);

    assert.equal(await backend.current(expired), null);
    const taken = await backend.acquire(expired, "new@host", 60);
    assert.equal(taken.fence, 1);
    const events = await backend.history(expired);
    assert.deepEqual(events.map((event) => event.kind), [
      "acquired",
      "expired",
    ]);
    assert.equal(events[1].id, id);
    assert.equal(events[1].fence, 0);
    assert.equal(events[1].at.getTime(), now - 1000);
  } finally {
    client.destroy();
    await backend.close();
  }
});

test("slots: further holders sit in the holders map, the lowest fence on top; an exclusive item gains no attribute", async () => {
  const backend = await open({ table });
  const client = rawClient();
  try {
    const resource = uniqueResource("slots");
    const added = ["limit", "holders", "lease_fence"];
    const exclusive = await backend.acquire(resource, "ann@host", 60);
    let item = await rawItem(client, resource);
    for (const name of added) assert.equal(item?.[name], undefined, name);
    await backend.release(resource, exclusive.id);

    const [a, b, c] = [
      await backend.acquire(resource, "a@host", 60, { limit: 3 }),
      await backend.acquire(resource, "b@host", 60, { limit: 3 }),
      await backend.acquire(resource, "c@host", 60, { limit: 3 }),
    ];
    item = await rawItem(client, resource);
    assert.equal(item?.lease.S, a.id);
    assert.equal(item?.limit.N, "3");
    assert.equal(item?.lease_fence.N, String(a.fence));
    // `fence` stays the last one issued, so no version reuses one.
    assert.equal(item?.fence.N, String(c.fence));
    assert.deepEqual(
      Object.keys(item?.holders.M ?? {}).sort(),
      [b.id, c.id].sort(),
    );

    await backend.release(resource, a.id);
    item = await rawItem(client, resource);
    assert.equal(item?.lease.S, b.id, "the lowest fence moves up");
    assert.equal(item?.lease_fence.N, String(b.fence));
    assert.deepEqual(Object.keys(item?.holders.M ?? {}), [c.id]);
    await backend.release(resource, c.id);
    item = await rawItem(client, resource);
    assert.equal(item?.lease.S, b.id);
    assert.equal(item?.holders, undefined);
    await backend.release(resource, b.id);
    item = await rawItem(client, resource);
    assert.equal(item?.lease, undefined);
    for (const name of added) assert.equal(item?.[name], undefined, name);
    assert.equal(item?.fence.N, String(c.fence));
    const events = await backend.history(resource);
    assert.deepEqual(
      events.slice(0, 3).map((event) => [event.kind, event.id, event.limit]),
      [["released", b.id, 3], ["released", c.id, 3], ["released", a.id, 3]],
    );
    assert.equal(events.at(-1)?.limit, undefined, "the exclusive lease's");
  } finally {
    client.destroy();
    await backend.close();
  }
});

test("shared holds with large reasons are refused in one line before the item passes DynamoDB's 400 KB", async () => {
  const backend = await open({ table });
  try {
    const resource = uniqueResource("big");
    const reason = "r".repeat(15 * 1024);
    const taken = [];
    let refused: unknown;
    for (let i = 0; i < 40 && !refused; i++) {
      try {
        taken.push(
          await backend.acquire(resource, `h${i}`, 60, { limit: 0, reason }),
        );
      } catch (error) {
        refused = error;
      }
    }
    assert.ok(refused instanceof UsageError, String(refused));
    assert.match(refused.message, /400 KB; use fewer slots/);
    assert.ok(!refused.message.includes("\n"));
    assert.ok(taken.length >= 10, `${taken.length} taken`);
    assert.equal((await backend.holders!(resource)).length, taken.length);
    for (const lease of taken) await backend.release(resource, lease.id);
    assert.deepEqual(await backend.holders!(resource), []);
  } finally {
    await backend.close();
  }
});

test("list() pages through a table of thousands of locks", async () => {
  const backend = await open({ table, timeout: "30s" });
  const client = rawClient();
  try {
    const prefix = `${uniqueResource("many")}/`;
    const now = Date.now();
    // About 2.5 MB: DynamoDB and dynalite return at most 1 MB a page.
    const reason = "r".repeat(1000);
    // Every tenth free (released), every tenth after it expired.
    const layout = (
      name: string,
      kind: number,
    ): Record<string, AttributeValue> =>
      kind === 3
        ? { resource: { S: name }, fence: { N: "1" }, version: { N: "2" } }
        : {
          resource: { S: name },
          lease: { S: crypto.randomUUID().replaceAll("-", "") },
          principal: { S: "ann@host" },
          reason: { S: reason },
          fence: { N: "1" },
          version: { N: "1" },
          created: { N: String(now) },
          expires: { N: String(now + (kind === 7 ? -1000 : 600_000)) },
        };
    const names = Array.from(
      { length: 2000 },
      (_, i) => `${prefix}${String(i).padStart(4, "0")}`,
    );
    for (let i = 0; i < names.length; i += 25) {
      await client.send(
        new BatchWriteItemCommand({
          RequestItems: {
            [table]: names.slice(i, i + 25).map((name, j) => ({
              PutRequest: { Item: layout(name, (i + j) % 10) },
            })),
          },
        }),
      );
    }
    const listed = await backend.list(prefix);
    const expected = names.filter((_, i) => i % 10 !== 3 && i % 10 !== 7);
    assert.equal(listed.length, expected.length);
    assert.deepEqual(listed.map((lease) => lease.resource), expected);
    assert.equal(listed[0].reason, reason);
  } finally {
    client.destroy();
    await backend.close();
  }
});

test("history keeps events on the resource's item and drops the oldest past its byte budget", async () => {
  const backend = await open({ table });
  try {
    const resource = uniqueResource();
    const reason = "x".repeat(4000);
    for (let i = 0; i < 20; i++) {
      const lease = await backend.acquire(resource, `p${i}`, 60, { reason });
      await backend.release(resource, lease.id);
    }
    const events = await backend.history(resource, 100);
    // 32 KB of 4 KB events: far fewer than the 40 written.
    assert.ok(events.length >= 4 && events.length < 10, `${events.length}`);
    assert.equal(events[0].kind, "released");
    assert.equal(events[0].principal, "p19");
  } finally {
    await backend.close();
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
    [{ region: "Europe" }, /region/],
    [{ region: "us-east" }, /region/],
    [{ endpoint: "ftp://127.0.0.1:8000" }, /endpoint/],
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

test("a too large principal says the lease item is too large, not a key problem", async () => {
  const backend = await open({ table });
  try {
    const resource = uniqueResource();
    await rejectsCleanly(
      backend.acquire(resource, "p".repeat(500_000), 60),
      UsageError,
      { mentions: [/too large/, /400 KB/, /principal/] },
    );
    const error = await backend.acquire(resource, "p".repeat(500_000), 60)
      .catch((e) => e);
    assert.doesNotMatch(error.message, /hash key/);
    assert.equal(await backend.current(resource), null);
  } finally {
    await backend.close();
  }
});

test("an endpoint that does not speak HTTP says so at once, not that it timed out", async () => {
  for (
    const reply of [
      "SSH-2.0-OpenSSH_9.6\r\n",
      "-ERR wrong protocol\r\n",
      // HTTP, but not DynamoDB's: a web server on the port.
      "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
      "\x15\x03\x01\x00\x02\x02\x50",
    ]
  ) {
    await using server = replyingServer(reply);
    const backend = await open({
      table,
      endpoint: `http://127.0.0.1:${server.port}`,
      timeout: "3s",
    });
    try {
      const started = Date.now();
      const error = await rejectsCleanly(
        backend.current(uniqueResource()),
        BackendUnavailableError,
        {
          mentions: [
            `127.0.0.1:${server.port}`,
            /does not speak HTTP\/DynamoDB at that endpoint/,
            /endpoint/,
          ],
          secrets: [SECRET],
        },
      );
      assert.doesNotMatch(error.message, /did not answer|\n/);
      assert.ok(Date.now() - started < 2500, "no wait for the timeout");
    } finally {
      await backend.close();
    }
  }
});
