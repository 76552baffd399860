/**
 * The contract for more than one holder: slots and shared holds. Run by
 * {@linkcode testBackendContract} for every backend; a backend without the
 * `holders` capability must refuse them with a `ConfigError` and is
 * otherwise skipped here.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  ConfigError,
  LeaseNotHeldError,
  LimitMismatchError,
  LockHeldError,
} from "../kit/errors.ts";
import type { Backend, Lease } from "../kit/types.ts";
import { Lock } from "../composition/lock.ts";
import { freeSlots } from "../composition/holders.ts";
import { backendTest, sleep, uniqueResource } from "./support.ts";
import type { BackendFactory } from "./support.ts";

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

/** Opens `count` backends, each with its own connection, for racing. */
async function racers(open: BackendFactory, count: number) {
  return await Promise.all(
    Array.from({ length: count }, () => Promise.resolve(open())),
  );
}

async function closeAll(backends: Backend[]): Promise<void> {
  await Promise.all(backends.map((backend) => backend.close()));
}

/**
 * Registers the slots and shared-holds cases for one backend.
 *
 * @param name The backend's name, shown in test names.
 * @param open Opens a fresh backend instance.
 */
export function testHoldersContract(name: string, open: BackendFactory): void {
  const register = backendTest(name);
  /** Runs `body` when the backend has the capability; else checks refusal. */
  const test = (title: string, body: (b: Backend) => Promise<void>) =>
    register(`holders: ${title}`, async () => {
      const b = await open();
      try {
        if (!b.capabilities.holders) {
          await assert.rejects(
            b.acquire(uniqueResource("slots"), "ann@host", 60, { limit: 3 }),
            (error: unknown) =>
              error instanceof ConfigError &&
              /slots and shared holds/.test(error.message),
          );
          return;
        }
        await body(b);
      } finally {
        await b.close();
      }
    });

  test("20 racers for 3 slots: exactly 3 win, each with its own lease", async (b) => {
    const resource = uniqueResource("slots");
    const backends = await racers(open, 20);
    try {
      const results = await Promise.allSettled(
        backends.map((racer, i) =>
          racer.acquire(resource, `racer${i}`, 60, { limit: 3 })
        ),
      );
      const won = results.flatMap((r) =>
        r.status === "fulfilled" ? [r.value] : []
      );
      assert.equal(won.length, 3, "three winners");
      for (const result of results) {
        if (result.status === "rejected") {
          assert.ok(result.reason instanceof LockHeldError, result.reason);
          assert.equal(result.reason.holder.limit, 3);
        }
      }
      const holders = await b.holders!(resource);
      assert.deepEqual(
        holders.map((lease) => lease.id).sort(),
        won.map((lease) => lease.id).sort(),
      );
      assert.equal(new Set(won.map((lease) => lease.fence)).size, 3);
      assert.equal(freeSlots(holders), 0);
      assert.equal((await b.current(resource))?.id, holders[0].id);
    } finally {
      await closeAll(backends);
    }
  });

  test("20 racers churning 3 slots never hold more than 3 at once", async () => {
    const resource = uniqueResource("slots");
    const backends = await racers(open, 20);
    let holding = 0;
    let most = 0;
    let taken = 0;
    try {
      await Promise.all(backends.map(async (racer, i) => {
        for (let round = 0; round < 4; round++) {
          try {
            const lease = await racer.acquire(resource, `racer${i}`, 60, {
              limit: 3,
            });
            holding++;
            taken++;
            most = Math.max(most, holding);
            const seen = (await racer.holders!(resource)).length;
            assert.ok(seen <= 3, `${seen} holders seen`);
            await sleep(5 + Math.random() * 20);
            holding--;
            await racer.release(resource, lease.id);
          } catch (error) {
            if (!(error instanceof LockHeldError)) throw error;
            await sleep(Math.random() * 20);
          }
        }
      }));
      assert.ok(most <= 3, `${most} held at once`);
      assert.ok(taken >= 3, `${taken} taken`);
    } finally {
      await closeAll(backends);
    }
  });

  test("20x20 racers mixing shared and exclusive: an exclusive never overlaps another hold", async () => {
    const resource = uniqueResource("rw");
    const backends = await racers(open, 40);
    const taken = { shared: 0, exclusive: 0 };
    try {
      // Bursts: all 40 at once on a free lock, in a new order each time,
      // so that exclusive and shared acquirers each come first sometimes.
      for (let round = 0; round < 8; round++) {
        const order = backends.map((_, i) => i)
          .sort(() => Math.random() - 0.5);
        const lead = order.findIndex((i) => i % 2 === round % 2);
        order.unshift(...order.splice(lead, 1));
        const results = await Promise.allSettled(
          order.map((i) =>
            backends[i].acquire(resource, `racer${i}`, 60, {
              limit: i % 2 === 0 ? 0 : 1,
            })
          ),
        );
        const won: Lease[] = [];
        for (const result of results) {
          if (result.status === "fulfilled") won.push(result.value);
          else assert.ok(result.reason instanceof LockHeldError, result.reason);
        }
        const exclusive = won.filter((lease) => lease.limit === undefined);
        if (exclusive.length > 0) {
          assert.equal(won.length, 1, `an exclusive beside ${won.length - 1}`);
          taken.exclusive++;
        } else {
          assert.ok(won.length > 0, "nobody won a free lock");
          taken.shared++;
        }
        const holders = await backends[0].holders!(resource);
        assert.deepEqual(
          holders.map((lease) => lease.id).sort(),
          won.map((lease) => lease.id).sort(),
        );
        await Promise.all(won.map((lease) => {
          const i = Number(lease.principal.slice("racer".length));
          return backends[i].release(resource, lease.id);
        }));
      }
      assert.ok(taken.exclusive > 0 && taken.shared > 0, JSON.stringify(taken));
    } finally {
      await closeAll(backends);
    }
  });

  test("an acquire naming another limit is refused, naming the stored one", async (b) => {
    const resource = uniqueResource("slots");
    const first = await b.acquire(resource, "ann@host", 60, { limit: 3 });
    assert.equal(first.limit, 3);
    const mismatch = (asked: number, stored: number) => (error: unknown) => {
      assert.ok(error instanceof LimitMismatchError, String(error));
      assert.equal(error.storedLimit, stored);
      assert.equal(error.askedLimit, asked);
      assert.ok(!error.message.includes("\n"));
      return true;
    };
    await assert.rejects(
      b.acquire(resource, "bob@host", 60, { limit: 5 }),
      mismatch(5, 3),
    );
    await assert.rejects(b.acquire(resource, "bob@host", 60), mismatch(1, 3));
    await assert.rejects(
      b.acquire(resource, "bob@host", 60, { limit: 0 }),
      mismatch(0, 3),
    );
    await assert.rejects(
      b.acquire(resource, "bob@host", 60, { limit: 5 }),
      /held with 3 slots \(1 taken\).*--slots 3/,
    );
    await b.release(resource, first.id);
    // Free again: the next holder sets the limit.
    const exclusive = await b.acquire(resource, "bob@host", 60);
    assert.equal(exclusive.limit, undefined);
    await assert.rejects(
      b.acquire(resource, "cy@host", 60, { limit: 0 }),
      (error: unknown) =>
        error instanceof LockHeldError &&
        !(error instanceof LimitMismatchError) &&
        error.holder.id === exclusive.id,
    );
    await b.release(resource, exclusive.id);
    const reader = await b.acquire(resource, "cy@host", 60, { limit: 0 });
    await assert.rejects(b.acquire(resource, "dan@host", 60), mismatch(1, 0));
    await b.release(resource, reader.id);
  });

  test("fences strictly increase across all holders", async (b) => {
    const resource = uniqueResource("fence");
    const fences: number[] = [];
    const leases: Lease[] = [];
    for (let i = 0; i < 3; i++) {
      leases.push(await b.acquire(resource, `h${i}`, 60, { limit: 0 }));
    }
    fences.push(...leases.map((lease) => lease.fence));
    await b.release(resource, leases[1].id);
    leases.push(await b.acquire(resource, "h3", 60, { limit: 0 }));
    fences.push(leases[3].fence);
    for (const lease of [leases[0], leases[2], leases[3]]) {
      await b.release(resource, lease.id);
    }
    leases.push(await b.acquire(resource, "h4", 60));
    fences.push(leases[4].fence);
    await b.release(resource, leases[4].id);
    if (!b.capabilities.fencing) return;
    for (let i = 1; i < fences.length; i++) {
      assert.ok(fences[i] > fences[i - 1], `fences ${fences.join(", ")}`);
    }
  });

  test("release, renew, isHeld and break act on one holder and leave the others", async (b) => {
    const resource = uniqueResource("slots");
    const [one, two, three] = [
      await b.acquire(resource, "ann@host", 60, { limit: 3 }),
      await b.acquire(resource, "bob@host", 60, { limit: 3 }),
      await b.acquire(resource, "cy@host", 60, { limit: 3 }),
    ];
    for (const lease of [one, two, three]) {
      assert.equal(await b.isHeld(resource, lease.id), true);
    }
    const renewed = await b.renew(resource, three.id, 120, { reason: "more" });
    assert.equal(renewed.id, three.id);
    assert.equal(renewed.fence, three.fence);
    assert.equal(renewed.reason, "more");
    await b.release(resource, one.id);
    assert.equal(await b.isHeld(resource, one.id), false);
    await assert.rejects(b.release(resource, one.id), LeaseNotHeldError);
    let holders = await b.holders!(resource);
    assert.deepEqual(holders.map((lease) => lease.id), [two.id, three.id]);
    assert.equal(freeSlots(holders), 1);
    assert.equal((await b.current(resource))?.id, two.id);
    if (b.capabilities.list) {
      const listed = (await b.list(resource)).filter((lease) =>
        lease.resource === resource
      );
      assert.deepEqual(
        listed.map((lease) => lease.id).sort(),
        [two.id, three.id].sort(),
      );
    }
    const broken = await b.breakLease(resource, two.id, {
      principal: "ops",
      reason: "stuck",
    });
    assert.equal(broken.id, two.id);
    holders = await b.holders!(resource);
    assert.deepEqual(holders.map((lease) => lease.id), [three.id]);
    assert.equal(holders[0].limit, 3);
    await b.release(resource, three.id);
    assert.deepEqual(await b.holders!(resource), []);
    assert.equal(await b.current(resource), null);
  });

  test("an expired holder frees its slot, and the others still count", async (b) => {
    const resource = uniqueResource("slots");
    const short = await b.acquire(resource, "ann@host", 1, { limit: 2 });
    const long = await b.acquire(resource, "bob@host", 60, { limit: 2 });
    await sleep(Math.max(0, short.expires.getTime() - Date.now()) + 400);
    await assert.rejects(
      b.acquire(resource, "cy@host", 60),
      LimitMismatchError,
    );
    const next = await b.acquire(resource, "cy@host", 60, { limit: 2 });
    const holders = await b.holders!(resource);
    assert.deepEqual(holders.map((lease) => lease.id), [long.id, next.id]);
    await assert.rejects(
      b.acquire(resource, "dan@host", 60, { limit: 2 }),
      LockHeldError,
    );
    if (b.capabilities.history) {
      const kinds = (await b.history(resource, 10)).map((event) =>
        `${event.kind} ${event.id === short.id ? "short" : "other"}`
      );
      assert.ok(kinds.includes("acquired short"), kinds.join(", "));
    }
    await b.release(resource, long.id);
    await b.release(resource, next.id);
  });

  test("a waiting exclusive acquirer is not starved by shared ones", async (b) => {
    if (!b.capabilities.list) return;
    const resource = uniqueResource("rwqueue");
    const readers = [
      await b.acquire(resource, "r0", 60, { limit: 0 }),
      await b.acquire(resource, "r1", 60, { limit: 0 }),
    ];
    const order: string[] = [];
    const writer = lockOn(b, resource, "writer").acquire(60, { wait: "2m" })
      .then(async (lease) => {
        order.push("writer");
        const holders = await b.holders!(resource);
        assert.deepEqual(holders.map((lease) => lease.id), [lease.id]);
        await sleep(50);
        await b.release(resource, lease.id);
      });
    // The writer is in the queue once a plain shared acquire is refused.
    let refused: LockHeldError | undefined;
    for (let tries = 0; tries < 200 && !refused; tries++) {
      try {
        const sneaky = await lockOn(b, resource, "late").acquire(60, {
          shared: true,
        });
        await b.release(resource, sneaky.id);
        await sleep(25);
      } catch (error) {
        if (!(error instanceof LockHeldError)) throw error;
        refused = error;
      }
    }
    assert.ok(refused, "a shared acquire jumped the waiting writer");
    assert.ok(refused.waiting >= 1 || refused.queued, refused.message);
    const lateReader = lockOn(b, resource, "reader").acquire(60, {
      shared: true,
      wait: "2m",
    }).then(async (lease) => {
      order.push("reader");
      await b.release(resource, lease.id);
    });
    await sleep(300);
    for (const lease of readers) await b.release(resource, lease.id);
    await Promise.all([writer, lateReader]);
    assert.deepEqual(order, ["writer", "reader"]);
  });
}
