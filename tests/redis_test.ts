import assert from "assert";
import { Redis } from "ioredis";
import {
  BackendUnavailableError,
  ConfigError,
  LockHeldError,
  openBackend,
  UsageError,
} from "../mod.ts";
import type { Backend, BackendOptions, Lease } from "../mod.ts";
import { waiterPrefix, WaitTicket } from "../lib/composition/queue.ts";
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
  replyingServer,
  silentServer,
  sleep,
  uniqueResource,
} from "./helpers.ts";

function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) {
    throw new Error(`set ${name} or run scripts/test.sh`);
  }
  return value;
}

/** Default user with a password (requirepass). */
const url = required("STORMLOCK_TEST_REDIS_URL");
/** A least-privilege ACL user, limited to `stormlock:*` keys. */
const aclUrl = required("STORMLOCK_TEST_REDIS_ACL_URL");
/** The TLS port, signed by the CA in STORMLOCK_TEST_REDIS_CA. */
const tlsUrl = required("STORMLOCK_TEST_REDIS_TLS_URL");
const caFile = required("STORMLOCK_TEST_REDIS_CA");
const password = decodeURIComponent(new URL(url).password);

const context = { name: "redis", section: "backend.redis" };
const open = (options: BackendOptions): Promise<Backend> =>
  openBackend(options, context);

testBackendContract("redis", (extra) => open({ url, ...extra }), {
  secrets: {
    options: ["url"],
    openWith: (secret) => {
      const wrong = new URL(aclUrl);
      wrong.password = secret;
      return open({ url: wrong.href });
    },
    refusal: /127\.0\.0\.1:\d+ refused the credentials/,
  },
  raw: {
    // Exactly what 0.1's acquire script wrote, at the default prefix.
    writeV01: (lease) =>
      withInspector(async (raw) => {
        const key = `stormlock:${lease.resource}`;
        await raw.hset(key, {
          id: lease.id,
          principal: lease.principal,
          created: String(lease.created.getTime()),
          expires: String(lease.expires.getTime()),
        });
        await raw.pexpireat(key, lease.expires.getTime());
      }),
    foreign: Object.fromEntries(
      Object.entries(foreignKeys()).map(([kind, write]) => [
        kind,
        async (resource: string) => {
          const key = `stormlock:${resource}`;
          await withInspector((raw) => write(raw, key));
          // Left alone: the same value, no expiry, no fence, history or index.
          return () =>
            withInspector(async (raw) => {
              const side = sideKeys("stormlock:", resource);
              return {
                value: await dump(raw, key),
                ttl: await raw.pttl(key),
                side: await raw.exists(side.state, side.history),
                indexed: await raw.zscore(side.index, resource),
              };
            });
        },
      ]),
    ),
    foreignMentions: [
      /^Redis at 127\.0\.0\.1:\d+: /,
      "point [backend.redis] at a prefix",
    ],
  },
});
testUnavailableContract(
  "redis",
  (host, port) =>
    open({ url: `redis://ann:${password}@${host}:${port}`, timeout: "500ms" }),
  { secret: password, silent: /did not answer within 500ms/ },
);

/** A raw client, to look at what the backend stored. */
function inspector(db = 0): Redis {
  const { hostname, port } = new URL(url);
  return new Redis({ host: hostname, port: Number(port), password, db });
}

/** Runs `body` with a raw client of its own, then disconnects it. */
async function withInspector<T>(body: (raw: Redis) => Promise<T>): Promise<T> {
  const raw = inspector();
  try {
    return await body(raw);
  } finally {
    raw.disconnect();
  }
}

/** A redis-server of its own, with no password; stopped on dispose. */
async function passwordlessServer() {
  const port = closedPort();
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-redis-" });
  const child = new Deno.Command("redis-server", {
    args: ["--bind", "127.0.0.1", "--port", String(port), "--dir", dir]
      .concat(["--save", "", "--appendonly", "no"]),
    stdout: "null",
    stderr: "null",
  }).spawn();
  const server = {
    port,
    async [Symbol.asyncDispose]() {
      child.kill("SIGTERM");
      await child.status;
      Deno.removeSync(dir, { recursive: true });
    },
  };
  for (let attempt = 0;; attempt++) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return server;
    } catch (error) {
      if (attempt === 100) {
        await server[Symbol.asyncDispose]();
        throw error;
      }
      await sleep(50);
    }
  }
}

