import assert from "assert";
import { join } from "node:path";
import {
  AcquireUnknownError,
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  newLeaseId,
  openBackend,
} from "../mod.ts";
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
  sleep,
  uniqueResource,
} from "./helpers.ts";

import { base64Fragments, FaultProxy } from "./faults/proxy.ts";

const url = Deno.env.get("STORMLOCK_TEST_ETCD_URL");
const tlsUrl = Deno.env.get("STORMLOCK_TEST_ETCD_TLS_URL");
const tlsDir = Deno.env.get("STORMLOCK_TEST_ETCD_TLS_DIR");
const tlsUser = Deno.env.get("STORMLOCK_TEST_ETCD_USER");
const tlsPassword = Deno.env.get("STORMLOCK_TEST_ETCD_PASSWORD");
if (!url || !tlsUrl || !tlsDir || !tlsUser || !tlsPassword) {
  throw new Error(
    "set STORMLOCK_TEST_ETCD_URL, STORMLOCK_TEST_ETCD_TLS_URL, STORMLOCK_TEST_ETCD_TLS_DIR, STORMLOCK_TEST_ETCD_USER and STORMLOCK_TEST_ETCD_PASSWORD or run scripts/test.sh",
  );
}
const hosts = url;
const tlsHost = new URL(tlsUrl).host;

const context = { name: "etcd", section: "backend.etcd" };
const open = (options: BackendOptions): Promise<Backend> =>
  openBackend(options, context);

/** Options for the secure server: TLS, a client certificate and a password. */
const secure = (extra: BackendOptions = {}): BackendOptions => ({
  hosts: tlsUrl,
  ca_cert: join(tlsDir, "ca.crt"),
  cert_cert: join(tlsDir, "client.crt"),
  cert_key: join(tlsDir, "client.key"),
  user: tlsUser,
  password: tlsPassword,
  ...extra,
});

testBackendContract(
  "etcd",
  (extra) => open({ hosts, timeout: "3s", ...extra }),
  {
    secrets: {
      options: ["password"],
      openWith: (secret) => open(secure({ password: secret })),
      refusal: new RegExp(`user "${tlsUser}"`),
    },
    raw: {
      // Exactly what 0.1 wrote: JSON on an etcd lease, no host, reason,
      // link or fence.
      writeV01: async (lease) => {
        const { ID } = await gateway<{ ID: string }>("/v3/lease/grant", {
          TTL: 60,
        });
        await gateway("/v3/kv/put", {
          key: b64(`/stormlock/${lease.resource}`),
          value: b64(JSON.stringify({
            id: lease.id,
            principal: lease.principal,
            created: lease.created.getTime(),
            expires: lease.expires.getTime(),
          })),
          lease: ID,
        });
      },
    },
  },
);

testUnavailableContract(
  "etcd",
  (host, port) =>
    open({
      host,
      port: String(port),
      user: "ann",
      password: tlsPassword,
      timeout: "500ms",
    }),
  { secret: tlsPassword, silent: /did not answer within 500ms/ },
);

/** Asserts `promise` fails cleanly: unavailable, and the password unshown. */
function assertUnavailable(
  promise: Promise<unknown>,
  ...mentions: (string | RegExp)[]
): Promise<BackendUnavailableError> {
  return rejectsCleanly(promise, BackendUnavailableError, {
    mentions,
    secrets: [tlsPassword!],
  });
}

// Raw access to the plain server's JSON gateway, as another client would.

const b64 = (text: string) =>
  btoa(String.fromCharCode(...new TextEncoder().encode(text)));
/** Base64 of `text` with `\xff` escapes as raw bytes (not UTF-8). */
const rawB64 = (text: string) =>
  btoa(
    text.split("\xff").map((part) =>
      String.fromCharCode(...new TextEncoder().encode(part))
    ).join("\xff"),
  );

/** Calls the plain server's gateway; fails on an error reply. */
async function gateway<T = Record<string, unknown>>(
  path: string,
  body: unknown,
): Promise<T> {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
  });
  const reply = await response.json();
  assert.ok(response.ok, JSON.stringify(reply));
  return reply as T;
}

