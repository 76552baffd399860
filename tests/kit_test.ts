/**
 * The kit's own mechanisms, on small in-memory stores: release and break
 * made of one end-of-lease primitive, "create the missing table, then
 * retry" driven by the classifier, and the queue's view telling a store
 * which names are waiters' registrations.
 */
import assert from "assert";
import { defineBackend } from "../lib/kit/define.ts";
import type { Ending, Operation, Store } from "../lib/kit/contract.ts";
import { ConfigError, LeaseNotHeldError } from "../lib/kit/errors.ts";
import type { Backend, Lease } from "../lib/kit/types.ts";
import { queueView, waiterPrefix } from "../lib/composition/queue.ts";

const context = { name: "memory", section: "backend.memory" };

/** A one-process store recording how each lease ended and each `op`. */
function memory(
  seen: { ends: [string, Ending][]; ops: [string, Operation][] },
  table: { exists: boolean; inits: number },
): Store {
  const leases = new Map<string, Lease>();
  const needTable = () => {
    if (!table.exists) throw new Error("no such table: leases");
  };
  return {
    label: "memory store",
    acquire(request, op) {
      seen.ops.push([request.resource, op]);
      needTable();
      const lease: Lease = {
        ...request,
        fence: 1,
        created: new Date(),
        expires: new Date(Date.now() + request.ttlSeconds * 1000),
      };
      leases.set(request.resource, lease);
      return lease;
    },
    end(resource, id, ending, op) {
      seen.ops.push([resource, op]);
      needTable();
      const lease = leases.get(resource);
      if (lease?.id !== id) throw new LeaseNotHeldError(resource, id);
      leases.delete(resource);
      seen.ends.push([resource, ending]);
      return lease;
    },
    renew(resource, id) {
      const lease = leases.get(resource);
      if (lease?.id !== id) throw new LeaseNotHeldError(resource, id);
      return lease;
    },
    current(resource) {
      needTable();
      return leases.get(resource) ?? null;
    },
    init() {
      table.inits++;
      table.exists = true;
    },
    close() {},
  };
}

async function open(
  createTable: boolean,
  table = { exists: true, inits: 0 },
): Promise<{ backend: Backend; seen: Parameters<typeof memory>[0] }> {
  const seen = { ends: [], ops: [] } as Parameters<typeof memory>[0];
  const definition = defineBackend({
    name: "memory",
    options: {
      create_table: { kind: "boolean", default: false, doc: "" },
    },
    capabilities: { clock: "host", init: true },
    createMissing: (settings) => settings.create_table,
    classify: (error) =>
      error instanceof Error && /no such table/.test(error.message)
        ? { missing: "has no table; run stormlock init" }
        : undefined,
    open: () => memory(seen, table),
  });
  const backend = await definition.createBackend(
    { create_table: String(createTable) },
    context,
  );
  return { backend, seen };
}

Deno.test("release and breakLease are both made of the store's one end primitive", async () => {
  const { backend, seen } = await open(false);
  const first = await backend.acquire("deploy", "ann@host", 60);
  await backend.release("deploy", first.id);
  const second = await backend.acquire("deploy", "ann@host", 60);
  const by = { principal: "ops@host", reason: "stuck" };
  const broken = await backend.breakLease("deploy", second.id, by);
  assert.equal(broken.id, second.id);
  assert.deepEqual(seen.ends, [
    ["deploy", { kind: "released" }],
    ["deploy", { kind: "broken", by }],
  ]);
  // Compare-and-delete: a stale id ends nothing, either way.
  await assert.rejects(
    backend.release("deploy", first.id),
    LeaseNotHeldError,
  );
  await assert.rejects(
    backend.breakLease("deploy", first.id, by),
    LeaseNotHeldError,
  );
  assert.equal(seen.ends.length, 2);
  await backend.close();
});

Deno.test("a missing table is created once by init and the operation retried, when the settings allow", async () => {
  const table = { exists: false, inits: 0 };
  const { backend } = await open(true, table);
  const lease = await backend.acquire("deploy", "ann@host", 60);
  assert.equal(table.inits, 1);
  assert.equal((await backend.current("deploy"))?.id, lease.id);
  assert.equal(table.inits, 1, "a table that exists is not created again");
  await backend.close();
});

Deno.test("a missing table is a config error with the classifier's text when the settings don't allow creating it", async () => {
  const table = { exists: false, inits: 0 };
  const { backend } = await open(false, table);
  await assert.rejects(
    backend.acquire("deploy", "ann@host", 60),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.equal(
        error.message,
        "memory store has no table; run stormlock init",
      );
      return true;
    },
  );
  assert.equal(table.inits, 0);
  await backend.close();
});

Deno.test("the queue's view tells the store which lock a registration waits for; other names carry nothing", async () => {
  const { backend, seen } = await open(false);
  const registration = `${waiterPrefix("deploy")}0000000000000001`;
  const lease = await queueView(backend).acquire(registration, "ann@host", 10);
  await queueView(backend).release(registration, lease.id);
  const plain = await backend.acquire("deploy", "ann@host", 60);
  await queueView(backend).release("deploy", plain.id);
  assert.deepEqual(
    seen.ops.map(([resource, op]) => [resource, op.waitsFor]),
    [
      [registration, "deploy"],
      [registration, "deploy"],
      ["deploy", undefined],
      ["deploy", undefined],
    ],
  );
  // The op is still the operation's bound.
  assert.ok(seen.ops[0][1].signal instanceof AbortSignal);
  await backend.close();
});