const test = backendTest("redis");

/** The keys the backend keeps beside each lease, for `prefix`. */
function sideKeys(prefix: string, resource: string) {
  return {
    state: `${prefix}\0state\0${resource}`,
    history: `${prefix}\0history\0${resource}`,
    index: `${prefix}\0index`,
  };
}

test("a lease is a hash at prefix + resource that expires on the server's clock", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  try {
    const resource = "a resource";
    const lease = await backend.acquire(resource, "ann@host", 60, {
      reason: "deploy",
    });
    const key = prefix + resource;
    const side = sideKeys(prefix, resource);
    const [seconds, micros] = await raw.time();
    const serverNow = Number(seconds) * 1000 +
      Math.floor(Number(micros) / 1000);
    assert.ok(Math.abs(lease.created.getTime() - serverNow) < 1000);
    // Stormlock 0.1's four fields, read by 0.1 clients, plus the new ones.
    assert.deepEqual(await raw.hgetall(key), {
      id: lease.id,
      principal: "ann@host",
      created: String(lease.created.getTime()),
      expires: String(lease.expires.getTime()),
      fence: String(lease.fence),
      reason: "deploy",
    });
    assert.equal(await raw.pexpiretime(key), lease.expires.getTime());
    assert.equal(await raw.hget(side.state, "last"), String(lease.fence));
    assert.equal(await raw.pttl(side.state), -1, "the fence never expires");
    assert.equal(
      await raw.zscore(side.index, resource),
      String(lease.expires.getTime()),
    );
    const renewed = await backend.renew(resource, lease.id, 5);
    assert.equal(await raw.pexpiretime(key), renewed.expires.getTime());
    assert.ok(await raw.pttl(key) <= 5000);
    assert.equal(
      await raw.zscore(side.index, resource),
      String(renewed.expires.getTime()),
    );
    await backend.release(resource, lease.id);
    assert.equal(await raw.exists(key), 0);
    assert.equal(await raw.zscore(side.index, resource), null);
    assert.equal(await raw.hget(side.state, "last"), String(lease.fence));
    const events = await raw.lrange(side.history, 0, -1);
    assert.deepEqual(
      events.map((event) => JSON.parse(event).kind),
      ["released", "renewed", "acquired"],
    );
    const ttl = await raw.pttl(side.history);
    assert.ok(ttl > 29 * 86400_000 && ttl <= 30 * 86400_000, `${ttl} ms`);
  } finally {
    raw.disconnect();
    await backend.close();
  }
});

/**
 * Keys Stormlock did not write, by resource name: each is written raw, and
 * every operation must call it not a lease and leave it alone.
 */
function foreignKeys(): Record<
  string,
  (raw: Redis, key: string) => Promise<unknown>
> {
  return {
    string: (raw, key) => raw.set(key, "not a lease"),
    "hash without id": (raw, key) => raw.hset(key, "owner", "someone else"),
    // The original Python tool's layout, as read with an empty prefix.
    "hash with text times": (raw, key) =>
      raw.hset(key, {
        id: "0123456789abcdef0123456789abcdef",
        principal: "ann@host",
        created: "2025-01-01T00:00:00+00:00",
        expires: "2025-01-01T01:00:00+00:00",
      }),
    "hash without expires": (raw, key) =>
      raw.hset(key, {
        id: "0123456789abcdef0123456789abcdef",
        principal: "ann@host",
        created: "1735689600000",
      }),
    "hash with times out of range": (raw, key) =>
      raw.hset(key, {
        id: "0123456789abcdef0123456789abcdef",
        principal: "ann@host",
        created: "9999999999999999",
        expires: "9999999999999999",
      }),
  };
}

/** What `raw` holds at `key`, whatever its type. */
async function dump(raw: Redis, key: string): Promise<unknown> {
  return await raw.type(key) === "string"
    ? await raw.get(key)
    : await raw.hgetall(key);
}