interface RawKv {
  create_revision: string;
  mod_revision: string;
  lease?: string;
  value?: string;
}

async function rawKey(key: string): Promise<RawKv | undefined> {
  const reply = await gateway<{ kvs?: RawKv[] }>("/v3/kv/range", {
    key: b64(key),
  });
  return reply.kvs?.[0];
}

async function grantedTtl(leaseNo: string): Promise<number> {
  const reply = await gateway<{ grantedTTL: string }>(
    "/v3/lease/timetolive",
    { ID: leaseNo },
  );
  return Number(reply.grantedTTL);
}

async function leaseIds(): Promise<string[]> {
  const reply = await gateway<{ leases?: { ID: string }[] }>(
    "/v3/lease/leases",
    {},
  );
  return (reply.leases ?? []).map(({ ID }) => ID);
}

/**
 * Runs `body` with etcd's write transactions (those with a compare)
 * intercepted: `around` gets the real call and answers in its place.
 * `times` bounds how many are intercepted.
 */
async function interceptWrites(
  around: (send: () => Promise<Response>, signal?: AbortSignal) => Promise<
    Response
  >,
  body: () => Promise<void>,
  times = 1,
): Promise<number> {
  const real = globalThis.fetch;
  let seen = 0;
  globalThis.fetch = (input, init) => {
    const isWrite = String(input).endsWith("/v3/kv/txn") &&
      String(init?.body).includes('"compare"');
    if (!isWrite || seen >= times) return real(input, init);
    seen++;
    return around(() => real(input, init), init?.signal ?? undefined);
  };
  try {
    await body();
  } finally {
    globalThis.fetch = real;
  }
  return seen;
}

/** A lost answer: the request reached etcd, the reply did not come back. */
async function lose(send: () => Promise<Response>): Promise<Response> {
  const reply = await send();
  const text = await reply.text();
  assert.match(text, /"succeeded":true/, "the write landed");
  throw new TypeError("fetch failed: connection reset");
}

const test = backendTest("etcd");

test("a dead host in hosts is skipped for a live one", async () => {
  const backend = await open({
    hosts: `127.0.0.1:${closedPort()}, ${hosts}`,
  });
  try {
    for (let i = 0; i < 5; i++) {
      assert.equal(await backend.current(uniqueResource()), null);
    }
  } finally {
    await backend.close();
  }
});

test("with the first member down and the second up, every command succeeds within the timeout", async () => {
  const backend = await open({
    hosts: `127.0.0.1:${closedPort()}, ${hosts}`,
    timeout: "1s",
  });
  const timed = async <T>(what: string, call: () => Promise<T>) => {
    const start = Date.now();
    const result = await call();
    const took = Date.now() - start;
    assert.ok(took < 1000, `${what} took ${took} ms`);
    return result;
  };
  try {
    const prefix = `${uniqueResource("failover")}/`;
    const resource = `${prefix}a`;
    const lease = await timed(
      "acquire",
      () => backend.acquire(resource, "ann@host", 60, { reason: "x" }),
    );
    await timed(
      "a refused acquire",
      () =>
        assert.rejects(
          backend.acquire(resource, "bob@host", 60),
          LockHeldError,
        ),
    );
    assert.equal(
      (await timed("current", () => backend.current(resource)))?.id,
      lease.id,
    );
    assert.equal(
      await timed("isHeld", () => backend.isHeld(resource, lease.id)),
      true,
    );
    const renewed = await timed(
      "renew",
      () => backend.renew(resource, lease.id, 120, { reason: "y" }),
    );
    assert.equal(renewed.fence, lease.fence);
    assert.deepEqual(
      (await timed("list", () => backend.list(prefix))).map((l) => l.id),
      [lease.id],
    );
    await timed("release", () => backend.release(resource, lease.id));
    const again = await timed(
      "acquire",
      () => backend.acquire(resource, "cy@host", 60),
    );
    await timed("break", () =>
      backend.breakLease(resource, again.id, {
        principal: "ops",
        reason: "test",
      }));
    assert.deepEqual(
      (await timed("history", () => backend.history(resource))).map((e) =>
        e.kind
      ),
      ["broken", "acquired", "released", "reason-changed", "acquired"],
    );
  } finally {
    await backend.close();
  }
});

