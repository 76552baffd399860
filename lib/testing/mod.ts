/**
 * The backend contract, written once and published for plugin authors.
 * Each backend's test file calls {@linkcode testBackendContract} with a
 * factory that opens a fresh backend instance (its own connection) on a
 * real server, and a server backend also calls
 * {@linkcode testUnavailableContract}. Capabilities a backend declares
 * are tested; those it lacks must be refused with a `ConfigError`.
 *
 * @example A plugin's test file
 * ```ts ignore
 * import { testBackendContract } from "@stormlock/stormlock/testing";
 * import { openBackend } from "@stormlock/stormlock";
 * testBackendContract("mine", (extra) =>
 *   openBackend({ module: "./mine.js", path: "/tmp/x.json", ...extra }, { name: "mine", section: "backend.mine" }));
 * ```
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  UsageError,
} from "../kit/errors.ts";
import { newLeaseId } from "../kit/lease.ts";
import type { Backend, BackendOptions, Lease } from "../kit/types.ts";
import { Lock } from "../composition/lock.ts";
import {
  queueView,
  splitQueue,
  waiterPrefix,
  waiters,
  WaitTicket,
} from "../composition/queue.ts";
import { testHoldersContract } from "./holders.ts";
import {
  type BackendFactory,
  backendTest,
  closedPort,
  rejectsCleanly,
  silentServer,
  sleep,
  uniqueResource,
} from "./support.ts";

export type { BackendFactory } from "./support.ts";

/** Resource names that must round-trip through every backend untouched. */
export const AWKWARD_NAMES: readonly string[] = [
  "with spaces in it",
  "ünïcödé-ロック-🔒",
  `quotes " and ' and \``,
  "'; DROP TABLE x; --",
  "../../etc/passwd",
  "x".repeat(1000),
];

const ROUNDS = 5;
const RACERS = 20;

async function withBackend<T>(
  open: BackendFactory,
  body: (backend: Backend) => Promise<T>,
  extra?: BackendOptions,
): Promise<T> {
  const backend = await open(extra);
  try {
    return await body(backend);
  } finally {
    await backend.close();
  }
}

/** Waits until a lease has surely expired on the server. */
async function outlive(lease: Lease): Promise<void> {
  await sleep(Math.max(0, lease.expires.getTime() - Date.now()) + 400);
}

function assertLease(lease: Lease, resource: string, principal: string) {
  assert.ok(Number.isSafeInteger(lease.fence) && lease.fence >= 0);
  assert.equal(lease.resource, resource);
  assert.match(lease.id, /^[0-9a-f]{32}$/);
  assert.equal(lease.principal, principal);
  assert.ok(lease.created instanceof Date && !isNaN(lease.created.getTime()));
  assert.ok(lease.expires.getTime() > lease.created.getTime());
}

/**
 * Registers the contract's tests for one backend.
 *
 * @param name The backend's name, shown in test names.
 * @param open Opens a fresh backend instance.
 */