test("the CLI exits 78 with one line for a key that is not a lease", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = redis\n\n[backend.redis]\nurl = ${url}\nprefix = ${prefix}\n`,
  );
  const raw = inspector();
  try {
    for (const resource of ["hash without id", "hash with text times"]) {
      await foreignKeys()[resource](raw, prefix + resource);
      for (const command of ["acquire", "current"]) {
        const result = await home.run([command, resource]);
        assertCleanExit(result, 78, /not a Stormlock lease/, [password]);
      }
    }
  } finally {
    raw.disconnect();
  }
});

test("a least-privilege ACL user can do everything", async () => {
  const backend = await open({ url: aclUrl });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann", 60);
    await assert.rejects(backend.acquire(resource, "bob", 60), LockHeldError);
    await backend.renew(resource, lease.id, 120, { reason: "why" });
    assert.equal((await backend.current(resource))?.id, lease.id);
    assert.equal(await backend.isHeld(resource, lease.id), true);
    assert.ok((await backend.list(resource)).some((l) => l.id === lease.id));
    await backend.release(resource, lease.id);
    const next = await backend.acquire(resource, "bob", 1);
    await sleep(1500);
    const last = await backend.acquire(resource, "cy", 60);
    await backend.breakLease(resource, last.id, {
      principal: "ops",
      reason: "test",
    });
    assert.deepEqual(
      (await backend.history(resource)).map((event) => event.kind),
      [
        "broken",
        "acquired",
        "expired",
        "acquired",
        "released",
        "reason-changed",
        "acquired",
      ],
    );
    assert.ok(last.fence > next.fence && next.fence > lease.fence);
    // The queue: a waiter's registration joins the lock's waiters set, and
    // a queue-aware acquire reads it, with the same ACL.
    const queued = uniqueResource();
    const ticket = await WaitTicket.take(backend, queued, "ann");
    try {
      const refused = await backend.acquire(queued, "bob", 60, {
        waiters: waiterPrefix(queued),
      }).then(() => undefined, (error) => error);
      assert.ok(refused instanceof LockHeldError, String(refused));
      assert.equal(refused.queued, true);
      assert.equal(refused.holder.principal, "ann");
    } finally {
      await ticket.leave();
    }
  } finally {
    await backend.close();
  }
});

test("a missing password gives BackendUnavailableError without showing the right one", async () => {
  const missing = new URL(url);
  missing.password = "";
  const backend = await open({ url: missing.href });
  try {
    await rejectsCleanly(
      backend.acquire(uniqueResource(), "ann", 60),
      BackendUnavailableError,
      {
        mentions: [/refused the credentials/, /127\.0\.0\.1:\d+/],
        secrets: [password],
      },
    );
  } finally {
    await backend.close();
  }
});

test("a database number in the url selects that database", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url: `${url}/3`, prefix });
  const [db0, db3] = [inspector(0), inspector(3)];
  try {
    const lease = await backend.acquire("r", "ann", 60);
    assert.equal(await db3.hget(`${prefix}r`, "id"), lease.id);
    assert.equal(await db0.exists(`${prefix}r`), 0);
    await backend.release("r", lease.id);
  } finally {
    db0.disconnect();
    db3.disconnect();
    await backend.close();
  }
});

test("the CLI ignores a password the server does not need, printing nothing", async () => {
  await using server = await passwordlessServer();
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = redis\n\n[backend.redis]\nurl = redis://:unneeded-Secret-7@127.0.0.1:${server.port}\n`,
  );
  const results = await assertCliLockCycle(home, uniqueResource());
  for (const result of results) {
    assert.doesNotMatch(result.stderr, /WARN|password|unneeded/);
  }
});