/** Polls until `check()` holds, then asserts it (no time bound asserted). */
async function eventually(what: string, check: () => boolean): Promise<void> {
  for (let tries = 0; tries < 1000 && !check(); tries++) await sleep(20);
  assert.ok(check(), what);
}

test("watch() wakes on expiry: etcd deletes the key when its lease runs out", async () => {
  const backend = await open({ hosts, timeout: "3s" });
  const stop = new AbortController();
  try {
    const resource = uniqueResource("watch-expiry");
    await backend.acquire(resource, "ann@host", 1);
    let changes = 0;
    await backend.watch(resource, () => changes++, stop.signal);
    assert.equal(changes, 0, "no event before one happens");
    await eventually("the expiry was announced", () => changes >= 1);
    assert.equal(await backend.current(resource), null);
  } finally {
    stop.abort();
    await backend.close();
  }
});

test("watch() over TLS with a password announces a release, and close() ends it", async () => {
  const backend = await open(secure());
  const other = await open(secure());
  // Never aborted: close() must end the stream (the sanitizers check).
  const never = new AbortController();
  try {
    const resource = uniqueResource("watch-tls");
    let changes = 0;
    await backend.watch(resource, () => changes++, never.signal);
    const lease = await other.acquire(resource, "ann@host", 60);
    await other.release(resource, lease.id);
    await eventually("acquire and release announced", () => changes >= 2);
  } finally {
    await other.close();
    await backend.close();
  }
});

test("watch() on keys the user may not read is refused as unavailable, naming the prefix", async () => {
  const backend = await open(secure({ prefix: "/elsewhere/" }));
  const stop = new AbortController();
  try {
    await rejectsCleanly(
      backend.watch(uniqueResource(), () => {}, stop.signal),
      BackendUnavailableError,
      { mentions: ["denied", "/elsewhere/"], secrets: [tlsPassword] },
    );
  } finally {
    stop.abort();
    await backend.close();
  }
});

/**
 * A fake member whose watch streams send `lines` (JSON-lines results)
 * and then end, or stay open while `hold` is set.
 */
function watchMember(lines: unknown[], hold = false) {
  const bodies: Record<string, unknown>[] = [];
  const encoder = new TextEncoder();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      bodies.push(await request.json());
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (const line of lines) {
            controller.enqueue(encoder.encode(JSON.stringify(line) + "\n"));
          }
          if (!hold) controller.close();
        },
      });
      return new Response(body, {
        headers: { "content-type": "application/json" },
      });
    },
  );
  return Object.assign(server, { bodies });
}

test("watch() reconnects once on the next member after the stream ends, from the next revision", async () => {
  const created = (revision: string) => ({
    result: { header: { revision }, created: true },
  });
  const event = (revision: string, type?: string) => ({
    result: {
      header: { revision },
      events: [{ ...(type ? { type } : {}), kv: { mod_revision: revision } }],
    },
  });
  // The first member ends its stream after one event; the second sends
  // one more and ends too: the watch then stops, leaving waiters to poll.
  await using first = watchMember([created("10"), event("11")]);
  await using second = watchMember([created("11"), event("12", "DELETE")]);
  const backend = await open({
    hosts: `127.0.0.1:${first.addr.port}, 127.0.0.1:${second.addr.port}`,
    timeout: "2s",
  });
  const stop = new AbortController();
  try {
    const resource = uniqueResource("watch-reconnect");
    let changes = 0;
    await backend.watch(resource, () => changes++, stop.signal);
    // One stream for the lease key and one for the shadow, which every
    // change to a further holder (slots, shared holds) writes.
    await eventually("both events announced", () => changes >= 4);
    const key = b64(`/stormlock/${resource}`);
    const shadow = rawB64(`/stormlock/\xfflast/${resource}`);
    const byKey = (a: Record<string, unknown>, b: Record<string, unknown>) =>
      JSON.stringify(a) < JSON.stringify(b) ? -1 : 1;
    assert.deepEqual(
      first.bodies.sort(byKey),
      [{ create_request: { key } }, { create_request: { key: shadow } }]
        .sort(byKey),
    );
    assert.deepEqual(
      second.bodies.sort(byKey),
      [
        { create_request: { key, start_revision: "12" } },
        { create_request: { key: shadow, start_revision: "12" } },
      ].sort(byKey),
    );
    assert.equal(changes, 4);
  } finally {
    stop.abort();
    await backend.close();
  }
});