export function testBackendContract(
  name: string,
  open: BackendFactory,
  hooks: ContractHooks = {},
): void {
  const register = backendTest(name);
  const test = (title: string, fn: (backend: Backend) => Promise<void>) =>
    register(title, () => withBackend(open, fn));

  test("acquire() returns a fresh lease with the TTL asked for", async (b) => {
    const resource = uniqueResource();
    const before = Date.now();
    const lease = await b.acquire(resource, "ann@host", 60);
    assertLease(lease, resource, "ann@host");
    const ttl = lease.expires.getTime() - lease.created.getTime();
    assert.ok(Math.abs(ttl - 60_000) < 2000, `TTL was ${ttl} ms`);
    // Server clocks may differ a little from ours.
    assert.ok(Math.abs(lease.created.getTime() - before) < 5000);
    await b.release(resource, lease.id);
  });

  register(
    "a closed backend refuses every operation as a usage error",
    async () => {
      const backend = await open();
      const lease = await backend.acquire(uniqueResource(), "ann@host", 60);
      await backend.close();
      const id = lease.id;
      const resource = lease.resource;
      for (
        const operation of [
          () => backend.acquire(uniqueResource(), "ann@host", 60),
          () => backend.release(resource, id),
          () => backend.renew(resource, id, 60),
          () => backend.current(resource),
          () => backend.isHeld(resource, id),
        ]
      ) {
        await assert.rejects(operation(), UsageError);
      }
      await backend.close(); // A second close is harmless.
    },
  );

  test("acquire() refuses a held lock and names the holder", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    const error = await assert.rejects(
      b.acquire(resource, "bob@host", 60),
      (error: unknown) => {
        assert.ok(error instanceof LockHeldError);
        assert.equal(error.holder.id, lease.id);
        assert.equal(error.holder.principal, "ann@host");
        assert.equal(error.holder.resource, resource);
        return true;
      },
    );
    assert.equal(error, undefined);
    assert.equal((await b.current(resource))?.id, lease.id);
  });

  test("isHeld() is true only for the live lease of that resource", async (b) => {
    const resource = uniqueResource();
    const other = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    assert.equal(await b.isHeld(resource, lease.id), true);
    assert.equal(await b.isHeld(resource, newLeaseId()), false);
    assert.equal(await b.isHeld(other, lease.id), false);
    await b.release(resource, lease.id);
    assert.equal(await b.isHeld(resource, lease.id), false);
  });

  test("current() returns the live lease, or null when free", async (b) => {
    const resource = uniqueResource();
    assert.equal(await b.current(resource), null);
    const lease = await b.acquire(resource, "ann@host", 60);
    const current = await b.current(resource);
    assert.ok(current);
    assertLease(current, resource, "ann@host");
    assert.equal(current.id, lease.id);
    assert.ok(
      Math.abs(current.created.getTime() - lease.created.getTime()) < 1000,
    );
    await b.release(resource, lease.id);
    assert.equal(await b.current(resource), null);
  });

  test("renew() extends the lease and keeps its id", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 30);
    const renewed = await b.renew(resource, lease.id, 3600);
    assert.equal(renewed.id, lease.id);
    assert.equal(renewed.principal, "ann@host");
    assert.ok(
      renewed.expires.getTime() - lease.expires.getTime() > 3000_000,
      "the new TTL was applied",
    );
    const current = await b.current(resource);
    assert.ok(
      Math.abs(current!.expires.getTime() - renewed.expires.getTime()) < 1500,
    );
    assert.equal(await b.isHeld(resource, lease.id), true);
  });

  test("renew() and release() with another id fail and leave the lock", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    const stranger = newLeaseId();
    await assert.rejects(b.renew(resource, stranger, 3600), LeaseNotHeldError);
    await assert.rejects(b.release(resource, stranger), LeaseNotHeldError);
    const current = await b.current(resource);
    assert.equal(current?.id, lease.id);
    assert.ok(
      Math.abs(current!.expires.getTime() - lease.expires.getTime()) < 1500,
      "the stranger's renew changed nothing",
    );
  });

  test("release() with the right id on another resource fails", async (b) => {
    const resource = uniqueResource();
    const other = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    await b.acquire(other, "bob@host", 60);
    await assert.rejects(b.release(other, lease.id), LeaseNotHeldError);
    await assert.rejects(b.renew(other, lease.id, 60), LeaseNotHeldError);
    assert.equal(await b.isHeld(resource, lease.id), true);
    assert.equal((await b.current(other))?.principal, "bob@host");
  });

  test("release() frees the lock once; a second release fails", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    await b.release(resource, lease.id);
    await assert.rejects(b.release(resource, lease.id), LeaseNotHeldError);
    const next = await b.acquire(resource, "bob@host", 60);
    assert.notEqual(next.id, lease.id);
    await assert.rejects(b.renew(resource, lease.id, 60), LeaseNotHeldError);
  });

  test("an expired lease can't be renewed or released, and the lock is free again", async (b) => {
    const expiring = uniqueResource();
    const shortened = uniqueResource();
    const lease = await b.acquire(expiring, "ann@host", 1);
    // renew with a shorter TTL must really shorten it.
    const long = await b.acquire(shortened, "ann@host", 3600);
    const short = await b.renew(shortened, long.id, 1);
    assert.ok(short.expires.getTime() < long.expires.getTime() - 3000_000);
    await outlive(lease.expires > short.expires ? lease : short);

    for (const [resource, id] of [[expiring, lease.id], [shortened, long.id]]) {
      assert.equal(await b.isHeld(resource, id), false);
      assert.equal(await b.current(resource), null);
      await assert.rejects(b.renew(resource, id, 60), LeaseNotHeldError);
      await assert.rejects(b.release(resource, id), LeaseNotHeldError);
      const next = await b.acquire(resource, "bob@host", 60);
      assert.equal(next.principal, "bob@host");
      // The old id must not touch the new holder's lease.
      await assert.rejects(b.renew(resource, id, 60), LeaseNotHeldError);
      await assert.rejects(b.release(resource, id), LeaseNotHeldError);
      assert.equal(await b.isHeld(resource, next.id), true);
    }
  });

  test("awkward resource names round-trip and stay separate", async (b) => {
    const suffix = crypto.randomUUID();
    const leases = new Map<string, Lease>();
    for (const base of AWKWARD_NAMES) {
      const resource = base.length > 900 ? base : `${base} ${suffix}`;
      const lease = await b.acquire(resource, "ann@host", 60);
      assert.equal(lease.resource, resource);
      leases.set(resource, lease);
    }
    for (const [resource, lease] of leases) {
      assert.equal((await b.current(resource))?.id, lease.id);
      await b.release(resource, lease.id);
      assert.equal(await b.current(resource), null);
    }
  });

  test("names with reserved (control) characters are refused before the store", async (b) => {
    const base = uniqueResource();
    for (const bad of ["\u001f", "\u0000", "\n", "\u007f", "\u0085"]) {
      const resource = `${base}${bad}wait${bad}0000000000000001`;
      const lease = await b.acquire(base, "ann@host", 60);
      for (
        const operation of [
          () => b.acquire(resource, "ann@host", 60),
          () => b.release(resource, lease.id),
          () => b.renew(resource, lease.id, 60),
          () => b.current(resource),
          () => b.isHeld(resource, lease.id),
          () =>
            b.breakLease(resource, lease.id, {
              principal: "ann@host",
              reason: "test",
            }),
        ]
      ) {
        await assert.rejects(operation(), (error: Error) => {
          assert.ok(error instanceof UsageError, String(error));
          assert.match(error.message, /reserves/);
          return true;
        });
      }
      await b.release(base, lease.id);
    }
  });

  {
    test("a queue entry no waiter made can't hold up a free lock", async (b) => {
      if (!b.capabilities.list) return;
      const resource = uniqueResource();
      // As an older version let anyone make it: a year-long "waiter".
      const forged = await queueView(b).acquire(
        `${waiterPrefix(resource)}0000000000000001`,
        "mallory@host",
        365 * 86400,
      );
      try {
        assert.deepEqual(await waiters(b, resource), []);
        const lock = new Lock(b, {
          resource,
          principal: "ann@host",
          ttlSeconds: 60,
          backend: b.name,
          backendOptions: {},
          backendContext: { name: b.name, section: `backend.${b.name}` },
          warnings: [],
        });
        const lease = await lock.acquire();
        await b.release(resource, lease.id);
        // And it is listed, so an operator can see it.
        const listed = splitQueue(await b.list(resource, { internal: true }))
          .locks.map((lease) => lease.resource);
        assert.ok(listed.includes(forged.resource), JSON.stringify(listed));
      } finally {
        await queueView(b).release(forged.resource, forged.id);
      }
    });
  }

  /** Races every racer for `resource`: exactly one wins, the rest see it. */
  async function race(racers: Backend[], resource: string, label: string) {
    const results = await Promise.allSettled(
      racers.map((racer, i) => racer.acquire(resource, `racer${i}`, 60)),
    );
    const winners = results.filter((r) => r.status === "fulfilled");
    assert.equal(winners.length, 1, `${label}: one winner`);
    const winner = (winners[0] as PromiseFulfilledResult<Lease>).value;
    for (const result of results) {
      if (result.status === "rejected") {
        assert.ok(result.reason instanceof LockHeldError, result.reason);
        assert.equal(result.reason.holder.id, winner.id);
      }
    }
    assert.equal((await racers[0].current(resource))?.id, winner.id);
  }

  async function withRacers(body: (racers: Backend[]) => Promise<void>) {
    const racers = await Promise.all(
      Array.from({ length: RACERS }, () => open()),
    );
    try {
      await body(racers);
    } finally {
      await Promise.all(racers.map((racer) => racer.close()));
    }
  }

  register(
    `${RACERS} concurrent acquirers: exactly one wins, ${ROUNDS} rounds`,
    () =>
      withRacers(async (racers) => {
        for (let round = 0; round < ROUNDS; round++) {
          await race(racers, uniqueResource(`race${round}`), `round ${round}`);
        }
      }),
  );

  register(
    `${RACERS} acquirers racing to take over an expired lease: exactly one wins`,
    () =>
      withRacers(async (racers) => {
        // Takeover of an expired lease is its own code path in most backends.
        const resources = [0, 1].map((i) => uniqueResource(`takeover${i}`));
        const old = await Promise.all(
          resources.map((resource) => racers[0].acquire(resource, "old", 1)),
        );
        await outlive(old[0].expires > old[1].expires ? old[0] : old[1]);
        for (const resource of resources) {
          await race(racers, resource, `takeover of ${resource}`);
        }
      }),
  );

  testMetadataAndFencing(name, open);
  testListHistoryBreak(name, open);
  testWaitQueue(name, open);
  testHoldersContract(name, open);
  if (hooks.store) testStoreSetup(name, open, hooks.store);
  if (hooks.secrets) testSecrets(name, hooks.secrets);
  if (hooks.raw?.writeV01) testV01Lease(name, open, hooks.raw.writeV01);
  if (hooks.raw?.foreign) testForeignData(name, open, hooks.raw);
}