test("rediss:// with ca_cert connects over TLS", async () => {
  const backend = await open({ url: tlsUrl, ca_cert: caFile });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann", 60);
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("rediss:// without the CA refuses the server's certificate", async () => {
  const backend = await open({ url: tlsUrl, timeout: "2s" });
  try {
    await assert.rejects(
      backend.acquire(uniqueResource(), "ann", 60),
      BackendUnavailableError,
    );
  } finally {
    await backend.close();
  }
});

test("a server that is not Redis gives BackendUnavailableError", async () => {
  await using server = replyingServer("HTTP/1.1 400 Bad\r\n\r\n");
  const backend = await open({ url: `redis://127.0.0.1:${server.port}` });
  try {
    await rejectsCleanly(backend.current("r"), BackendUnavailableError, {
      mentions: [/Redis protocol/],
    });
  } finally {
    await backend.close();
  }
});

test("bad options give ConfigError naming the key, never the password", async () => {
  const bad: BackendOptions[] = [
    { url: `http://ann:${password}@127.0.0.1:6379` },
    { url: `redis://ann:${password}@127.0.0.1:6379/nope` },
    { url: `redis://ann:${password}@127.0.0.1:6379?tls=1` },
    { url: `not a url ${password}` },
    { url: `redis://${password}@127.0.0.1:6379` },
    { url: `redis://:${password}@127.0.0.1:0` },
    { url: `redis://:${password}@127.0.0.1:65536` },
    { url: `redis://:${password}@127.0.0.1:6379/2147483648` },
    { url, timeout: "soon" },
    { url, ca_cert: caFile },
    { url: tlsUrl, ca_cert: "/nonexistent/ca.pem" },
  ];
  for (const options of bad) {
    await rejectsCleanly(open(options), ConfigError, {
      mentions: [/\[backend\.redis\] (url|timeout|ca_cert)/],
      secrets: [password],
    });
  }
});

test("a database the server lacks is a ConfigError naming url, not an outage", async () => {
  const backend = await open({ url: `${url}/99` });
  try {
    for (
      const call of [
        () => backend.acquire("r", "ann", 60),
        () => backend.init(),
      ]
    ) {
      await rejectsCleanly(call(), ConfigError, {
        mentions: [
          /\[backend\.redis\] url: Redis at 127\.0\.0\.1:\d+ has no database 99/,
          /DB index is out of range/,
        ],
        secrets: [password],
      });
    }
  } finally {
    await backend.close();
  }
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = redis\n\n[backend.redis]\nurl = ${url}/99\n`,
  );
  const result = await home.run(["acquire", uniqueResource()]);
  assertCleanExit(result, 78, /url: Redis at .* has no database 99/, [
    password,
  ]);
});

test("port 0 in the url is a ConfigError when the backend opens", async () => {
  await rejectsCleanly(
    open({ url: `redis://:${password}@127.0.0.1:0` }),
    ConfigError,
    {
      mentions: ["[backend.redis] url: port 0 is not a port"],
      secrets: [password],
    },
  );
});

test("a lease released by a 0.1 client is not recorded as expired", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  try {
    const first = await backend.acquire("r", "ann", 60);
    // 0.1's release script: delete the key if the id matches.
    await raw.del(prefix + "r");
    const second = await backend.acquire("r", "bob", 60);
    assert.ok(second.fence > first.fence);
    assert.deepEqual(
      (await backend.history("r")).map((event) => event.kind),
      ["acquired", "acquired"],
    );
    assert.equal((await backend.list()).length, 1, "the index dropped it");
  } finally {
    raw.disconnect();
    await backend.close();
  }
});

test("list() reads thousands of leases in one call, without stale ones", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  try {
    const count = 3000;
    const leases: Lease[] = [];
    for (let start = 0; start < count; start += 500) {
      leases.push(
        ...await Promise.all(
          Array.from(
            { length: Math.min(500, count - start) },
            (_, i) =>
              backend.acquire(
                `job/${String(start + i).padStart(5, "0")}`,
                "ann",
                60,
              ),
          ),
        ),
      );
    }
    await backend.acquire("other/x", "ann", 60);
    const short = await backend.acquire("job/short", "ann", 1);
    for (const lease of leases.slice(0, 100)) {
      await backend.release(lease.resource, lease.id);
    }
    await sleep(short.expires.getTime() - Date.now() + 300);
    const began = performance.now();
    const listed = await backend.list("job/");
    const took = performance.now() - began;
    assert.equal(listed.length, count - 100);
    assert.deepEqual(
      listed.map((lease) => lease.id),
      leases.slice(100).map((lease) => lease.id),
    );
    assert.ok(took < 3000, `list took ${took} ms`);
    // Released and expired leases are gone from the index too.
    assert.equal(await raw.zcard(`${prefix}\0index`), count - 100 + 1);
  } finally {
    raw.disconnect();
    await backend.close();
  }
});

