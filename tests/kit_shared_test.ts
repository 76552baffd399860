/**
 * The kit's mechanisms that several stores share: the lazy connection,
 * the subscriber that fans change events out to watchers, and the SQL
 * helpers. The stores' own tests run them against real servers; these
 * pin down their rules without one.
 */
import assert from "assert";
import { LazyConnection } from "../lib/kit/connection.ts";
import { type Bound, DeadlineError, within } from "../lib/kit/deadline.ts";
import { Subscriber } from "../lib/kit/subscriber.ts";
import {
  eventFromRow,
  quoteName,
  recordFromRow,
  SqlFailure,
} from "../lib/kit/sql.ts";
import type { Lease } from "../lib/kit/types.ts";

const test = (name: string, fn: () => Promise<void> | void) =>
  Deno.test(`kit: ${name}`, fn);

/** A fake connection that counts how it is used. */
interface Fake {
  id: number;
  closed: boolean;
}

function fakeConnections() {
  const made: Fake[] = [];
  const connection = new LazyConnection<Fake>({
    open: () => {
      const fake = { id: made.length + 1, closed: false };
      made.push(fake);
      return fake;
    },
    close: (fake) => (fake.closed = true),
    isOpen: (fake) => !fake.closed,
  });
  return { made, connection };
}

test("a lazy connection opens on first use and is shared", async () => {
  const { made, connection } = fakeConnections();
  assert.equal(made.length, 0);
  const [a, b] = await Promise.all([connection.get(), connection.get()]);
  assert.equal(a, b);
  assert.equal(made.length, 1);
  assert.equal(await connection.get(), a);
});

test("a lazy connection is dropped when an operation outlives its deadline", async () => {
  const { made, connection } = fakeConnections();
  await assert.rejects(
    within(20, async (op: Bound) => {
      await connection.use(op);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }),
    DeadlineError,
  );
  assert.equal(made[0].closed, true);
  const next = await connection.get();
  assert.equal(next.id, 2, "the next operation opens a fresh connection");
  // One that finished in time keeps it.
  await within(1000, (op) => connection.use(op));
  assert.equal(next.closed, false);
});

test("a discarded connection is not reused; a closed one is reopened", async () => {
  const { made, connection } = fakeConnections();
  connection.discard(await connection.get());
  assert.equal((await connection.get()).id, 2);
  made[1].closed = true; // dropped by the server
  assert.equal((await connection.get()).id, 3);
  const detached = connection.detach();
  assert.equal(detached?.closed, false, "detach leaves closing to the caller");
  assert.equal((await connection.get()).id, 4);
});

/** A fake subscriber connection: records its calls, delivers by hand. */
function fakeSubscriber(answered = () => false) {
  const calls: string[] = [];
  let deliver = (_key: string) => {};
  let drop = () => {};
  let failNext: Error | undefined;
  const subscriber = new Subscriber<{ n: number }>({
    open: (onMessage, onClose) => {
      calls.push("open");
      deliver = onMessage;
      drop = () => onClose(new Error("gone"));
      return { n: calls.length };
    },
    subscribe: (_c, topic) => {
      calls.push(`subscribe ${topic}`);
      const error = failNext;
      failNext = undefined;
      return error ? Promise.reject(error) : Promise.resolve();
    },
    unsubscribe: (_c, topic) => {
      calls.push(`unsubscribe ${topic}`);
      return Promise.resolve();
    },
    close: () => void calls.push("close"),
    answered,
    closedError: () => new Error("closed"),
  });
  return {
    calls,
    subscriber,
    deliver: (key: string) => deliver(key),
    drop: () => drop(),
    failNextSubscribe: (error: Error) => (failNext = error),
  };
}