/**
 * What a backend's test file can do that the contract can't: the hooks
 * that let shared cases reach the store directly. Each case runs only for
 * the hooks given.
 */
export interface ContractHooks {
  /** Credentials the server refuses; they must never show. */
  secrets?: SecretHooks;
  /** Records written straight into the store, as another program would. */
  raw?: RawRecordHooks;
  /** A store (such as a table) that `init` creates. */
  store?: StoreHooks;
}

/** How the contract names a store that does not exist yet. */
export interface StoreHooks {
  /** Options naming a fresh store that is not there, and its name. */
  missing(): { options: BackendOptions; name: string };
  /** The options that create it on first use, such as `create_table`. */
  createOnUse: BackendOptions;
  /**
   * How many of the instances that create the store race for one lock
   * meanwhile (exactly one must win); the others take a lock each.
   * @default 0
   */
  sharedRacers?: number;
}

/** How the contract gives a backend a credential the server refuses. */
export interface SecretHooks {
  /** The options that hold the secret, as a user writes them. */
  options: string[];
  /**
   * Opens the backend with `secret` in those options where the server
   * expects another (a wrong password), on the contract's server.
   */
  openWith(secret: string): Backend | Promise<Backend>;
  /** What the refusal must also say, such as "refused the login". */
  refusal?: RegExp;
}

