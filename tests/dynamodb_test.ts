import assert from "assert";
import { DynamoDBClient, GetItemCommand } from "@aws-sdk/client-dynamodb";
import {
  BackendUnavailableError,
  ConfigError,
  LockHeldError,
  openBackend,
} from "../mod.ts";
import type { Backend, BackendOptions } from "../mod.ts";
import { testBackendContract } from "./contract.ts";
import { CliHome, uniqueResource } from "./helpers.ts";

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

/** A TCP server that accepts connections and never answers. */
function blackHole(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    try {
      for await (const conn of listener) conns.push(conn);
    } catch { /* closed */ }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch { /* gone */ }
      }
    },
  };
}

function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("dynamodb: items carry a ttl in epoch seconds for DynamoDB's sweeper", async () => {
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

Deno.test("dynamodb: a missing table is a ConfigError that says to run stormlock init", async () => {
  const backend = await open({ table: uniqueTable() });
  try {
    await assert.rejects(backend.acquire("r", "ann@host", 60), (error) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, /does not exist/);
      assert.match(error.message, /stormlock init/);
      assert.match(error.message, /create_table = true/);
      return true;
    });
  } finally {
    await backend.close();
  }
});

Deno.test("dynamodb: init() creates the table and can run again", async () => {
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

Deno.test("dynamodb: create_table = true creates a missing table on first use, once for many racers", async () => {
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

Deno.test("dynamodb: bad option values are ConfigErrors naming the key", async () => {
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
    await assert.rejects(
      openBackend({ endpoint: endpoint!, ...extra }, context),
      (error) => {
        assert.ok(error instanceof ConfigError, String(error));
        assert.match(error.message, key);
        return true;
      },
    );
  }
});

Deno.test("dynamodb: a closed port gives BackendUnavailableError quickly", async () => {
  const port = closedPort();
  const backend = await open({
    table,
    endpoint: `http://127.0.0.1:${port}`,
    timeout: "2s",
  });
  try {
    await assert.rejects(backend.acquire("r", "ann@host", 60), (error) => {
      assert.ok(error instanceof BackendUnavailableError, String(error));
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
      assert.ok(!error.message.includes(SECRET));
      return true;
    });
  } finally {
    await backend.close();
  }
});

Deno.test("dynamodb: a server that never answers gives BackendUnavailableError", async () => {
  const hole = blackHole();
  const backend = await open({
    table,
    endpoint: `http://127.0.0.1:${hole.port}`,
    timeout: "500ms",
  });
  try {
    for (const call of [() => backend.current("r"), () => backend.init!()]) {
      await assert.rejects(call(), (error) => {
        assert.ok(error instanceof BackendUnavailableError, String(error));
        assert.match(error.message, /did not answer within 500ms/);
        return true;
      });
    }
  } finally {
    await backend.close();
    hole.close();
  }
});

function cliConfig(extra: Record<string, string>): string {
  const lines = Object.entries(options({ table, timeout: "2s", ...extra }))
    .map(([key, value]) => `${key} = ${value}`);
  return `[default]\nbackend = dynamodb\n\n[backend.dynamodb]\n${
    lines.join("\n")
  }\n`;
}

Deno.test("dynamodb: the CLI acquires, refuses a second acquire and releases", async () => {
  using home = new CliHome();
  home.write(".stormlock.cfg", cliConfig({}));
  const resource = uniqueResource("cli");

  const first = await home.run(["acquire", resource]);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^[0-9a-f]{32}\n$/);
  assert.equal(first.stderr, "");

  const second = await home.run(["acquire", resource]);
  assert.equal(second.code, 2);
  assert.equal(second.stdout, "");
  assert.match(second.stderr, /is held by tester@/);

  const released = await home.run(["release", resource, first.stdout.trim()]);
  assert.equal(released.code, 0, released.stderr);
});

Deno.test("dynamodb: the CLI gives exit 69 and one clean line when the server is down", async () => {
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    cliConfig({ endpoint: `http://127.0.0.1:${closedPort()}` }),
  );
  const result = await home.run(["acquire", "r"]);
  assert.equal(result.code, 69, result.stderr);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  assert.match(result.stderr, /^stormlock: DynamoDB at 127\.0\.0\.1:\d+ /);
  assert.ok(!/\bat .*:\d+:\d+/.test(result.stderr), "no stack trace");
  assert.ok(!result.stderr.includes(SECRET));
});

Deno.test("dynamodb: the CLI reports missing credentials as a config error", async () => {
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
  assert.equal(result.code, 78, result.stderr);
  assert.match(result.stderr, /No AWS credentials found/);
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
});