test("a subscriber subscribes a topic once and fans messages out by key", async () => {
  const fake = fakeSubscriber();
  const heard: string[] = [];
  const a = new AbortController();
  const b = new AbortController();
  const watch = (keys: string[], name: string, signal: AbortSignal) =>
    within(
      1000,
      (op) =>
        fake.subscriber.watch(
          { topic: "t", keys },
          () => heard.push(name),
          signal,
          op,
        ),
    );
  await watch(["x"], "a", a.signal);
  await watch(["x", "y"], "b", b.signal);
  assert.deepEqual(fake.calls, ["open", "subscribe t"]);
  fake.deliver("x");
  fake.deliver("y");
  fake.deliver("z");
  assert.deepEqual(heard, ["a", "b", "b"]);
  a.abort();
  assert.deepEqual(fake.calls, ["open", "subscribe t"], "b still listens");
  b.abort();
  assert.deepEqual(fake.calls, ["open", "subscribe t", "unsubscribe t"]);
  fake.deliver("x");
  assert.deepEqual(heard, ["a", "b", "b"]);
  await fake.subscriber.close();
});

test("a subscriber whose connection drops goes quiet; the next watch opens another", async () => {
  const fake = fakeSubscriber();
  const heard: string[] = [];
  const watch = () =>
    within(
      1000,
      (op) =>
        fake.subscriber.watch(
          { topic: "t", keys: ["x"] },
          () => heard.push("x"),
          new AbortController().signal,
          op,
        ),
    );
  await watch();
  fake.drop();
  fake.deliver("x");
  assert.deepEqual(heard, []);
  await watch();
  assert.deepEqual(fake.calls, [
    "open",
    "subscribe t",
    "close",
    "open",
    "subscribe t",
  ]);
  await fake.subscriber.close();
});

test("a failed subscribe drops the connection unless the server answered", async () => {
  const refused = new Error("NOPERM");
  const fake = fakeSubscriber(() => true);
  fake.failNextSubscribe(refused);
  const watch = () =>
    within(1000, (op) =>
      fake.subscriber.watch(
        { topic: "t", keys: ["x"] },
        () => {},
        new AbortController().signal,
        op,
      ));
  await assert.rejects(watch(), (error) => error === refused);
  await watch(); // same connection, subscribed afresh
  assert.deepEqual(fake.calls, ["open", "subscribe t", "subscribe t"]);
  await fake.subscriber.close();

  const broken = fakeSubscriber(() => false);
  broken.failNextSubscribe(new Error("reset"));
  await assert.rejects(
    within(1000, (op) =>
      broken.subscriber.watch(
        { topic: "t", keys: ["x"] },
        () => {},
        new AbortController().signal,
        op,
      )),
    /reset/,
  );
  assert.deepEqual(broken.calls, ["open", "subscribe t", "close"]);
});

test("sql: names are quoted per part, rows decode into records and events", () => {
  assert.equal(quoteName('a"b.c', '"'), '"a""b"."c"');
  assert.equal(quoteName("a`b", "`"), "`a``b`");
  const row = {
    lease: "0123abcd-0123-abcd-0123-0123456789ab",
    principal: "ann",
    host: null,
    reason: "r",
    link: null,
    fence: "7",
    created: new Date(0),
    expires: new Date(1000),
  };
  assert.equal(recordFromRow(row).id, "0123abcd0123abcd01230123456789ab");
  const lease = { resource: "x" } as unknown as Lease;
  const at = new Date(500);
  const base = { ...row, kind: "broken" as const, at, by_host: null };
  const broken = eventFromRow(lease, {
    ...base,
    by_principal: "bob",
    by_reason: "stuck",
  });
  assert.deepEqual(broken.by, { principal: "bob", reason: "stuck" });
  assert.equal(broken.at, at);
  const plain = eventFromRow(lease, {
    ...base,
    by_principal: null,
    by_reason: null,
  });
  assert.equal(plain.by, undefined);
  const failure = new SqlFailure(
    new Error("login p@ss/x failed for p%40ss%2Fx"),
    { where: "db:1/x", table: "t", section: "backend.x" },
    "p@ss/x",
  );
  assert.equal(failure.message, "login *** failed for ***");
});