/** A lease as Stormlock 0.1 stored it: no fence, host, reason or link. */
export interface V01Lease {
  /** The resource name. */
  resource: string;
  /** The lease id. */
  id: string;
  /** Who holds it. */
  principal: string;
  /** When it was taken. */
  created: Date;
  /** When it runs out. */
  expires: Date;
}

/**
 * Writes into the store where the factory's backend keeps `resource`'s
 * lease, and returns a reader of what is stored there now, to show it is
 * left alone.
 */
export type ForeignWriter = (
  resource: string,
) => Promise<() => Promise<unknown>>;

/** Writing raw records: 0.1-format leases and data Stormlock never wrote. */
export interface RawRecordHooks {
  /** Stores `lease` exactly as Stormlock 0.1 did, for the factory's backend. */
  writeV01?(lease: V01Lease): Promise<void>;
  /** Kinds of foreign data, by a name shown in failures. */
  foreign?: Record<string, ForeignWriter>;
  /** What a refusal of foreign data must also say (the store, the remedy). */
  foreignMentions?: (string | RegExp)[];
}

/**
 * The {@linkcode StoreHooks} of a backend whose store is a table named by
 * its `table` option and created on first use by `create_table = true`.
 *
 * @param newName A table name no other test uses.
 * @param sharedRacers See {@linkcode StoreHooks.sharedRacers}.
 */
export function tableStore(
  newName: () => string,
  sharedRacers = 0,
): StoreHooks {
  return {
    missing: () => {
      const table = newName();
      return { options: { table, create_table: "false" }, name: table };
    },
    createOnUse: { create_table: "true" },
    sharedRacers,
  };
}

function testStoreSetup(
  name: string,
  open: BackendFactory,
  hooks: StoreHooks,
): void {
  const register = backendTest(name);
  register(
    "a missing store is a ConfigError naming it and both remedies",
    async () => {
      const missing = hooks.missing();
      await withBackend(open, async (b) => {
        await rejectsCleanly(
          b.acquire(uniqueResource(), "ann@host", 60),
          ConfigError,
          {
            mentions: [
              /stormlock init/,
              ...Object.keys(hooks.createOnUse),
              missing.name,
            ],
          },
        );
      }, missing.options);
    },
  );

  register(
    "init() creates the store, and running it again changes nothing",
    async () => {
      await withBackend(open, async (b) => {
        assert.ok(b.init, "a backend with a store to create has init()");
        await b.init();
        await b.init();
        const lease = await b.acquire("r", "ann@host", 60);
        await b.init();
        assert.equal((await b.current("r"))?.id, lease.id);
        if (b.capabilities.history) {
          assert.equal((await b.history("r", 10)).length, 1);
        }
      }, hooks.missing().options);
    },
  );

  register(
    `${RACERS} instances creating the store at once all succeed${
      hooks.sharedRacers
        ? `, and one of ${hooks.sharedRacers} wins a shared lock`
        : ""
    }`,
    async () => {
      const options = { ...hooks.missing().options, ...hooks.createOnUse };
      const racers = await Promise.all(
        Array.from({ length: RACERS }, () => open(options)),
      );
      try {
        const half = hooks.sharedRacers ?? 0;
        const results = await Promise.allSettled(
          racers.map((racer, i) =>
            i < half
              ? racer.acquire("shared", `racer${i}`, 60)
              : racer.acquire(`own${i}`, `racer${i}`, 60)
          ),
        );
        const shared = results.slice(0, half);
        assert.equal(
          shared.filter((result) => result.status === "fulfilled").length,
          half > 0 ? 1 : 0,
          `one winner: ${
            shared.map((result) =>
              result.status === "fulfilled" ? "won" : String(result.reason)
            ).join("; ")
          }`,
        );
        for (const result of shared) {
          if (result.status === "rejected") {
            assert.ok(result.reason instanceof LockHeldError, result.reason);
          }
        }
        for (const result of results.slice(half)) {
          assert.equal(
            result.status,
            "fulfilled",
            String((result as PromiseRejectedResult).reason),
          );
        }
      } finally {
        await Promise.all(racers.map((racer) => racer.close()));
      }
    },
  );
}

function testSecrets(name: string, hooks: SecretHooks): void {
  const register = backendTest(name);
  register(
    `a wrong ${
      hooks.options.join(" / ")
    } is refused as unavailable, and never shown`,
    async () => {
      const secret = `wrong-Secret-${crypto.randomUUID()}`;
      const backend = await hooks.openWith(secret);
      try {
        assert.ok(!Deno.inspect(backend).includes(secret), "inspect shows it");
        assert.ok(
          !(backend.label ?? "").includes(secret),
          "the label shows it",
        );
        for (
          const call of [
            () => backend.acquire(uniqueResource(), "ann@host", 60),
            () => backend.current(uniqueResource()),
          ]
        ) {
          await rejectsCleanly(call(), BackendUnavailableError, {
            mentions: hooks.refusal ? [hooks.refusal] : [],
            secrets: [secret],
          });
        }
      } finally {
        await backend.close();
      }
    },
  );
}

