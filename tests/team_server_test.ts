/**
 * The team lock server's identities: named tokens (create, list, revoke,
 * seen at once by a running server), scopes, resource patterns, lease ids
 * as capabilities, tokens that never show, metrics, and a release by
 * another principal on a local store.
 */
import assert from "assert";
import { join } from "node:path";
import {
  ForbiddenError,
  LeaseNotHeldError,
  openBackend,
  parseConfig,
  Stormlock,
} from "../mod.ts";
import type { Backend } from "../mod.ts";
import { serveStatus } from "../lib/apps/serve/server.ts";
import { bookkeeping } from "../lib/kit/views.ts";
import {
  createToken,
  readTokensFile,
  revokeToken,
  TokenStore,
} from "../lib/apps/serve/identity.ts";
import { CliHome, shown, sleep, uniqueResource } from "./helpers.ts";

/** A server over a fresh SQLite file, with a tokens file. */
class Team implements AsyncDisposable {
  readonly folder = Deno.makeTempDirSync({ prefix: "stormlock-team-" });
  readonly tokens = join(this.folder, "tokens.json");
  readonly locks = new Stormlock(
    parseConfig(
      `[default]\nbackend = sqlite\n[backend.sqlite]\npath = ${
        join(this.folder, "locks.db")
      }\n`,
    ),
    { warn() {} },
  );
  readonly server = serveStatus(this.locks, {
    listen: "127.0.0.1:0",
    tokens: new TokenStore(this.tokens),
    pollMs: 100,
    rate: { burst: 10_000, perSecond: 10_000 },
  });
  readonly opened: Backend[] = [];
  readonly secrets: string[] = [];

  /** Makes a named token and a client that sends it. */
  async client(
    name: string,
    scopes: ("read" | "acquire" | "break")[],
    resources?: string[],
  ): Promise<{ token: string; backend: Backend }> {
    const token = await createToken(this.tokens, name, scopes, resources);
    this.secrets.push(token);
    const file = join(this.folder, `${name}.token`);
    Deno.writeTextFileSync(file, token);
    const backend = await openBackend(
      { url: this.server.url, token_file: file, timeout: "5s" },
      { name: "http", section: "backend.http" },
    );
    this.opened.push(backend);
    return { token, backend };
  }

  async [Symbol.asyncDispose]() {
    await Promise.all(this.opened.map((backend) => backend.close()));
    await this.server.shutdown();
    await this.locks.close();
    Deno.removeSync(this.folder, { recursive: true });
  }
}