test("a resource name starting with NUL is refused, as it would share the side keys", async () => {
  const backend = await open({ url });
  try {
    await rejectsCleanly(
      backend.acquire("\0state\0x", "ann", 60),
      UsageError,
      { mentions: ["U+0000", "reserves"] },
    );
  } finally {
    await backend.close();
  }
});

test("the CLI acquires, refuses a held lock and releases", async () => {
  using home = new CliHome();
  home.write(
    ".stormlock.cfg",
    `[default]\nbackend = redis\n\n[backend.redis]\nurl = ${url}\n`,
  );
  const results = await assertCliLockCycle(home, uniqueResource());
  for (const result of results) {
    assert.ok(!(result.stdout + result.stderr).includes(password));
  }
});

test("the CLI exits 69 with one clean line when the server is down", async () => {
  using home = new CliHome();
  await using silent = silentServer();
  const down = [
    `redis://ann:${password}@127.0.0.1:${closedPort()}`,
    `redis://ann:${password}@127.0.0.1:${silent.port}`,
  ];
  for (const target of down) {
    home.write(
      ".stormlock.cfg",
      `[default]\nbackend = redis\n\n[backend.redis]\nurl = ${target}\ntimeout = 1s\n`,
    );
    const result = await home.run(["acquire", uniqueResource()]);
    assertCleanExit(result, 69, /^stormlock: Redis at 127\.0\.0\.1:\d+ /, [
      password,
    ]);
  }
});

/** Waits, in bounded steps, until `check` holds. */
async function eventually(what: string, check: () => Promise<boolean>) {
  for (let tries = 0; tries < 500; tries++) {
    if (await check()) return;
    await sleep(20);
  }
  assert.fail(`${what} never happened`);
}

/** A raw subscriber that collects the messages on `channel`. */
async function listener(channel: string) {
  const sub = inspector();
  const heard: string[] = [];
  sub.on("message", (from: string, message: string) => {
    if (from === channel) heard.push(message);
  });
  await sub.subscribe(channel);
  return {
    heard,
    /** Everything published before now, ended by a marker of our own. */
    async upToNow(): Promise<string[]> {
      const raw = inspector();
      try {
        await raw.publish(channel, "marker");
      } finally {
        raw.disconnect();
      }
      await eventually(
        "the marker",
        () => Promise.resolve(heard.at(-1) === "marker"),
      );
      return heard.splice(0).slice(0, -1);
    },
    [Symbol.dispose]: () => sub.disconnect(),
  };
}

test("acquire, release and break publish their kind on P\\0events\\0R; renew and a refused acquire do not", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const resource = "a resource";
  using heard = await listener(`${prefix}\0events\0${resource}`);
  try {
    const lease = await backend.acquire(resource, "ann", 60);
    await assert.rejects(backend.acquire(resource, "bob", 60), LockHeldError);
    await backend.renew(resource, lease.id, 60, { reason: "why" });
    await backend.release(resource, lease.id);
    await assert.rejects(backend.release(resource, lease.id));
    const next = await backend.acquire(resource, "bob", 60);
    await backend.breakLease(resource, next.id, {
      principal: "ops",
      reason: "x",
    });
    assert.deepEqual(await heard.upToNow(), [
      "acquired",
      "released",
      "acquired",
      "broken",
    ]);
  } finally {
    await backend.close();
  }
});