function testV01Lease(
  name: string,
  open: BackendFactory,
  writeV01: NonNullable<RawRecordHooks["writeV01"]>,
): void {
  const register = backendTest(name);
  register(
    "a lease written by Stormlock 0.1 is read, held, listed, renewed and released by its id, and the next lease is fenced above it",
    () =>
      withBackend(open, async (b) => {
        const prefix = `${uniqueResource("v01")}/`;
        const resource = `${prefix}x`;
        const id = newLeaseId();
        const created = new Date(Date.now() - 1000);
        const expires = new Date(created.getTime() + 61_000);
        await writeV01({
          resource,
          id,
          principal: "old@host",
          created,
          expires,
        });
        const current = await b.current(resource);
        assert.ok(current, "the 0.1 lease reads as held");
        assert.equal(current.id, id);
        assert.equal(current.principal, "old@host");
        assert.ok(Number.isSafeInteger(current.fence) && current.fence >= 0);
        assert.equal(current.host, undefined);
        assert.equal(current.reason, undefined);
        assert.equal(current.link, undefined);
        assert.ok(
          Math.abs(current.expires.getTime() - expires.getTime()) < 1000,
          `expires ${current.expires.toISOString()}`,
        );
        assert.equal(await b.isHeld(resource, id), true);
        const held = await b.acquire(resource, "bob@host", 60).catch((e) => e);
        assert.ok(held instanceof LockHeldError, String(held));
        assert.equal(held.holder.id, id);
        assert.equal(held.holder.fence, current.fence);
        // Its holder, upgraded, can still renew and release it.
        const renewed = await b.renew(resource, id, 120, { reason: "now" });
        assert.equal(renewed.fence, current.fence);
        assert.equal(renewed.reason, "now");
        if (b.capabilities.list) {
          // Once renewed, at the latest (0.1 kept no index of its leases).
          assert.deepEqual((await b.list(prefix)).map((l) => l.id), [id]);
        }
        await b.release(resource, id);
        const next = await b.acquire(resource, "bob@host", 60);
        assert.ok(
          next.fence > renewed.fence &&
            (next.fence >= 1 || !b.capabilities.fencing),
          `fence ${next.fence} after ${renewed.fence}`,
        );
        if (b.capabilities.history) {
          assert.deepEqual(
            (await b.history(resource)).map((event) => event.kind),
            ["acquired", "released", "reason-changed"],
          );
        }
      }),
  );
}

function testForeignData(
  name: string,
  open: BackendFactory,
  hooks: RawRecordHooks,
): void {
  const register = backendTest(name);
  register(
    "a record Stormlock did not write gives the same ConfigError everywhere, and is left alone",
    () =>
      withBackend(open, async (b) => {
        for (const [kind, write] of Object.entries(hooks.foreign ?? {})) {
          const resource = uniqueResource(kind.replaceAll(" ", "-"));
          const read = await write(resource);
          const before = await read();
          const id = newLeaseId();
          const by = { principal: "ops", reason: "x" };
          const operations: [string, () => Promise<unknown>][] = [
            ["acquire", () => b.acquire(resource, "ann@host", 60)],
            ["current", () => b.current(resource)],
            ["isHeld", () => b.isHeld(resource, id)],
          ];
          // A stranger's id may be turned away before the record is read.
          for (
            const [operation, call] of [
              ["renew", () => b.renew(resource, id, 60)],
              ["release", () => b.release(resource, id)],
              ["breakLease", () => b.breakLease(resource, id, by)],
            ] as const
          ) {
            const error = await call().then(() => undefined, (e) => e);
            assert.ok(
              error instanceof ConfigError ||
                error instanceof LeaseNotHeldError,
              `${operation} on ${kind}: ${error}`,
            );
          }
          for (const [operation, call] of operations) {
            await rejectsCleanly(call(), ConfigError, {
              mentions: [
                `the record for "${resource}" was not written by Stormlock`,
                ...(hooks.foreignMentions ?? []),
              ],
            }).catch((error) => {
              throw new Error(`${operation} on ${kind}: ${error.message}`, {
                cause: error,
              });
            });
          }
          assert.deepEqual(await read(), before, `the ${kind} changed`);
        }
      }),
  );
}

/** A lock over `backend` for `resource`, as the library opens one. */
function lockOn(backend: Backend, resource: string, principal: string): Lock {
  return new Lock(backend, {
    resource,
    principal,
    ttlSeconds: 60,
    backend: backend.name,
    backendOptions: {},
    backendContext: { name: backend.name, section: `backend.${backend.name}` },
    warnings: [],
  });
}

