import assert from "assert";
import process from "node:process";
import {
  DeadlineError,
  MAX_TIMER_MS,
  withDeadline,
} from "../lib/kit/deadline.ts";

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
