import assert from "assert";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { Etcd3, GRPCDeadlineExceededError, KVClient } from "etcd3";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
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
  uniqueResource,
} from "./helpers.ts";

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

testBackendContract("etcd", () => open({ hosts, timeout: "3s" }));

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
  { secret: tlsPassword, silent: /did not answer within 0\.5s/ },
);

/** Asserts `promise` fails cleanly: unavailable, and the password unshown. */
function assertUnavailable(
  promise: Promise<unknown>,
  ...mentions: string[]
): Promise<BackendUnavailableError> {
  return rejectsCleanly(promise, BackendUnavailableError, {
    mentions,
    secrets: [tlsPassword!],
  });
}

const test = backendTest("etcd");

test("a dead host in hosts is skipped for a live one", async () => {
  const backend = await open({
    hosts: `127.0.0.1:${closedPort()}, ${hosts}`,
  });
  try {
    // Each call picks a host at random; all must reach the live one.
    for (let i = 0; i < 5; i++) {
      assert.equal(await backend.current(uniqueResource()), null);
    }
  } finally {
    await backend.close();
  }
});

test("a lost race leaves no etcd lease behind", async () => {
  const raw = new Etcd3({ hosts });
  const [a, b] = await Promise.all([open({ hosts }), open({ hosts })]);
  const leaseIds = async () =>
    (await raw.leaseClient.leaseLeases()).leases.map(({ ID }) => ID);
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
    raw.close();
    await Promise.all([a.close(), b.close()]);
  }
});

type TxnAnswer = ReturnType<KVClient["txn"]>;

/**
 * Runs `body` with the next etcd transaction of any client intercepted:
 * `around` runs the real transaction and answers in its place.
 */
async function interceptNextTxn(
  around: (send: () => TxnAnswer) => TxnAnswer,
  body: () => Promise<void>,
): Promise<void> {
  const txn = Object.getOwnPropertyDescriptor(KVClient.prototype, "txn")!;
  KVClient.prototype.txn = function (this: KVClient, ...args) {
    Object.defineProperty(KVClient.prototype, "txn", txn);
    return around(() => txn.value.apply(this, args));
  };
  try {
    await body();
  } finally {
    Object.defineProperty(KVClient.prototype, "txn", txn);
  }
}

test("a renew whose answer is lost keeps the lock, on the new etcd lease", async () => {
  const raw = new Etcd3({ hosts });
  const backend = await open({ hosts });
  const key = (resource: string) => Buffer.from(`/stormlock/${resource}`);
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    // The compare-and-swap lands, then its answer is lost.
    await interceptNextTxn(async (send) => {
      assert.equal((await send()).succeeded, true);
      throw new GRPCDeadlineExceededError("4 DEADLINE_EXCEEDED: lost");
    }, async () => {
      await assert.rejects(
        backend.renew(resource, lease.id, 120),
        BackendUnavailableError,
      );
    });
    assert.equal(await backend.isHeld(resource, lease.id), true);
    const { kvs } = await raw.kv.range({ key: key(resource) });
    const { grantedTTL } = await raw.leaseClient.leaseTimeToLive({
      ID: kvs[0].lease,
    });
    assert.equal(
      Number(grantedTTL),
      120,
      "the key is on the renew's etcd lease",
    );
    const renewed = await backend.renew(resource, lease.id, 60);
    assert.equal(renewed.id, lease.id);
    await backend.release(resource, lease.id);
  } finally {
    raw.close();
    await backend.close();
  }
});

test("a renew that loses the compare-and-swap revokes its new etcd lease", async () => {
  const raw = new Etcd3({ hosts });
  const backend = await open({ hosts });
  const leaseIds = async () =>
    (await raw.leaseClient.leaseLeases()).leases.map(({ ID }) => ID);
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 60);
    const before = new Set(await leaseIds());
    // The key changes between the renew's read and its compare-and-swap.
    await interceptNextTxn(async (send) => {
      await raw.delete().key(`/stormlock/${resource}`);
      return await send();
    }, async () => {
      await assert.rejects(
        backend.renew(resource, lease.id, 120),
        LeaseNotHeldError,
      );
    });
    const added = (await leaseIds()).filter((id) => !before.has(id));
    assert.deepEqual(added, [], "the renew's etcd lease was revoked");
  } finally {
    raw.close();
    await backend.close();
  }
});

test("a TTL below etcd's minimum reports the TTL etcd granted", async () => {
  const raw = new Etcd3({ hosts });
  const backend = await open({ hosts });
  try {
    const resource = uniqueResource();
    const lease = await backend.acquire(resource, "ann@host", 1);
    const { kvs } = await raw.kv.range({
      key: Buffer.from(`/stormlock/${resource}`),
    });
    const { grantedTTL } = await raw.leaseClient.leaseTimeToLive({
      ID: kvs[0].lease,
    });
    assert.equal(
      lease.expires.getTime() - lease.created.getTime(),
      Number(grantedTTL) * 1000,
    );
  } finally {
    raw.close();
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
    await backend.release(resource, lease.id);
  } finally {
    await backend.close();
  }
});

test("a wrong password gives BackendUnavailableError without the password", async () => {
  const backend = await open(secure({ password: `${tlsPassword}-wrong` }));
  try {
    const error = await assertUnavailable(
      backend.acquire(uniqueResource(), "ann@host", 60),
      tlsHost,
      `user "${tlsUser}"`,
    );
    assert.ok(!error.message.includes(`${tlsPassword}-wrong`));
  } finally {
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
    { hosts: "a:1", host: "b" },
    { hosts: "ftp://a:1" },
    { hosts: "http://root:s3cret@a:2379" },
    { hosts: "http://a:1, https://b:2" },
    { hosts: "https://127.0.0.1:2379" },
    { user: "root" },
    { password: "s3cret" },
    { cert_cert: join(tlsDir, "client.crt") },
    { ca_cert: "/nonexistent/ca.crt" },
    { timeout: "soon" },
    { host: "http://a" },
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