function testWaitQueue(name: string, open: BackendFactory): void {
  const register = backendTest(name);

  register(
    "watch() announces a release and a break, or is refused without events",
    async () => {
      await withBackend(open, async (b) => {
        const resource = uniqueResource("watch");
        const stop = new AbortController();
        if (!b.capabilities.events) {
          await assert.rejects(
            b.watch(resource, () => {}, stop.signal),
            ConfigError,
          );
          return;
        }
        let changes = 0;
        const other = await open();
        try {
          await b.watch(resource, () => changes++, stop.signal);
          const until = async (count: number) => {
            for (let tries = 0; tries < 500 && changes < count; tries++) {
              await sleep(20);
            }
            assert.ok(changes >= count, `${changes} changes seen`);
          };
          const first = await other.acquire(resource, "ann@host", 60);
          await other.release(resource, first.id);
          await until(1);
          const seen = changes;
          const second = await other.acquire(resource, "bob@host", 60);
          await other.breakLease(resource, second.id, {
            principal: "ops",
            reason: "x",
          });
          await until(seen + 1);
          stop.abort();
        } finally {
          stop.abort();
          await other.close();
        }
      });
    },
  );

  register(
    "waiters are served in the order they started waiting, and a plain acquire defers to them",
    async () => {
      await withBackend(open, async (b) => {
        if (!b.capabilities.list) return;
        const resource = uniqueResource("queue");
        const holder = await b.acquire(resource, "holder", 60);
        const order: number[] = [];
        const waiting: Promise<void>[] = [];
        for (let i = 0; i < 10; i++) {
          const lock = lockOn(b, resource, `waiter${i}`);
          waiting.push(
            lock.acquire(60, { wait: "5m" }).then(async (lease) => {
              order.push(i);
              await sleep(20);
              await b.release(resource, lease.id);
            }),
          );
          // The next waiter starts once this one is in the queue.
          while ((await waiters(b, resource)).length < i + 1) await sleep(20);
        }
        const plain = await lockOn(b, resource, "late").acquire().then(
          () => undefined,
          (error) => error,
        );
        assert.ok(plain instanceof LockHeldError, String(plain));
        assert.equal(plain.waiting, 10);
        await b.release(resource, holder.id);
        await Promise.all(waiting);
        assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.equal((await waiters(b, resource)).length, 0, "all left");
        assert.deepEqual(
          (await b.list(resource)).filter((l) => l.resource !== resource),
          [],
          "list never shows the queue",
        );
      });
    },
  );

  register(
    "a plain acquire of a free lock defers to a live waiter, naming it, and takes the lock once the queue is empty",
    async () => {
      await withBackend(open, async (b) => {
        if (!b.capabilities.list) return;
        const resource = uniqueResource("queued");
        const ticket = await WaitTicket.take(b, resource, "first");
        try {
          const refused = await lockOn(b, resource, "late").acquire().then(
            () => undefined,
            (error) => error,
          );
          assert.ok(refused instanceof LockHeldError, String(refused));
          assert.equal(refused.queued, true);
          assert.equal(refused.waiting, 1);
          assert.equal(refused.holder.principal, "first");
          assert.equal(refused.holder.resource, resource);
          assert.equal(await b.current(resource), null, "nothing was taken");
        } finally {
          await ticket.leave();
        }
        const lease = await lockOn(b, resource, "late").acquire();
        await b.release(resource, lease.id);
      });
    },
  );
}

function testMetadataAndFencing(name: string, open: BackendFactory): void {
  const register = backendTest(name);
  const test = (title: string, fn: (backend: Backend) => Promise<void>) =>
    register(title, () => withBackend(open, fn));

  test("acquire() stores host, reason and link, and current() shows them", async (b) => {
    const resource = uniqueResource();
    const details = {
      host: "build-7",
      reason: "deploy 4.2 \u202e ünï",
      link: "https://ci.example/run/1",
    };
    const lease = await b.acquire(resource, "ann@host", 60, details);
    const current = await b.current(resource);
    for (const seen of [lease, current!]) {
      assert.equal(seen.host, "build-7");
      assert.equal(seen.reason, details.reason);
      assert.equal(seen.link, details.link);
    }
    const error = await b.acquire(resource, "bob@host", 60).catch((e) => e);
    assert.ok(error instanceof LockHeldError);
    assert.equal(error.holder.reason, details.reason);
    await b.release(resource, lease.id);
  });

  test("renew() keeps the fence and can change the reason", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60, { reason: "one" });
    const renewed = await b.renew(resource, lease.id, 120, { reason: "two" });
    assert.equal(renewed.fence, lease.fence);
    assert.equal(renewed.reason, "two");
    const kept = await b.renew(resource, lease.id, 120);
    assert.equal(kept.reason, "two");
    assert.equal((await b.current(resource))?.reason, "two");
  });

  register(
    "fences survive closing every connection and starting afresh",
    async () => {
      const resource = uniqueResource();
      const first = await withBackend(open, async (b) => {
        const lease = await b.acquire(resource, "ann@host", 60);
        await b.release(resource, lease.id);
        return lease;
      });
      await withBackend(open, async (b) => {
        const second = await b.acquire(resource, "bob@host", 60);
        if (b.capabilities.fencing) {
          assert.ok(second.fence > first.fence, `${second.fence}`);
        } else assert.equal(second.fence, 0);
      });
    },
  );

  register(
    "fencing tokens strictly increase across release, expiry and break",
    async () => {
      await withBackend(open, async (b) => {
        if (!b.capabilities.fencing) {
          const lease = await b.acquire(uniqueResource(), "ann@host", 60);
          assert.equal(lease.fence, 0);
          return;
        }
        const resource = uniqueResource();
        const fences: number[] = [];
        const first = await b.acquire(resource, "ann@host", 60);
        fences.push(first.fence);
        await b.release(resource, first.id);
        const second = await b.acquire(resource, "ann@host", 1);
        fences.push(second.fence);
        await outlive(second);
        const third = await b.acquire(resource, "bob@host", 60);
        fences.push(third.fence);
        await b.breakLease(resource, third.id, {
          principal: "ops",
          reason: "x",
        });
        const fourth = await b.acquire(resource, "cy@host", 60);
        fences.push(fourth.fence);
        assert.equal((await b.current(resource))?.fence, fourth.fence);
        for (let i = 1; i < fences.length; i++) {
          assert.ok(fences[i] > fences[i - 1], `fences ${fences.join(", ")}`);
        }
        assert.ok(fences[0] >= 1);
      });
    },
  );
}