test("watch() stopped by its signal leaves no stream open, and a stopped watch starts nothing", async () => {
  await using member = watchMember([
    { result: { header: { revision: "5" }, created: true } },
  ], true);
  const backend = await open({
    hosts: `127.0.0.1:${member.addr.port}`,
    timeout: "2s",
  });
  try {
    const stop = new AbortController();
    await backend.watch(uniqueResource(), () => {}, stop.signal);
    stop.abort();
    await backend.watch(uniqueResource(), () => {}, stop.signal);
    // Two streams (the lease key and the shadow) for the first watch only.
    assert.equal(member.bodies.length, 2, "the stopped watch sent nothing");
  } finally {
    await backend.close();
  }
});

/** A fake member that answers every request with etcd's "no leader". */
function leaderlessMember(): Deno.HttpServer<Deno.NetAddr> & {
  hits: () => number;
} {
  let hits = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      await request.text();
      hits++;
      return Response.json({
        error: "etcdserver: no leader",
        message: "etcdserver: no leader",
        code: 14,
      }, { status: 503 });
    },
  );
  return Object.assign(server, { hits: () => hits });
}

test("a member that answers 'no leader' is skipped for one that has a leader", async () => {
  await using member = leaderlessMember();
  const backend = await open({
    hosts: `127.0.0.1:${member.addr.port}, ${hosts}`,
    timeout: "2s",
  });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    assert.equal((await backend.current(resource))?.id, lease.id);
    await backend.release(resource, lease.id);
    assert.ok(member.hits() >= 1, "the leaderless member was asked first");
  } finally {
    await backend.close();
  }
});

test("a cluster without a leader until the deadline gives BackendUnavailableError saying so", async () => {
  await using member = leaderlessMember();
  const backend = await open({
    hosts: `127.0.0.1:${member.addr.port}`,
    timeout: "1s",
  });
  try {
    const start = Date.now();
    await assertUnavailable(
      backend.current(uniqueResource()),
      `127.0.0.1:${member.addr.port}`,
      "no leader",
    );
    assert.ok(Date.now() - start < 1500, "bounded by the timeout");
    assert.ok(member.hits() > 1, "retried while time was left");
  } finally {
    await backend.close();
  }
});

test("a port that fetch refuses outright is a ConfigError naming it", async () => {
  const backend = await open({ host: "127.0.0.1", port: "1" });
  try {
    await rejectsCleanly(backend.current(uniqueResource()), ConfigError, {
      mentions: ["127.0.0.1:1", "port 1", "[backend.etcd]"],
    });
  } finally {
    await backend.close();
  }
});