test("watches share one subscriber per store, one SUBSCRIBE per resource, unsubscribed on abort and by close", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  const subscribers = async (resource: string) =>
    (await raw.pubsub("NUMSUB", `${prefix}\0events\0${resource}`))[1];
  const clients = async () =>
    (await raw.client("LIST") as string).split("\n").filter((line) =>
      /cmd=(subscribe|unsubscribe)\b/.test(line) || / sub=[1-9]/.test(line)
    ).length;
  const before = await clients();
  try {
    const [a, b, c] = [
      new AbortController(),
      new AbortController(),
      new AbortController(),
    ];
    let seen = 0;
    const onChange = () => seen++;
    await backend.watch("x", onChange, a.signal);
    await backend.watch("x", onChange, b.signal);
    await backend.watch("y", onChange, c.signal);
    assert.equal(await subscribers("x"), 1);
    assert.equal(await subscribers("y"), 1);
    assert.equal(await clients(), before + 1, "one subscriber connection");
    const lease = await backend.acquire("x", "ann", 60);
    await eventually(
      "both watches of x hear it",
      () => Promise.resolve(seen === 2),
    );
    a.abort();
    await backend.release("x", lease.id);
    await eventually(
      "the other watch hears it",
      () => Promise.resolve(seen === 3),
    );
    assert.equal(await subscribers("x"), 1, "b still watches x");
    b.abort();
    await eventually(
      "x unsubscribed",
      async () => await subscribers("x") === 0,
    );
    await backend.close();
    await eventually(
      "the subscriber closed",
      async () => await subscribers("y") === 0,
    );
    assert.equal(await clients(), before);
  } finally {
    raw.disconnect();
    await backend.close();
  }
});

test("a user whose ACL predates events still locks, and watch says permission is denied", async () => {
  const raw = inspector();
  const user = `stormlock-old-${crypto.randomUUID()}`;
  const secret = crypto.randomUUID();
  // The least-privilege ACL of Stormlock 0.1: no PUBLISH, no channels.
  await raw.call(
    "ACL",
    "SETUSER",
    user,
    ..."on resetkeys ~stormlock:* resetchannels -@all +info +select +eval +evalsha +time +type +hmget +hset +hdel +hincrby +del +pexpireat +pexpire +lpush +ltrim +lindex +rpop +lrange +zadd +zrem +zrangebyscore +zremrangebyscore"
      .split(" "),
    `>${secret}`,
  );
  const { hostname, port } = new URL(url);
  const backend = await open({
    url: `redis://${user}:${secret}@${hostname}:${port}`,
  });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann", 60);
    await backend.release(resource, lease.id);
    const next = await backend.acquire(resource, "bob", 60);
    await backend.breakLease(resource, next.id, {
      principal: "ops",
      reason: "x",
    });
    await rejectsCleanly(
      backend.watch(resource, () => {}, new AbortController().signal),
      BackendUnavailableError,
      { mentions: [/denied the user permission to watch/, /NOPERM/] },
    );
  } finally {
    await backend.close();
    await raw.call("ACL", "DELUSER", user);
    raw.disconnect();
  }
});

test("a least-privilege ACL user can watch", async () => {
  const backend = await open({ url: aclUrl });
  const other = await open({ url: aclUrl });
  const stop = new AbortController();
  try {
    const resource = uniqueResource();
    let seen = 0;
    await backend.watch(resource, () => seen++, stop.signal);
    const lease = await other.acquire(resource, "ann", 60);
    await other.release(resource, lease.id);
    await eventually("both changes heard", () => Promise.resolve(seen >= 2));
  } finally {
    stop.abort();
    await other.close();
    await backend.close();
  }
});

test("rediss:// watches over TLS, and a database number does not matter to channels", async () => {
  const backend = await open({ url: tlsUrl, ca_cert: caFile });
  const other = await open({ url: `${url}/3` });
  const stop = new AbortController();
  try {
    const resource = uniqueResource();
    let seen = 0;
    await backend.watch(resource, () => seen++, stop.signal);
    const lease = await other.acquire(resource, "ann", 60);
    await other.release(resource, lease.id);
    await eventually("both changes heard", () => Promise.resolve(seen >= 2));
  } finally {
    stop.abort();
    await other.close();
    await backend.close();
  }
});