function testListHistoryBreak(name: string, open: BackendFactory): void {
  const register = backendTest(name);
  const test = (title: string, fn: (backend: Backend) => Promise<void>) =>
    register(title, () => withBackend(open, fn));

  test("list() shows live leases under a prefix, never expired ones", async (b) => {
    if (!b.capabilities.list) {
      await assert.rejects(b.list(), ConfigError);
      return;
    }
    const prefix = `${uniqueResource("list")}/`;
    const live = await b.acquire(`${prefix}b`, "ann@host", 60, { reason: "r" });
    const other = await b.acquire(`${prefix}a`, "bob@host", 60);
    const expiring = await b.acquire(`${prefix}c`, "cy@host", 1);
    await b.acquire(`${uniqueResource("elsewhere")}`, "dan@host", 60);
    await outlive(expiring);
    const listed = await b.list(prefix);
    assert.deepEqual(listed.map((lease) => lease.resource), [
      `${prefix}a`,
      `${prefix}b`,
    ]);
    assert.equal(listed[0].id, other.id);
    assert.equal(listed[1].id, live.id);
    assert.equal(listed[1].reason, "r");
    assert.ok((await b.list()).some((lease) => lease.id === live.id));
  });

  test("breakLease() with a stale id changes nothing", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    await assert.rejects(
      b.breakLease(resource, newLeaseId(), { principal: "ops", reason: "x" }),
      LeaseNotHeldError,
    );
    assert.equal((await b.current(resource))?.id, lease.id);
  });

  test("a broken holder's renew, release and isHeld name the breaker", async (b) => {
    const resource = uniqueResource();
    const lease = await b.acquire(resource, "ann@host", 60);
    const broken = await b.breakLease(resource, lease.id, {
      principal: "ops@desk",
      host: "desk",
      reason: "job died",
    });
    assert.equal(broken.id, lease.id);
    assert.equal(await b.current(resource), null);
    const calls = [
      () => b.renew(resource, lease.id, 60),
      () => b.release(resource, lease.id),
      () => b.isHeld(resource, lease.id),
    ];
    for (const call of calls) {
      const error = await call().then(() => undefined, (e) => e);
      if (!b.capabilities.history) {
        // Without history, is-held is a plain no.
        if (error !== undefined) assert.ok(error instanceof LeaseNotHeldError);
        continue;
      }
      assert.ok(error instanceof LeaseNotHeldError, String(error));
      assert.equal(error.broken?.by?.principal, "ops@desk");
      assert.equal(error.broken?.by?.reason, "job died");
      assert.match(error.message, /broken by ops@desk/);
    }
  });

  test("history() lists events newest first, each with its lease", async (b) => {
    if (!b.capabilities.history) {
      await assert.rejects(b.history(uniqueResource()), ConfigError);
      return;
    }
    const resource = uniqueResource();
    const first = await b.acquire(resource, "ann@host", 60, {
      host: "h1",
      reason: "one",
      link: "https://ci.example/1",
    });
    await b.renew(resource, first.id, 60);
    await b.renew(resource, first.id, 60, { reason: "two" });
    await b.release(resource, first.id);
    const expiring = await b.acquire(resource, "bob@host", 1);
    await outlive(expiring);
    const third = await b.acquire(resource, "cy@host", 60);
    await b.breakLease(resource, third.id, {
      principal: "ops",
      reason: "stale",
    });
    const events = await b.history(resource, 100);
    assert.deepEqual(events.map((event) => event.kind), [
      "broken",
      "acquired",
      "expired",
      "acquired",
      "released",
      "reason-changed",
      "renewed",
      "acquired",
    ]);
    const acquired = events[7];
    assert.equal(acquired.id, first.id);
    assert.equal(acquired.principal, "ann@host");
    assert.equal(acquired.host, "h1");
    assert.equal(acquired.reason, "one");
    assert.equal(acquired.link, "https://ci.example/1");
    assert.equal(acquired.fence, first.fence);
    assert.equal(events[2].id, expiring.id);
    assert.equal(events[0].by?.principal, "ops");
    assert.equal(events[0].by?.reason, "stale");
    for (let i = 1; i < events.length; i++) {
      assert.ok(events[i - 1].at >= events[i].at, "newest first");
    }
    assert.equal((await b.history(resource, 2)).length, 2);
  });

  register("history is bounded by the history option", async () => {
    await withBackend(open, async (b) => {
      if (!b.capabilities.history) return;
      const resource = uniqueResource();
      for (let i = 0; i < 6; i++) {
        const lease = await b.acquire(resource, `p${i}`, 60);
        await b.release(resource, lease.id);
      }
      const events = await b.history(resource, 100);
      assert.ok(events.length <= 3, `${events.length} events kept`);
      assert.equal(events[0].kind, "released");
      assert.equal(events[0].principal, "p5");
    }, { history: "3" });
  });
}