function test(name: string, fn: () => Promise<void>) {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

test("team: the principal is the token's name, never the client's claim", async () => {
  await using team = new Team();
  const { backend } = await team.client("ann", ["read", "acquire"]);
  const resource = uniqueResource();
  const lease = await backend.acquire(resource, "mallory@claimed", 60);
  assert.equal(lease.principal, "ann");
  assert.equal((await backend.current(resource))?.principal, "ann");
});

test("team: release or renew by another principal is refused (77) even with the right id; break with the scope works and is recorded", async () => {
  await using team = new Team();
  const ann = (await team.client("ann", ["read", "acquire"])).backend;
  const bob = (await team.client("bob", ["read", "acquire"])).backend;
  const ops = (await team.client("ops", ["read", "break"])).backend;
  const resource = uniqueResource();
  const lease = await ann.acquire(resource, "ann", 60);
  for (
    const call of [
      () => bob.release(resource, lease.id),
      () => bob.renew(resource, lease.id, 600),
      () =>
        bob.breakLease(resource, lease.id, { principal: "bob", reason: "x" }),
    ]
  ) {
    const error = await call().then(() => undefined, (e) => e);
    assert.ok(error instanceof ForbiddenError, String(error));
    assert.equal(error.code, "FORBIDDEN");
  }
  assert.equal((await ann.current(resource))?.id, lease.id);
  const broken = await ops.breakLease(resource, "", {
    principal: "claimed",
    reason: "job died",
  });
  assert.equal(broken.principal, "ann");
  const [event] = await ann.history(resource, 1);
  assert.equal(event.kind, "broken");
  assert.equal(event.by?.principal, "ops");
  assert.equal(event.by?.reason, "job died");
  const error = await ann.renew(resource, lease.id, 60).catch((e) => e);
  assert.ok(error instanceof LeaseNotHeldError);
  assert.match(error.message, /broken by ops/);
});

test("team: lease ids are shown only to their holder, in current, list, history and the events stream", async () => {
  await using team = new Team();
  const { backend: ann, token: annToken } = await team.client("ann", [
    "read",
    "acquire",
  ]);
  const { backend: bob, token: bobToken } = await team.client("bob", [
    "read",
  ]);
  const resource = uniqueResource("hidden");
  const lease = await ann.acquire(resource, "ann", 60);
  assert.equal((await ann.current(resource))?.id, lease.id);
  assert.equal((await bob.current(resource))?.id, "");
  assert.equal((await ann.list(resource))[0].id, lease.id);
  assert.equal((await bob.list(resource))[0].id, "");
  assert.equal((await bob.history(resource, 5))[0].id, "");
  assert.equal((await ann.history(resource, 5))[0].id, lease.id);
  const seen = async (token: string) => {
    const response = await fetch(`${team.server.url}/api/events`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!text.includes("event: locks")) text += (await reader.read()).value;
    while (!/event: locks\ndata: .*\n\n/.test(text)) {
      text += (await reader.read()).value;
    }
    await reader.cancel();
    return text;
  };
  assert.ok((await seen(annToken)).includes(lease.id));
  assert.ok(!(await seen(bobToken)).includes(lease.id));
  const info = await (await fetch(`${team.server.url}/api/info`, {
    headers: { authorization: `Bearer ${bobToken}` },
  })).json();
  assert.equal(info.principal, "bob");
  assert.equal(info.allowBreak, false);
});

test("team: a missing scope and a resource outside the token's patterns are refused", async () => {
  await using team = new Team();
  const reader = (await team.client("reader", ["read"])).backend;
  const deployer = (await team.client("deployer", ["acquire"], ["deploy/*"]))
    .backend;
  await assert.rejects(
    reader.acquire(uniqueResource(), "x", 60),
    (error: unknown) =>
      error instanceof ForbiddenError &&
      /lacks the "acquire" scope/.test(error.message),
  );
  await assert.rejects(
    deployer.acquire("db-prod", "x", 60),
    (error: unknown) =>
      error instanceof ForbiddenError &&
      /may not touch "db-prod"/.test(error.message),
  );
  const lease = await deployer.acquire(
    `deploy/${crypto.randomUUID()}`,
    "x",
    60,
  );
  assert.equal(lease.principal, "deployer");
  // Waiting works within the patterns: the queue is the lock's own.
  assert.deepEqual(
    (await deployer.list(`deploy/`)).map((l) => l.id),
    [lease.id],
  );
});

test("team: expire ends only a lapsed lease and records it; a token without acquire, or a hidden id, gets false", async () => {
  await using team = new Team();
  const { backend: ann } = await team.client("ann", ["read", "acquire"]);
  const { backend: reader } = await team.client("reader", ["read"]);
  const resource = uniqueResource();
  const lease = await ann.acquire(resource, "x", 1);
  assert.equal(await ann.expire!(resource, lease.id), false, "still live");
  for (let i = 0; i < 200 && Date.now() <= lease.expires.getTime(); i++) {
    await sleep(50);
  }
  assert.equal(await reader.expire!(resource, lease.id), false);
  assert.equal(await reader.expire!(resource, ""), false);
  assert.equal((await ann.history(resource, 1))[0].kind, "acquired");
  assert.equal(await ann.expire!(resource, lease.id), true);
  const [recorded] = await ann.history(resource, 1);
  assert.equal(recorded.kind, "expired");
  assert.equal(recorded.id, lease.id);
  assert.equal(await ann.expire!(resource, lease.id), false, "already ended");
});

test("team: a revoked token is refused at once, without a restart", async () => {
  await using team = new Team();
  const { backend } = await team.client("ann", ["read", "acquire"]);
  const resource = uniqueResource();
  await backend.acquire(resource, "ann", 60);
  assert.equal(revokeToken(team.tokens, "ann"), true);
  await assert.rejects(
    backend.current(resource),
    (error: unknown) =>
      error instanceof ForbiddenError && /refused/.test(error.message),
  );
  assert.equal(revokeToken(team.tokens, "ann"), false);
});

test("team: the tokens file holds only hashes, and no token shows in errors", async () => {
  await using team = new Team();
  const { token, backend } = await team.client("ann", ["read", "acquire"]);
  assert.match(token, /^slk_[0-9a-f]{64}$/);
  const text = Deno.readTextFileSync(team.tokens);
  assert.ok(!text.includes(token));
  assert.equal(readTokensFile(team.tokens)[0].name, "ann");
  revokeToken(team.tokens, "ann");
  const error = await backend.acquire(uniqueResource(), "x", 60).catch((e) =>
    e
  );
  assert.ok(error instanceof ForbiddenError);
  for (const secret of team.secrets) assert.ok(!shown(error).includes(secret));
});

test("team: token create prints the token once, list never shows it, and the CLI never prints it in errors or debug output", async () => {
  using home = new CliHome();
  const tokens = join(home.home, "tokens.json");
  const config = home.write(
    "server.cfg",
    `[default]\nbackend = sqlite\n[serve]\ntokens = ${tokens}\n`,
  );
  const created = await home.run([
    "-c",
    config,
    "token",
    "create",
    "ci",
    "--scopes",
    "acquire",
    "--resources",
    "deploy/*",
  ]);
  assert.equal(created.code, 0, created.stderr);
  const token = created.stdout.trim();
  assert.match(token, /^slk_/);
  assert.ok(!created.stderr.includes(token));
  const listed = await home.run(["-c", config, "token", "list", "--json"]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(
    JSON.parse(listed.stdout).map((t: { name: string }) => t.name),
    ["ci"],
  );
  assert.ok(!listed.stdout.includes(token));
  assert.ok(!listed.stdout.includes("sha256"));
  const again = await home.run([
    "-c",
    config,
    "token",
    "create",
    "ci",
    "--scopes",
    "read",
  ]);
  assert.equal(again.code, 64);
  // A client with a refused token, and one whose server is down.
  const client = home.write(
    "client.cfg",
    `[default]\nbackend = http\n[backend.http]\nurl = http://127.0.0.1:1\ntimeout = 1s\n`,
  );
  for (const debug of ["0", "1"]) {
    const result = await home.run(["-c", client, "current", "x"], {
      STORMLOCK_TOKEN: token,
      STORMLOCK_DEBUG: debug,
    });
    assert.notEqual(result.code, 0);
    assert.ok(!result.stdout.includes(token) && !result.stderr.includes(token));
  }
});

test("team: GET /metrics is Prometheus text with live locks, held seconds, waiters, events and requests", async () => {
  await using team = new Team();
  const { backend, token } = await team.client("ann", ["read", "acquire"]);
  const resource = uniqueResource("metric");
  await backend.acquire(resource, "ann", 60);
  const { backend: bob } = await team.client("bob", ["acquire"]);
  // A waiter's registration, as the queue writes it.
  await bookkeeping(bob).acquire(
    `${resource}\u001fwait\u001f0000000000000001`,
    "bob",
    10, // as a waiter registers
  );
  const response = await fetch(`${team.server.url}/metrics`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 200);
  assert.match(
    response.headers.get("content-type")!,
    /^text\/plain; version=0\.0\.4/,
  );
  const text = await response.text();
  const samples = parsePrometheus(text);
  const value = (name: string, labels = "") =>
    samples.get(`${name}${labels ? `{${labels}}` : ""}`);
  assert.ok(value("stormlock_locks_live")! >= 1);
  assert.ok(
    value("stormlock_lock_held_seconds", `resource="${resource}"`)! >= 0,
  );
  assert.equal(value("stormlock_lock_waiters", `resource="${resource}"`), 1);
  assert.equal(value("stormlock_events_total", 'kind="acquired"'), 2);
  assert.ok(
    value(
      "stormlock_http_requests_total",
      'route="POST /api/locks/{resource}/acquire",status="201"',
    )! >= 2,
  );
  assert.ok(
    value(
      "stormlock_http_request_duration_seconds_count",
      'route="POST /api/locks/{resource}/acquire"',
    )! >= 2,
  );
  const unauthorised = await fetch(`${team.server.url}/metrics`);
  assert.equal(unauthorised.status, 401);
  await unauthorised.body?.cancel();
});

/** Parses the Prometheus text format strictly; returns samples by series. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  const typed = new Map<string, string>();
  assert.ok(text.endsWith("\n"));
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        assert.ok(
          ["counter", "gauge", "histogram", "summary", "untyped"].includes(
            meta[3],
          ),
          line,
        );
        assert.ok(!typed.has(meta[2]), `TYPE given twice: ${line}`);
        typed.set(meta[2], meta[3]);
      }
      continue;
    }
    const sample =
      /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+-]+|\+Inf|NaN)$/
        .exec(line);
    assert.ok(sample, `not a sample: ${JSON.stringify(line)}`);
    const family = sample[1].replace(/_(bucket|sum|count)$/, "");
    assert.ok(
      typed.has(sample[1]) || typed.has(family),
      `no TYPE before ${sample[1]}`,
    );
    samples.set(`${sample[1]}${sample[2] ?? ""}`, Number(sample[3]));
  }
  return samples;
}

test("team: on a local store, a release by another principal is recorded with by set to that principal", async () => {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-local-" });
  const config = (principal: string) =>
    parseConfig(
      `[default]\nprincipal = ${principal}\n[backend.sqlite]\npath = ${
        join(folder, "locks.db")
      }\n`,
    );
  const ann = new Stormlock(config("ann@host"), { warn() {} });
  const bob = new Stormlock(config("bob@host"), { warn() {} });
  try {
    const resource = uniqueResource();
    const lease = await (await ann.lock(resource)).acquire();
    await (await bob.lock(resource)).release(lease.id);
    const [event] = await (await ann.lock(resource)).history(1);
    assert.equal(event.principal, "ann@host");
    assert.equal(event.by?.principal, "bob@host");
    assert.match(event.by!.reason, /released by bob@host/);
    // The holder's own release stays a plain release.
    const own = await (await ann.lock(resource)).acquire();
    await (await ann.lock(resource)).release(own.id);
    const [released] = await (await ann.lock(resource)).history(1);
    assert.equal(released.kind, "released");
    assert.equal(released.by, undefined);
  } finally {
    await ann.close();
    await bob.close();
    Deno.removeSync(folder, { recursive: true });
  }
});

test("team: the command serves https with --tls-cert and --tls-key from the launcher, and the CLI's http backend works through it with ca_cert", async () => {
  const { testCertificates } = await import("./certificates.ts");
  using home = new CliHome();
  const certs = await testCertificates(home.home);
  const tokens = join(home.home, "tokens.json");
  const cert = home.write("tls/cert.pem", certs.cert);
  const key = home.write("tls/key.pem", certs.key);
  const server = home.write(
    "server.cfg",
    `[default]\nbackend = sqlite\n[serve]\ntokens = ${tokens}\ntls_cert = ${cert}\ntls_key = ${key}\n`,
  );
  const make = async (name: string, scopes: string) => {
    const made = await home.run([
      "-c",
      server,
      "token",
      "create",
      name,
      "--scopes",
      scopes,
    ]);
    assert.equal(made.code, 0, made.stderr);
    return made.stdout.trim();
  };
  const ann = await make("ann", "read,acquire");
  const bob = await make("bob", "read,acquire");
  const child = home.spawn(["-c", server, "serve", "--listen", "127.0.0.1:0"]);
  const url = (await child.stderrMatch(/serving (https:\/\/\S+) \(([^)]*)\)/))
    ?.[1];
  try {
    assert.ok(url, child.output.stderr);
    assert.match(child.output.stderr, /named tokens from .*tokens\.json, TLS/);
    const client = home.write(
      "client.cfg",
      `[default]\nbackend = http\n[backend.http]\nurl = ${url}\nca_cert = ${certs.ca}\n`,
    );
    const as = (token: string, args: string[]) =>
      home.run(["-c", client, ...args], { STORMLOCK_TOKEN: token });
    const taken = await as(ann, ["acquire", "deploy", "--reason", "ship"]);
    assert.equal(taken.code, 0, taken.stderr);
    const id = taken.stdout.trim();
    const held = await as(bob, ["acquire", "deploy"]);
    assert.equal(held.code, 2);
    assert.match(held.stderr, /held by ann/);
    const shown = await as(bob, ["current", "deploy", "--json"]);
    assert.equal(JSON.parse(shown.stdout).id, null);
    const stolen = await as(bob, ["release", "deploy", id]);
    assert.equal(stolen.code, 77, stolen.stderr);
    assert.match(stolen.stderr, /belongs to ann, not bob/);
    const released = await as(ann, ["release", "deploy", id]);
    assert.equal(released.code, 0, released.stderr);
    for (const result of [taken, held, shown, stolen, released]) {
      for (const token of [ann, bob]) {
        assert.ok(!result.stdout.includes(token));
        assert.ok(!result.stderr.includes(token));
      }
    }
  } finally {
    const { stderr } = await child.stop();
    for (const token of [ann, bob]) assert.ok(!stderr.includes(token));
  }
});

test("team: serve warns off loopback without TLS, and refuses a cert without its key", async () => {
  await using team = new Team();
  const warnings: string[] = [];
  const server = serveStatus(team.locks, {
    listen: "0.0.0.0:0",
    tokens: new TokenStore(team.tokens),
    onWarn: (message) => warnings.push(message),
  });
  await server.shutdown();
  assert.match(warnings.join("\n"), /plain http on 0\.0\.0\.0.*TLS/);
  assert.throws(
    () =>
      serveStatus(team.locks, {
        listen: "127.0.0.1:0",
        tlsCert: "x",
      }),
    /both --tls-cert and --tls-key/,
  );
});

test("team: rate limits are per principal once authenticated, and per address for refused tokens", async () => {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-rate-" });
  const tokens = join(folder, "tokens.json");
  const locks = new Stormlock(
    parseConfig(
      `[default]\n[backend.sqlite]\npath = ${join(folder, "locks.db")}\n`,
    ),
    { warn() {} },
  );
  const server = serveStatus(locks, {
    listen: "127.0.0.1:0",
    tokens: new TokenStore(tokens),
    rate: { burst: 2, perSecond: 0.01 },
  });
  try {
    const ann = await createToken(tokens, "ann", ["read"]);
    const bob = await createToken(tokens, "bob", ["read"]);
    const get = async (token: string) => {
      const response = await fetch(`${server.url}/api/locks`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await response.body?.cancel();
      return response.status;
    };
    assert.deepEqual([await get(ann), await get(ann), await get(ann)], [
      200,
      200,
      429,
    ]);
    // Same address, another principal: its own bucket.
    assert.deepEqual([await get(bob), await get(bob)], [200, 200]);
    // Refused tokens spend the address's bucket.
    const wrong = `slk_${"0".repeat(64)}`;
    assert.deepEqual([await get(wrong), await get(wrong), await get(wrong)], [
      401,
      401,
      429,
    ]);
  } finally {
    await server.shutdown();
    await locks.close();
    Deno.removeSync(folder, { recursive: true });
  }
});

test("team: the CLI's run, --wait, renew, is-held and init work through the http backend with the same exit codes", async () => {
  await using team = new Team();
  using home = new CliHome();
  const ann = (await team.client("ann", ["read", "acquire"])).token;
  const bob = (await team.client("bob", ["read", "acquire"])).token;
  const config = home.write(
    "client.cfg",
    `[default]\nbackend = http\n[backend.http]\nurl = ${team.server.url}\n`,
  );
  const as = (token: string, args: string[]) =>
    home.run(["-c", config, ...args], { STORMLOCK_TOKEN: token });
  const init = await as(ann, ["init", "--json"]);
  assert.equal(init.code, 0, init.stderr);
  const ran = await as(ann, [
    "run",
    "job",
    "--ttl",
    "3s",
    "--",
    "sh",
    "-c",
    'sleep 2; echo "$STORMLOCK_LEASE_ID"',
  ]);
  assert.equal(ran.code, 0, ran.stderr);
  const events: { kind: string; id: string }[] = JSON.parse(
    (await as(ann, ["history", "job", "--json"])).stdout,
  );
  const kinds = events.map((event) => event.kind);
  assert.equal(kinds[0], "released");
  assert.equal(kinds.at(-1), "acquired");
  assert.ok(kinds.includes("renewed"), kinds.join());
  assert.equal(events[0].id, ran.stdout.trim());
  const taken = await as(ann, ["acquire", "gate"]);
  const id = taken.stdout.trim();
  assert.equal((await as(ann, ["is-held", "gate", id])).code, 0);
  assert.equal((await as(ann, ["renew", "gate", id, "--ttl", "1h"])).code, 0);
  assert.equal((await as(bob, ["renew", "gate", id])).code, 77);
  const waiting = as(bob, ["acquire", "gate", "--wait", "1m"]);
  // Release once bob is in the queue.
  for (let tries = 0; tries < 500; tries++) {
    const current = JSON.parse(
      (await as(ann, ["current", "gate", "--json"])).stdout,
    );
    if (current.waiting.length > 0) break;
  }
  assert.equal((await as(ann, ["release", "gate", id])).code, 0);
  const waited = await waiting;
  assert.equal(waited.code, 0, waited.stderr);
  const holder = JSON.parse(
    (await as(bob, ["current", "gate", "--json"])).stdout,
  );
  assert.equal(holder.principal, "bob");
  assert.equal(holder.id, waited.stdout.trim());
});

test("team: relative paths in [serve] are relative to the config file's folder", async () => {
  using home = new CliHome();
  const config = home.write(
    "conf/server.cfg",
    "[serve]\ntokens = tokens.json\n",
  );
  const created = await home.run([
    "-c",
    config,
    "token",
    "create",
    "ann",
    "--scopes",
    "read",
  ]);
  assert.equal(created.code, 0, created.stderr);
  assert.equal(
    readTokensFile(join(home.home, "conf", "tokens.json"))[0].name,
    "ann",
  );
});