test("a subscriber whose connection drops goes quiet; the next watch opens another", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  const stop = new AbortController();
  try {
    let before = 0;
    await backend.watch("r", () => before++, stop.signal);
    await raw.client("KILL", "TYPE", "pubsub");
    await eventually(
      "the subscriber gone",
      async () => (await raw.pubsub("NUMSUB", `${prefix}\0events\0r`))[1] === 0,
    );
    // The client may not have heard yet: watch until a watch opens a new
    // subscriber.
    let after = 0;
    await eventually("a new subscriber", async () => {
      after = 0;
      await backend.watch("r", () => after++, stop.signal);
      return (await raw.pubsub("NUMSUB", `${prefix}\0events\0r`))[1] === 1;
    });
    const lease = await backend.acquire("r", "ann", 60);
    await eventually(
      "the new watch hears it",
      () => Promise.resolve(after === 1),
    );
    await backend.release("r", lease.id);
    await eventually("and again", () => Promise.resolve(after === 2));
    assert.equal(before, 0, "the dropped watch heard nothing");
  } finally {
    stop.abort();
    raw.disconnect();
    await backend.close();
  }
});

test("init warns unless maxmemory-policy is noeviction, and an evicted fence counter goes on from history", async () => {
  await using server = await passwordlessServer();
  const raw = new Redis({ host: "127.0.0.1", port: server.port });
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const warnings: string[] = [];
  const backend = await openBackend(
    { url: `redis://127.0.0.1:${server.port}`, prefix },
    { name: "redis", section: "backend.redis" },
    (message) => warnings.push(message),
  );
  try {
    await backend.init();
    assert.deepEqual(warnings, [], "noeviction (the default) is fine");
    await raw.config("SET", "maxmemory-policy", "allkeys-lru");
    await backend.init();
    assert.equal(warnings.length, 1, warnings.join("\n"));
    assert.match(
      warnings[0],
      /maxmemory-policy is allkeys-lru, .*set maxmemory-policy noeviction/,
    );
    const resource = uniqueResource("evicted");
    let fence = 0;
    for (let i = 0; i < 4; i++) {
      const lease = await backend.acquire(resource, "ann@host", 60);
      assert.ok(lease.fence > fence);
      fence = lease.fence;
      await backend.release(resource, lease.id);
    }
    // What eviction does to the counter (it has no TTL, so allkeys-* can
    // pick it): the key is gone, the history is still there.
    assert.equal(await raw.del(sideKeys(prefix, resource).state), 1);
    const after = await backend.acquire(resource, "ann@host", 60);
    assert.ok(
      after.fence > fence,
      `the fence went back from ${fence} to ${after.fence}`,
    );
    await backend.release(resource, after.id);
    const next = await backend.acquire(resource, "ann@host", 60);
    assert.equal(next.fence, after.fence + 1);
    await backend.release(resource, next.id);
  } finally {
    await backend.close();
    raw.disconnect();
  }
});