test("a lost race leaves no etcd lease behind", async () => {
  const [a, b] = await Promise.all([open({ hosts }), open({ hosts })]);
  try {
    const resource = uniqueResource();
    const lease = await a.acquire(resource, "ann@host", 60);
    const before = new Set(await leaseIds());
    for (let i = 0; i < 3; i++) {
      await assert.rejects(b.acquire(resource, "bob@host", 60), LockHeldError);
    }
    const added = (await leaseIds()).filter((id) => !before.has(id));
    assert.deepEqual(added, [], "the losers' leases were revoked");
    await a.release(resource, lease.id);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("an acquire whose answer is lost finds it landed and returns the lease", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    let lease;
    const seen = await interceptWrites(lose, async () => {
      lease = await backend.acquire(resource, "ann@host", 60);
    });
    assert.equal(seen, 1);
    assert.equal((await backend.current(resource))?.id, lease!.id);
    const events = await backend.history(resource);
    assert.deepEqual(events.map((event) => event.kind), ["acquired"]);
    await backend.release(resource, lease!.id);
  } finally {
    await backend.close();
  }
});

test("a renew whose answer is lost once finds it landed, on the new etcd lease", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    const before = new Set(await leaseIds());
    await interceptWrites(lose, async () => {
      const renewed = await backend.renew(resource, lease.id, 120);
      assert.equal(renewed.id, lease.id);
      assert.equal(renewed.fence, lease.fence);
    });
    const kv = await rawKey(`/stormlock/${resource}`);
    assert.equal(await grantedTtl(kv!.lease!), 120, "on the renew's lease");
    const added = (await leaseIds()).filter((id) => !before.has(id));
    assert.deepEqual(added, [kv!.lease], "the old etcd lease was revoked");
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("a renew whose answer is lost until the deadline fails, and keeps the lock on the new etcd lease", async () => {
  const backend = await open({ hosts, timeout: "1s" });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    // Every attempt lands, then its answer never comes.
    await interceptWrites(async (send, signal) => {
      const reply = await send();
      await reply.text();
      return await new Promise<Response>((_, reject) =>
        signal?.addEventListener("abort", () => reject(signal.reason))
      );
    }, async () => {
      await assertUnavailable(
        backend.renew(resource, lease.id, 120),
        /did not answer within 1s/,
      );
    }, Infinity);
    assert.equal(await backend.isHeld(resource, lease.id), true);
    const kv = await rawKey(`/stormlock/${resource}`);
    assert.equal(
      await grantedTtl(kv!.lease!),
      120,
      "the key is on the renew's etcd lease",
    );
    const renewed = await backend.renew(resource, lease.id, 60);
    assert.equal(renewed.id, lease.id);
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("a renew that loses the compare-and-swap revokes its new etcd lease", async () => {
  const backend = await open({ hosts });
  let closed = false;
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    const before = new Set(await leaseIds());
    // The key changes between the renew's read and its compare-and-swap.
    await interceptWrites(async (send) => {
      await gateway("/v3/kv/deleterange", {
        key: b64(`/stormlock/${resource}`),
      });
      return await send();
    }, async () => {
      await assert.rejects(
        backend.renew(resource, lease.id, 120),
        LeaseNotHeldError,
      );
    });
    // The revoke runs in the background; close() awaits it.
    await backend.close();
    closed = true;
    const added = (await leaseIds()).filter((id) => !before.has(id));
    assert.deepEqual(added, [], "the renew's etcd lease was revoked");
  } finally {
    if (!closed) await backend.close();
  }
});

test("a release whose answer is lost succeeds once; a second release fails", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    await interceptWrites(lose, () => backend.release(resource, lease.id));
    assert.equal(await backend.current(resource), null);
    await assert.rejects(
      backend.release(resource, lease.id),
      LeaseNotHeldError,
    );
    assert.deepEqual(
      (await backend.history(resource)).map((event) => event.kind),
      ["released", "acquired"],
    );
  } finally {
    await backend.close();
  }
});

test("a TTL below etcd's minimum reports the TTL etcd granted", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 1);
    const kv = await rawKey(`/stormlock/${resource}`);
    assert.equal(
      lease.expires.getTime() - lease.created.getTime(),
      (await grantedTtl(kv!.lease!)) * 1000,
    );
  } finally {
    await backend.close();
  }
});