/** Opens a backend against a server at `host:port`, with a short timeout. */
export type BackendAtFactory = (
  host: string,
  port: number,
) => Backend | Promise<Backend>;

/** What {@linkcode testUnavailableContract} checks beyond the type. */
export interface UnavailableChecks {
  /** A secret the factory passes to the backend; no error may show it. */
  secret?: string;
  /** How messages name the server; `host:port` unless told. */
  address?: (host: string, port: number) => string;
  /** What a silent server's message must also say, such as the timeout. */
  silent?: RegExp;
  /** Turns on Deno's op and resource sanitizers for these tests. */
  sanitize?: boolean;
}

/**
 * Registers the tests for a server that can't be reached: a closed port
 * and a server that accepts but never answers both give
 * `BackendUnavailableError` naming the server, and every call to a silent
 * server is bounded, not only the first.
 *
 * @param name The backend's name, shown in test names.
 * @param openAt Opens the backend against a host and port, with a short
 *   timeout: every call to the silent server waits that long.
 * @param checks What else the errors must and must not say.
 */
export function testUnavailableContract(
  name: string,
  openAt: BackendAtFactory,
  checks: UnavailableChecks = {},
): void {
  const host = "127.0.0.1";
  const { secret, silent, sanitize } = checks;
  const address = checks.address ?? ((host, port) => `${host}:${port}`);
  const test = backendTest(name, { sanitize });
  const secrets = secret === undefined ? [] : [secret];

  test("a closed port gives BackendUnavailableError naming host:port", async () => {
    const port = closedPort();
    await withBackend(() => openAt(host, port), async (backend) => {
      const mentions = [address(host, port)];
      for (
        const call of [
          () => backend.acquire(uniqueResource(), "ann@host", 60),
          () => backend.current(uniqueResource()),
        ]
      ) {
        await rejectsCleanly(call(), BackendUnavailableError, {
          mentions,
          secrets,
        });
      }
    });
  });

  test("a server that accepts but never answers gives BackendUnavailableError, every time", async () => {
    await using server = silentServer();
    await withBackend(() => openAt(host, server.port), async (backend) => {
      const mentions = [
        address(host, server.port),
        ...(silent ? [silent] : []),
      ];
      const calls = [
        () => backend.acquire(uniqueResource(), "ann@host", 60),
        // A later call connects afresh and is bounded again.
        () => backend.current(uniqueResource()),
        ...(backend.init ? [() => backend.init!()] : []),
      ];
      for (const call of calls) {
        await rejectsCleanly(call(), BackendUnavailableError, {
          mentions,
          secrets,
        });
      }
    });
  });

  test("every method on a server that never answers fails within the timeout, watch included", async () => {
    await using server = silentServer();
    await withBackend(() => openAt(host, server.port), async (backend) => {
      const { capabilities } = backend;
      const resource = uniqueResource();
      const id = newLeaseId();
      const by = { principal: "ops", reason: "x" };
      const stop = new AbortController();
      const calls: [string, boolean, () => Promise<unknown>][] = [
        ["acquire", true, () => backend.acquire(resource, "ann@host", 60)],
        ["renew", true, () => backend.renew(resource, id, 60)],
        ["release", true, () => backend.release(resource, id)],
        ["current", true, () => backend.current(resource)],
        ["isHeld", true, () => backend.isHeld(resource, id)],
        ["breakLease", true, () => backend.breakLease(resource, id, by)],
        ["list", capabilities.list, () => backend.list()],
        ["history", capabilities.history, () => backend.history(resource)],
        [
          "watch",
          capabilities.events,
          () => backend.watch(resource, () => {}, stop.signal),
        ],
      ];
      // A hang fails too: no call may take many times the first one, which
      // waited out the backend's own timeout.
      let bound = Infinity;
      try {
        for (const [method, supported, call] of calls) {
          const started = performance.now();
          const outcome = call();
          const hung = Symbol("hung");
          let timer: ReturnType<typeof setTimeout> | undefined;
          const result = await Promise.race([
            outcome.then(() => undefined, (error: unknown) => error),
            new Promise((resolve) =>
              timer = bound === Infinity
                ? undefined
                : setTimeout(() => resolve(hung), bound)
            ),
          ]).finally(() => clearTimeout(timer));
          assert.notEqual(result, hung, `${method} hung`);
          if (bound === Infinity) {
            bound = 30 * Math.max(100, performance.now() - started);
          }
          await rejectsCleanly(
            Promise.reject(result),
            supported ? BackendUnavailableError : ConfigError,
            { mentions: supported ? mentionsFor(server.port) : [], secrets },
          ).catch((error) => {
            throw new Error(`${method}: ${error.message}`, { cause: error });
          });
        }
      } finally {
        stop.abort();
      }
    });
  });

  function mentionsFor(port: number): (string | RegExp)[] {
    return [address(host, port), ...(silent ? [silent] : [])];
  }
}