test("slots: the first holder is the lease hash with a limit, the others a sorted set of JSON by fence, all under the ACL", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url: aclUrl, prefix });
  const raw = inspector();
  try {
    const resource = "pool";
    const key = prefix + resource;
    const further = `${prefix}\0holders\0${resource}`;
    const side = sideKeys(prefix, resource);
    const [one, two, three] = [
      await backend.acquire(resource, "ann@host", 60, { limit: 3 }),
      await backend.acquire(resource, "bob@host", 120, { limit: 3 }),
      await backend.acquire(resource, "cy@host", 30, { limit: 3, reason: "r" }),
    ];
    // The first holder is where an exclusive lease lives, plus its limit.
    assert.deepEqual(await raw.hgetall(key), {
      id: one.id,
      principal: "ann@host",
      created: String(one.created.getTime()),
      expires: String(one.expires.getTime()),
      fence: String(one.fence),
      limit: "3",
    });
    const members = await raw.zrange(further, 0, -1, "WITHSCORES");
    assert.deepEqual(
      [JSON.parse(members[0]), members[1], JSON.parse(members[2]), members[3]],
      [
        {
          id: two.id,
          principal: "bob@host",
          created: String(two.created.getTime()),
          expires: String(two.expires.getTime()),
          fence: String(two.fence),
          limit: "3",
        },
        String(two.fence),
        {
          id: three.id,
          principal: "cy@host",
          created: String(three.created.getTime()),
          expires: String(three.expires.getTime()),
          fence: String(three.fence),
          reason: "r",
          limit: "3",
        },
        String(three.fence),
      ],
    );
    // Listed until the latest holder's expiry; the set kept a history
    // age longer, so a late acquire can still record its holders' expiry.
    assert.equal(
      await raw.zscore(side.index, resource),
      String(two.expires.getTime()),
    );
    assert.equal(
      await raw.pexpiretime(further),
      two.expires.getTime() + 30 * 86400_000,
    );
    // The first holder's release moves the next (lowest fence) up.
    await backend.release(resource, one.id);
    assert.equal(await raw.hget(key, "id"), two.id);
    assert.equal(await raw.pexpiretime(key), two.expires.getTime());
    assert.equal(await raw.hget(side.state, "id"), two.id);
    assert.equal(await raw.zcard(further), 1);
    const renewed = await backend.renew(resource, three.id, 300);
    assert.equal(
      await raw.zscore(side.index, resource),
      String(renewed.expires.getTime()),
    );
    assert.equal(
      JSON.parse((await raw.zrange(further, 0, -1))[0]).expires,
      String(renewed.expires.getTime()),
    );
    await backend.release(resource, three.id);
    await backend.release(resource, two.id);
    assert.equal(await raw.exists(key, further), 0);
    assert.equal(await raw.zscore(side.index, resource), null);
    // An exclusive lease after it is stored as ever: no limit field.
    const exclusive = await backend.acquire(resource, "dan@host", 60);
    assert.equal(await raw.hget(key, "limit"), null);
    await backend.release(resource, exclusive.id);
    assert.deepEqual(
      (await raw.lrange(side.history, 0, -1)).map((entry) => {
        const event = JSON.parse(entry);
        return `${event.kind} ${event.principal} ${event.limit ?? 1}`;
      }).reverse(),
      [
        "acquired ann@host 3",
        "acquired bob@host 3",
        "acquired cy@host 3",
        "released ann@host 3",
        "renewed cy@host 3",
        "released cy@host 3",
        "released bob@host 3",
        "acquired dan@host 1",
        "released dan@host 1",
      ],
    );
  } finally {
    raw.disconnect();
    await backend.close();
  }
});

test("slots: after the first holder expires, reads and list still see the others, and the next write moves one up and records the expiry", async () => {
  const prefix = `stormlock:t-${crypto.randomUUID()}:`;
  const backend = await open({ url, prefix });
  const raw = inspector();
  try {
    const resource = "pool";
    const key = prefix + resource;
    const short = await backend.acquire(resource, "ann@host", 1, { limit: 0 });
    const long = await backend.acquire(resource, "bob@host", 60, { limit: 0 });
    await sleep(Math.max(0, short.expires.getTime() - Date.now()) + 300);
    assert.equal(await raw.exists(key), 0, "Redis deleted the first");
    assert.equal((await backend.current(resource))?.id, long.id);
    assert.deepEqual(
      (await backend.holders!(resource)).map((lease) => lease.id),
      [long.id],
    );
    assert.deepEqual(
      (await backend.list(resource)).map((l) => l.id),
      [long.id],
    );
    assert.equal(await backend.isHeld(resource, long.id), true);
    // An exclusive acquire is refused by the remaining shared holder, and
    // on the way moves it into the lease key for single-holder readers.
    await assert.rejects(
      backend.acquire(resource, "cy@host", 60),
      LockHeldError,
    );
    assert.equal(await raw.hget(key, "id"), long.id);
    const kinds = (await backend.history(resource)).map((event) =>
      `${event.kind} ${event.id === short.id ? "short" : "long"}`
    );
    assert.deepEqual(kinds, [
      "expired short",
      "acquired long",
      "acquired short",
    ]);
    await backend.release(resource, long.id);
    assert.equal(await backend.current(resource), null);
  } finally {
    raw.disconnect();
    await backend.close();
  }
});
