import assert from "assert";
import process from "node:process";
import {
  DeadlineError,
  MAX_TIMER_MS,
  withDeadline,
} from "../lib/kit/deadline.ts";
import { attemptMs, MIN_ATTEMPT_MS } from "../lib/kit/views.ts";
import { defineBackend } from "../lib/kit/define.ts";
import { MAX_IN_FLIGHT } from "../lib/kit/turns.ts";
import { LeaseNotHeldError } from "../lib/kit/errors.ts";
import { Lock } from "../lib/composition/lock.ts";

/** Runs `body`, returning the names of the process warnings it caused. */
async function warningsOf(body: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const listener = (warning: Error) => seen.push(warning.name);
  process.on("warning", listener);
  try {
    await body();
    // Warnings are emitted on a later tick.
    await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    process.off("warning", listener);
  }
  return seen;
}

function after<T>(ms: number, value: T): Promise<T> {
  return new Promise((resolve) => setTimeout(() => resolve(value), ms));
}

Deno.test("withDeadline resolves with the work's value and rejects with its error", async () => {
  assert.equal(await withDeadline(1000, () => after(5, 42)), 42);
  await assert.rejects(
    withDeadline(1000, () => Promise.reject(new RangeError("no"))),
    RangeError,
  );
  await assert.rejects(
    withDeadline(1000, () => {
      throw new RangeError("at once");
    }),
    RangeError,
  );
});

Deno.test("withDeadline rejects with DeadlineError and aborts the signal when time runs out", async () => {
  let aborted: unknown;
  const error = await withDeadline(
    10,
    (signal) =>
      new Promise<never>((_, reject) => {
        signal.addEventListener("abort", () => {
          aborted = signal.reason;
          reject(new Error("the client's own error"));
        });
      }),
  ).catch((error) => error);
  assert.ok(error instanceof DeadlineError);
  assert.equal(error.ms, 10);
  assert.equal(aborted, error);
});

Deno.test("withDeadline holds a bound past the longest timer to it, without a warning", async () => {
  for (const ms of [MAX_TIMER_MS, MAX_TIMER_MS + 200, 2 ** 53, Infinity]) {
    const warnings = await warningsOf(async () => {
      // A timer past the longest would fire at once, before the work ends.
      assert.equal(await withDeadline(ms, () => after(30, "done")), "done");
    });
    assert.deepEqual(warnings, [], `no warning for ${ms}`);
  }
});

Deno.test("withDeadline treats a negative or NaN bound as no time, without a warning", async () => {
  for (const ms of [-5, NaN]) {
    const warnings = await warningsOf(async () => {
      await assert.rejects(
        withDeadline(ms, () => new Promise<never>(() => {})),
        DeadlineError,
      );
    });
    assert.deepEqual(warnings, [], `no warning for ${ms}`);
  }
});

Deno.test("attemptMs() gives each try the time left, between the floor and the timeout", () => {
  assert.equal(attemptMs(3000, undefined, 0), 3000);
  assert.equal(attemptMs(3000, 10_000, 0), 3000);
  assert.equal(attemptMs(10_000, 2_000, 0), 2000);
  assert.equal(attemptMs(10_000, 100, 0), MIN_ATTEMPT_MS);
  assert.equal(attemptMs(10_000, 0, 5000), MIN_ATTEMPT_MS);
  assert.equal(attemptMs(200, 0, 5000), 200);
});

Deno.test("a wait ends near its deadline even when every try would take the whole timeout", async () => {
  // A store that takes the lock's queue reads fine but never answers an
  // acquire: each try runs to the per-operation timeout (30 s here).
  const hung = defineBackend({
    name: "hung",
    options: { timeout: { kind: "duration", default: "30s", doc: "" } },
    capabilities: { clock: "host" },
    open: () => ({
      label: "hung store",
      acquire: () => new Promise<never>(() => {}),
      end: () => Promise.reject(new LeaseNotHeldError("x", "y")),
      renew: () => new Promise<never>(() => {}),
      current: () => Promise.resolve(null),
      close() {},
    }),
  });
  const backend = await hung.createBackend({}, {
    name: "hung",
    section: "backend.hung",
  });
  const lock = new Lock(backend, {
    resource: "deploy",
    principal: "ann@host",
    ttlSeconds: 60,
    backend: "hung",
    backendOptions: {},
    backendContext: { name: "hung", section: "backend.hung" },
    warnings: [],
  });
  const started = Date.now();
  await assert.rejects(lock.acquire(undefined, { wait: 1 }));
  const took = Date.now() - started;
  await backend.close();
  // Unbounded, the first try alone takes the 30 s timeout; bounded, the
  // wait ends about a second after it was asked to. A third of the
  // timeout leaves a loaded machine plenty of room.
  assert.ok(took < 10_000, `the 1 s wait took ${took} ms`);
});

Deno.test("past 16 operations in flight, the rest wait their turn, and one that gets none is refused as busy, never sent", async () => {
  let sent = 0;
  const hung = defineBackend({
    name: "hung",
    options: { timeout: { kind: "duration", default: "1s", doc: "" } },
    capabilities: { clock: "host" },
    open: () => ({
      label: "hung store",
      acquire: () => {
        sent++;
        return new Promise<never>(() => {});
      },
      end: () => Promise.reject(new LeaseNotHeldError("x", "y")),
      renew: () => new Promise<never>(() => {}),
      current: () => Promise.resolve(null),
      close() {},
    }),
  });
  const backend = await hung.createBackend({}, {
    name: "hung",
    section: "backend.hung",
  });
  // Twice as many as may be in flight, and one more: the last can't get a
  // turn before the first 32 have each had their second.
  const count = 2 * MAX_IN_FLIGHT + 1;
  const results = await Promise.allSettled(
    Array.from(
      { length: count },
      (_, i) => backend.acquire(`r${i}`, "ann@host", 60),
    ),
  );
  await backend.close();
  const messages = results.map((result) =>
    String((result as PromiseRejectedResult).reason?.message)
  );
  const busy = messages.filter((message) => / is busy: /.test(message));
  assert.ok(busy.length >= 1, messages.join("\n"));
  assert.match(messages[count - 1], / is busy: /);
  assert.equal(sent, count - busy.length, "a busy refusal was never sent");
  assert.equal(
    messages.filter((message) => /did not answer within 1s/.test(message))
      .length,
    sent,
  );
});