test("the fence is the lease key's create_revision", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    const kv = await rawKey(`/stormlock/${resource}`);
    assert.equal(lease.fence, Number(kv!.create_revision));
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("list() pages through thousands of locks", async () => {
  const backend = await open({ hosts, timeout: "10s" });
  try {
    const prefix = `${uniqueResource("many")}/`;
    const { ID } = await gateway<{ ID: string }>("/v3/lease/grant", {
      TTL: 60,
    });
    const now = Date.now();
    const count = 1200;
    const names = Array.from(
      { length: count },
      (_, i) => `${prefix}${String(i).padStart(5, "0")}`,
    );
    for (let i = 0; i < count; i += 100) {
      await gateway("/v3/kv/txn", {
        success: names.slice(i, i + 100).map((name) => ({
          request_put: {
            key: b64(`/stormlock/${name}`),
            value: b64(JSON.stringify({
              id: newLeaseId(),
              principal: "bulk",
              created: now,
              expires: now + 60e3,
            })),
            lease: ID,
          },
        })),
      });
    }
    const listed = await backend.list(prefix);
    assert.deepEqual(listed.map((lease) => lease.resource), names);
    await gateway("/v3/lease/revoke", { ID });
  } finally {
    await backend.close();
  }
});

test("names that look like history or shadow keys stay plain resources", async () => {
  const backend = await open({ hosts });
  try {
    const base = uniqueResource();
    // U+00FF is two bytes in UTF-8, never the 0xFF byte the layout uses.
    const names = [base, `\u00fflast/${base}`, `\u00ffhistory/${base}`];
    const leases = [];
    for (const name of names) {
      leases.push(await backend.acquire(name, "ann@host", 60));
    }
    for (const [i, name] of names.entries()) {
      assert.equal((await backend.current(name))?.id, leases[i].id);
      assert.deepEqual(
        (await backend.history(name)).map((event) => event.id),
        [leases[i].id],
      );
    }
    const all = await backend.list();
    for (const lease of leases) {
      assert.ok(all.some((listed) => listed.id === lease.id));
    }
    for (const [i, name] of names.entries()) {
      await backend.release(name, leases[i].id);
    }
  } finally {
    await backend.close();
  }
});

test("TLS with a client certificate and a password works", async () => {
  const backend = await open(secure());
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    assert.equal((await backend.current(resource))?.id, lease.id);
    const renewed = await backend.renew(resource, lease.id, 120);
    assert.ok(renewed.expires > lease.expires);
    assert.deepEqual(
      (await backend.history(resource)).map((event) => event.kind),
      ["renewed", "acquired"],
    );
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("TLS to an IP address in the server's certificate works", async () => {
  const port = new URL(tlsUrl).port;
  const backend = await open(secure({ hosts: `https://127.0.0.1:${port}` }));
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("an auth token the server no longer knows is replaced", async () => {
  const backend = await open(secure());
  const real = globalThis.fetch;
  let signIns = 0;
  let refused = 0;
  globalThis.fetch = (input, init) => {
    const path = new URL(String(input)).pathname;
    if (path === "/v3/auth/authenticate") signIns++;
    else if (signIns === 1 && refused === 0) {
      refused++;
      return Promise.resolve(Response.json({
        error: "etcdserver: invalid auth token",
        message: "etcdserver: invalid auth token",
        code: 16,
      }, { status: 401 }));
    }
    return real(input, init);
  };
  try {
    assert.equal(await backend.current(uniqueResource()), null);
    assert.equal(refused, 1);
    assert.equal(signIns, 2, "signed in again after the refusal");
  } finally {
    globalThis.fetch = real;
    await backend.close();
  }
});

test("keys outside the user's permitted prefix give a clear error", async () => {
  const backend = await open(secure({ prefix: "/elsewhere/" }));
  try {
    await assertUnavailable(
      backend.acquire(uniqueResource(), "ann@host", 60),
      "/elsewhere/",
      "readwrite",
    );
  } finally {
    await backend.close();
  }
});

test("a missing client certificate fails the TLS handshake cleanly", async () => {
  const backend = await open(
    secure({ cert_cert: "", cert_key: "" }),
  );
  try {
    await assertUnavailable(backend.current(uniqueResource()), tlsHost);
  } finally {
    await backend.close();
  }
});

test("a client certificate with a CommonName gets a ConfigError saying to drop the CN", async () => {
  // etcd's JSON gateway refuses these once authentication is on.
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-etcd-cn-" });
  const openssl = async (...args: string[]) => {
    const output = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
  };
  await openssl(
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "cn.key",
    "-out",
    "cn.csr",
    "-subj",
    `/CN=${tlsUser}`,
  );
  Deno.writeTextFileSync(
    join(dir, "cn.ext"),
    "extendedKeyUsage=clientAuth\n",
  );
  await openssl(
    "x509",
    "-req",
    "-in",
    "cn.csr",
    "-CA",
    join(tlsDir, "ca.crt"),
    "-CAkey",
    join(tlsDir, "ca.key"),
    "-set_serial",
    "4242",
    "-out",
    "cn.crt",
    "-days",
    "1",
    "-extfile",
    "cn.ext",
  );
  const backend = await open(secure({
    cert_cert: join(dir, "cn.crt"),
    cert_key: join(dir, "cn.key"),
  }));
  try {
    await rejectsCleanly(backend.current(uniqueResource()), ConfigError, {
      mentions: [tlsHost, "CommonName", "without a CN"],
      secrets: [tlsPassword],
    });
  } finally {
    await backend.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

test("certificate paths resolve against the config file's folder", async () => {
  const backend = await openBackend(
    secure({
      ca_cert: "ca.crt",
      cert_cert: "client.crt",
      cert_key: "client.key",
    }),
    {
      ...context,
      configPath: join(tlsDir, "stormlock.cfg"),
      configDir: tlsDir,
    },
  );
  try {
    assert.equal(await backend.current(uniqueResource()), null);
  } finally {
    await backend.close();
  }
});

test("bad options are ConfigErrors that never echo a password", async () => {
  const bad: BackendOptions[] = [
    { port: "70000" },
    { port: "0" },
    { hosts: "a:1", host: "b" },
    { hosts: "ftp://a:1" },
    { hosts: "http://root:s3cret@a:2379" },
    { hosts: "http://a:1, https://b:2" },
    { hosts: "http://a:1", ca_cert: join(tlsDir, "ca.crt") },
    { hosts: " , " },
    { user: "root" },
    { password: "s3cret" },
    { cert_cert: join(tlsDir, "client.crt") },
    { ca_cert: "/nonexistent/ca.crt" },
    { ca_cert: join(tlsDir, "client.csr.missing") },
    { timeout: "soon" },
    { host: "http://a" },
    { history: "0" },
  ];
  for (const options of bad) {
    await rejectsCleanly(open(options), ConfigError, { secrets: ["s3cret"] });
  }
});

test("the CLI acquires, refuses, releases, and reports a dead server in one line", async () => {
  using home = new CliHome();
  const config = (section: string) =>
    home.write(
      ".stormlock.cfg",
      `[default]\nbackend = etcd\n\n[backend.etcd]\n${section}`,
    );
  config(`hosts = ${hosts}\ntimeout = 2s\n`);
  const resource = uniqueResource("cli");
  await assertCliLockCycle(home, resource);

  config(
    `host = 127.0.0.1\nport = ${closedPort()}\nuser = ann\npassword = ${tlsPassword}\ntimeout = 1s\n`,
  );
  const dead = await home.run(["acquire", resource]);
  assertCleanExit(dead, 69, /etcd at 127\.0\.0\.1:\d+ /, [tlsPassword]);
});

test("the CLI over TLS with a password never prints the password", async () => {
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = etcd\n\n[backend.etcd]\nhosts = ${tlsUrl}\nca_cert = ${
      join(tlsDir, "ca.crt")
    }\ncert_cert = ${join(tlsDir, "client.crt")}\ncert_key = ${
      join(tlsDir, "client.key")
    }\nuser = ${tlsUser}\npassword = ${tlsPassword}-wrong\n`,
  );
  const result = await home.run(["acquire", uniqueResource("cli")]);
  assertCleanExit(result, 69, new RegExp(`etcd at ${tlsHost}`), [tlsPassword]);
});

test("an acquire whose commit landed but whose answer was lost is never revoked off the record", async () => {
  // The proxy passes the commit on and loses every answer after it: the
  // lock is taken, and the acquire can't know.
  using proxy = new FaultProxy(Number(new URL(hosts).port));
  const reason = `lost${crypto.randomUUID().replaceAll("-", "")}`;
  proxy.armOnce([reason, ...base64Fragments(reason)], () => {});
  const resource = uniqueResource("lost");
  const viaProxy = await open({
    hosts: `http://127.0.0.1:${proxy.port}`,
    timeout: "1s",
  });
  let unknownId: string | undefined;
  try {
    await viaProxy.acquire(resource, "ann@host", 600, { reason });
    assert.fail("the acquire's answer was lost, so it can't succeed");
  } catch (error) {
    if (error instanceof AcquireUnknownError) unknownId = error.leaseId;
    else assert.ok(error instanceof BackendUnavailableError, String(error));
  } finally {
    proxy.disarm();
    await viaProxy.close(); // Waits for its clean-up to finish.
    proxy.heal();
  }
  const direct = await open({ hosts, timeout: "3s" });
  try {
    const [acquired] = (await direct.history(resource, 10))
      .filter((event) => event.kind === "acquired");
    assert.ok(acquired, "the commit reached etcd");
    const ended = (await direct.history(resource, 10)).find((event) =>
      event.id === acquired.id && event.kind !== "acquired"
    );
    const holder = await direct.current(resource);
    // Either the lease is still held (and its id was handed out), or its
    // end is on the record: nothing else may end it.
    assert.ok(
      holder?.id === acquired.id || ended,
      `lease ${acquired.id} vanished with no release, break or expiry recorded (holder: ${holder?.id})`,
    );
    if (holder) {
      assert.equal(unknownId, holder.id, "the caller was given the lease id");
      await direct.release(resource, holder.id);
    }
  } finally {
    await direct.close();
  }
});

test("slots: the first holder keeps the lock's own key; further ones sit beside it, and the oldest moves in, fence and TTL kept, when it ends", async () => {
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource("slots");
    const one = await backend.acquire(resource, "ann@host", 60, { limit: 3 });
    const two = await backend.acquire(resource, "bob@host", 60, { limit: 3 });
    const three = await backend.acquire(resource, "cy@host", 60, { limit: 3 });
    const own = await rawKey(`/stormlock/${resource}`);
    const value = (kv?: RawKv) =>
      JSON.parse(new TextDecoder().decode(
        Uint8Array.from(atob(kv?.value ?? ""), (c) => c.charCodeAt(0)),
      ));
    assert.equal(value(own).id, one.id);
    assert.equal(value(own).limit, 3);
    // Older versions listing the prefix see only the lock's own key.
    const listed = await gateway<{ kvs?: RawKv[] }>("/v3/kv/range", {
      key: b64(`/stormlock/${resource}`),
      range_end: b64(`/stormlock/${resource}\x7f`),
    });
    assert.equal(listed.kvs?.length, 1);
    const beside = await gateway<{ kvs?: RawKv[] }>("/v3/kv/range", {
      key: rawB64(`/stormlock/\xffholder/${resource}\xfe`),
      range_end: rawB64(`/stormlock/\xffholder/${resource}\xff`),
    });
    assert.deepEqual(
      beside.kvs?.map((kv) => value(kv).id).sort(),
      [two.id, three.id].sort(),
    );
    await backend.release(resource, one.id);
    const moved = await rawKey(`/stormlock/${resource}`);
    assert.equal(value(moved).id, two.id);
    assert.equal(value(moved).fence, two.fence);
    assert.equal(
      moved?.lease,
      beside.kvs?.find((kv) => value(kv).id === two.id)?.lease,
    );
    const holders = await backend.holders!(resource);
    assert.deepEqual(holders.map((lease) => [lease.id, lease.fence]), [
      [two.id, two.fence],
      [three.id, three.fence],
    ]);
    const renewed = await backend.renew(resource, two.id, 120);
    assert.equal(renewed.fence, two.fence);
    await backend.release(resource, two.id);
    await backend.release(resource, three.id);
    assert.equal(await rawKey(`/stormlock/${resource}`), undefined);
    const kinds = (await backend.history(resource, 10)).map((event) =>
      `${event.kind} ${event.fence}`
    );
    assert.deepEqual(kinds.slice(0, 3), [
      `released ${three.fence}`,
      `released ${two.fence}`,
      `renewed ${two.fence}`,
    ]);
  } finally {
    await backend.close();
  }
});
