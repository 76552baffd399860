/**
 * Notifications end to end on real stores with loopback receivers: event
 * ids and shapes, signed JSON and Slack hooks, retries, a receiver that
 * never answers, expiring and expired, the dispatcher's one-at-a-time
 * lease and take-over, hand-over requests, and secrets kept out of output.
 */
import assert from "assert";
import { createHmac } from "node:crypto";
import { join } from "node:path";
import { openBackend } from "../mod.ts";
import type { Backend } from "../mod.ts";
import { Lock } from "../lib/composition/lock.ts";
import { parseConfig, resolveLockSettings } from "../lib/composition/config.ts";
import {
  type Hook,
  HookDelivery,
  parseHooks,
} from "../lib/apps/notify/hooks.ts";
import { watchEvents } from "../lib/composition/watch.ts";
import { startDispatcher } from "../lib/apps/notify/dispatch.ts";
import {
  backendTest,
  CliHome,
  repoPath,
  silentServer,
  sleep,
  uniqueResource,
} from "./helpers.ts";

const test = backendTest("notify");

/** A loopback HTTP receiver that records what it is sent. */
function receiver(
  answer: (count: number) => number = () => 200,
) {
  const received: { headers: Headers; body: string }[] = [];
  let count = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (request) => {
      const body = await request.text();
      const status = answer(++count);
      if (status === 200) received.push({ headers: request.headers, body });
      return new Response(null, { status });
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  return {
    url: `http://127.0.0.1:${port}/hook/tok-${crypto.randomUUID()}`,
    received,
    get attempts() {
      return count;
    },
    events: () => received.map((r) => JSON.parse(r.body)),
    close: () => server.shutdown(),
  };
}

async function until(check: () => boolean, what: string, tries = 400) {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A long-running CLI command in `home`, its output read as it comes. */
function spawnCli(home: CliHome, args: string[]) {
  const child = home.spawn(args);
  return {
    output: child.output,
    /** Waits for the watch's first look. */
    ready: () =>
      until(() => /watching/i.test(child.output.stderr), "watch to start"),
    /** Sends `signal` and waits for the end; returns the exit code. */
    stop: async (signal: Deno.Signal = "SIGTERM") =>
      (await child.stop(signal)).code,
  };
}

function tempDb(): string {
  return join(Deno.makeTempDirSync({ prefix: "stormlock-notify-" }), "l.db");
}

async function sqlite(path: string): Promise<Backend> {
  return await openBackend({ path }, {
    name: "sqlite",
    section: "backend.sqlite",
  });
}

function lockOf(backend: Backend, resource: string, principal: string): Lock {
  const settings = resolveLockSettings(
    parseConfig(`[default]\nprincipal = ${principal}\n`),
    resource,
  );
  return new Lock(backend, settings);
}

function jsonHook(url: string, extra: Partial<Hook> = {}): Hook {
  return {
    name: "test",
    events: [
      "acquired",
      "renewed",
      "reason-changed",
      "released",
      "broken",
      "expired",
      "expiring",
      "waiting",
      "requested",
    ],
    resources: [],
    url,
    format: "json",
    retryForMs: 60_000,
    timeoutMs: 2000,
    ...extra,
  };
}

const EVENT_KEYS = [
  "event_id",
  "kind",
  "at",
  "backend",
  "resource",
  "lease",
  "by",
];
const LEASE_KEYS = [
  "id",
  "principal",
  "host",
  "reason",
  "link",
  "fence",
  "created",
  "expires",
];

test("a signed JSON hook gets every kind, each with a valid HMAC and the documented shape", async () => {
  const secret = `s3cret-${crypto.randomUUID()}`;
  const hook = receiver();
  const backend = await sqlite(tempDb());
  const delivery = new HookDelivery([jsonHook(hook.url, { secret })]);
  const stop = new AbortController();
  const resource = uniqueResource("shapes");
  const watching = watchEvents([{ name: "sqlite", backend }], {
    prefix: resource,
    expiringLeadMs: 1500,
    pollMs: 100,
    signal: stop.signal,
    onEvent: (event) => delivery.send(event),
  });
  try {
    await sleep(300);
    const ann = lockOf(backend, resource, "ann@a");
    const bob = lockOf(backend, resource, "bob@b");
    const first = await ann.acquire(3, {
      reason: "deploy",
      link: "https://ci.example/1",
    });
    await ann.renew(first.id, 3);
    await ann.renew(first.id, 3, { reason: "deploy 2" });
    await bob.request("hotfix please");
    const waiter = bob.acquire(3, { wait: "20s" });
    await until(
      () => hook.events().some((e) => e.kind === "waiting"),
      "waiting",
    );
    await ann.release(first.id);
    const second = await waiter;
    await ann.breakLease(second.id, "stuck");
    await ann.acquire(3);
    // Nobody acquires again: the watcher must see it expire.
    await until(
      () => hook.events().some((e) => e.kind === "expired"),
      "expired",
    );
    const kinds = new Set(hook.events().map((e) => e.kind));
    for (
      const kind of [
        "acquired",
        "renewed",
        "reason-changed",
        "released",
        "broken",
        "expired",
        "expiring",
        "waiting",
        "requested",
      ]
    ) {
      assert.ok(kinds.has(kind), `no ${kind} event: ${[...kinds]}`);
    }
    for (const { headers, body } of hook.received) {
      const expected = `sha256=${
        createHmac("sha256", secret).update(body).digest("hex")
      }`;
      assert.equal(headers.get("x-stormlock-signature-256"), expected);
      const event = JSON.parse(body);
      assert.deepEqual(Object.keys(event), EVENT_KEYS);
      assert.deepEqual(Object.keys(event.lease), LEASE_KEYS);
      assert.equal(headers.get("x-stormlock-event-id"), event.event_id);
      assert.equal(headers.get("x-stormlock-event"), event.kind);
      assert.match(event.event_id, /^\d{13}-[0-9a-f]{20}$/);
      assert.equal(event.resource, resource);
      assert.equal(event.backend, "sqlite");
    }
    const byKind = (kind: string) => hook.events().find((e) => e.kind === kind);
    assert.deepEqual(byKind("broken").by, {
      principal: "ann@a",
      host: byKind("broken").by.host,
      reason: "stuck",
    });
    assert.equal(byKind("requested").by.principal, "bob@b");
    assert.equal(byKind("requested").by.reason, "hotfix please");
    assert.equal(byKind("requested").lease.principal, "ann@a");
    assert.equal(byKind("waiting").by.principal, "bob@b");
    assert.equal(byKind("acquired").lease.link, "https://ci.example/1");
    // Each event once, and the ids are unique.
    const ids = hook.events().map((e) => e.event_id);
    assert.equal(new Set(ids).size, ids.length);
    // The expiry was recorded in history, with nobody acquiring.
    const history = await backend.history(resource, 20);
    assert.equal(history[0].kind, "expired");
  } finally {
    stop.abort();
    await watching;
    await delivery.close();
    await hook.close();
    await backend.close();
  }
});

test("a receiver that answers 500 twice then 200 gets the event, once", async () => {
  const hook = receiver((count) => count <= 2 ? 500 : 200);
  const warnings: string[] = [];
  const delivery = new HookDelivery([jsonHook(hook.url)], {
    firstRetryMs: 100,
    warn: (message) => warnings.push(message),
  });
  const backend = await sqlite(tempDb());
  try {
    const lock = lockOf(backend, uniqueResource("retry"), "ann@a");
    const lease = await lock.acquire(60);
    const [event] = await lock.history(1);
    delivery.send({
      eventId: "0000000000001-00000000000000000000",
      kind: event.kind,
      at: event.at,
      backend: "sqlite",
      lease,
    });
    await until(() => hook.received.length === 1, "the third attempt");
    assert.equal(hook.attempts, 3);
    await sleep(300);
    assert.equal(hook.received.length, 1);
    assert.ok(warnings.some((w) => /answered HTTP 500; retrying/.test(w)));
    assert.ok(warnings.every((w) => !w.includes(hook.url)));
  } finally {
    await delivery.close();
    await hook.close();
    await backend.close();
  }
});

test("a receiver that never answers does not stop an acquire", async () => {
  const silent = silentServer();
  const path = tempDb();
  const backend = await sqlite(path);
  const config = parseConfig(
    `[default]\nprincipal = ann@a\n[backend.sqlite]\npath = ${path}\n[hook.dead]\nurl = http://127.0.0.1:${silent.port}/x\ntimeout = 30s\n`,
  );
  const source = { config, backend: () => Promise.resolve(backend) };
  const dispatcher = startDispatcher(source, {
    principal: "d1",
    pollMs: 100,
  });
  const resource = uniqueResource("dead");
  try {
    await until(() => dispatcher.active, "the dispatcher to start");
    await sleep(300);
    const lock = lockOf(backend, resource, "ann@a");
    const first = await lock.acquire(60);
    await sleep(500); // its delivery is now stuck on the silent receiver
    await lock.release(first.id);
    const second = await lock.acquire(60);
    assert.notEqual(second.id, first.id);
    await lock.release(second.id);
    assert.ok(silent.accepted >= 1, "the hook was tried");
  } finally {
    await dispatcher.stop();
    await silent[Symbol.asyncDispose]();
    await backend.close();
  }
});

test("expiring arrives before the TTL ends, and expired is recorded and delivered with nobody acquiring", async () => {
  const hook = receiver();
  const path = tempDb();
  const backend = await sqlite(path);
  const config = parseConfig(
    `[backend.sqlite]\npath = ${path}\n[hook.ops]\nurl = ${hook.url}\nevents = expiring, expired\n`,
  );
  const dispatcher = startDispatcher(
    { config, backend: () => Promise.resolve(backend) },
    { principal: "d1", pollMs: 100, expiringLeadMs: 2000 },
  );
  const resource = uniqueResource("ttl");
  try {
    await until(() => dispatcher.active, "the dispatcher to start");
    await sleep(300);
    const lease = await lockOf(backend, resource, "ann@a").acquire(4);
    await until(() => hook.events().length >= 2, "expiring and expired");
    const [expiring, expired] = hook.events();
    assert.equal(expiring.kind, "expiring");
    const heard = hook.received[0];
    assert.ok(heard);
    assert.ok(
      Date.parse(expiring.at) < lease.expires.getTime(),
      "expiring came before the TTL ended",
    );
    assert.equal(expired.kind, "expired");
    assert.equal(Date.parse(expired.at), lease.expires.getTime());
    const [last] = await backend.history(resource, 1);
    assert.equal(last.kind, "expired");
    assert.equal(await backend.current(resource), null);
  } finally {
    await dispatcher.stop();
    await hook.close();
    await backend.close();
  }
});

test("expire() never ends a lease renewed in time", async () => {
  const backend = await sqlite(tempDb());
  try {
    const resource = uniqueResource("renewed");
    const lease = await backend.acquire(resource, "ann@a", 1);
    await backend.renew(resource, lease.id, 60);
    await sleep(1100);
    assert.equal(await backend.expire!(resource, lease.id), false);
    assert.equal((await backend.current(resource))?.id, lease.id);
  } finally {
    await backend.close();
  }
});

test("two serve instances: one dispatcher delivers each event once; kill it and the other takes over", async () => {
  using home = new CliHome();
  const hook = receiver();
  home.write(
    ".stormlock.cfg",
    `[default]\nprincipal = ann@a\n[hook.ops]\nurl = ${hook.url}\nevents = acquired, released\n`,
  );
  const serve = (port: number) =>
    new Deno.Command("sh", {
      args: [
        repoPath("scripts", "stormlock"),
        "serve",
        "--listen",
        `127.0.0.1:${port}`,
      ],
      cwd: home.cwd,
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        DENO: Deno.execPath(),
        ...home.env,
      },
      stdout: "null",
      stderr: "piped",
    }).spawn();
  const port = () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = listener.addr as Deno.NetAddr;
    listener.close();
    return port;
  };
  const servers = [serve(port()), serve(port())];
  const logs = ["", ""];
  const readers = servers.map(async (child, i) => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) logs[i] += decoder.decode(chunk);
  });
  try {
    await until(
      () => logs.some((log) => /dispatcher active/i.test(log)),
      "an active dispatcher",
    );
    await until(
      () => logs.some((log) => /standing by/i.test(log)),
      "a standing-by dispatcher",
    );
    const active = logs.findIndex((log) => /dispatcher active/i.test(log));
    const cycle = async (resource: string) => {
      const taken = await home.run(["acquire", resource]);
      assert.equal(taken.code, 0, taken.stderr);
      await home.run(["release", resource, taken.stdout.trim()]);
    };
    const one = uniqueResource("first");
    await cycle(one);
    await until(
      () => hook.events().filter((e) => e.resource === one).length === 2,
      "the first cycle",
    ).catch((error) => {
      throw new Error(`${error.message}\n${logs.join("\n")}`);
    });
    // Long enough for the checkpoint to be written (within a second).
    await sleep(3000);
    assert.equal(hook.events().filter((e) => e.resource === one).length, 2);

    servers[active].kill("SIGKILL");
    const two = uniqueResource("second");
    await cycle(two);
    await until(
      () => /dispatcher active/i.test(logs[1 - active]),
      "the other to take over",
    );
    await until(
      () => hook.events().filter((e) => e.resource === two).length === 2,
      "the second cycle, delivered by the other",
    );
    const ids = hook.events().map((e) => e.event_id);
    assert.equal(new Set(ids).size, ids.length, "each event once");
    for (const log of logs) assert.ok(!log.includes(hook.url));
  } finally {
    for (const child of servers) {
      try {
        child.kill("SIGTERM");
      } catch { /* already dead */ }
      await child.status;
    }
    await Promise.all(readers);
    await hook.close();
  }
});

test("request: recorded naming who asks, shown by current, list and --json, told to the holder's run and renew", async () => {
  using home = new CliHome();
  const resource = uniqueResource("handover");
  const taken = await home.run(["acquire", resource, "--ttl", "1h"]);
  assert.equal(taken.code, 0, taken.stderr);
  const id = taken.stdout.trim();
  const asked = await home.run(
    ["request", resource, "--reason", "hotfix 7", "--json"],
    { USER: "bob" },
  );
  assert.equal(asked.code, 0, asked.stderr);
  assert.equal(JSON.parse(asked.stdout).request.principal.split("@")[0], "bob");
  const current = JSON.parse(
    (await home.run(["current", resource, "--json"])).stdout,
  );
  assert.equal(current.request.reason, "hotfix 7");
  const long = await home.run(["current", resource, "--long"]);
  assert.match(long.stdout, /request: +bob@\S+: hotfix 7/);
  const listed = JSON.parse((await home.run(["list", "--json"])).stdout);
  assert.equal(listed[0].request.reason, "hotfix 7");
  const table = await home.run(["list"]);
  assert.match(table.stdout, /REQUESTED BY/);
  const renewed = await home.run(["renew", resource, id]);
  assert.equal(renewed.code, 0);
  assert.match(renewed.stderr, /bob@\S+ asks you to hand over .*: hotfix 7/);
  const again = await home.run(
    ["request", resource, "--reason", "me too"],
    { USER: "carol" },
  );
  assert.equal(again.code, 2);
  assert.match(again.stderr, /Already requested: bob@\S+ asked/);
  const free = await home.run(["request", "nobody-holds", "--reason", "x"]);
  assert.equal(free.code, 1);
  await home.run(["release", resource, id]);

  // The holder's run hears of a request made while its command runs.
  const other = uniqueResource("run");
  const running = home.run([
    "run",
    other,
    "--ttl",
    "3s",
    "--",
    "sh",
    "-c",
    "sleep 4",
  ]);
  await sleep(1500);
  const req = await home.run(["request", other, "--reason", "need it"], {
    USER: "dave",
  });
  assert.equal(req.code, 0, req.stderr);
  const ran = await running;
  assert.equal(ran.code, 0, ran.stderr);
  assert.match(ran.stderr, /dave@\S+ asks you to hand over .*: need it/);
  const history = JSON.parse(
    (await home.run(["history", resource, "--json"])).stdout,
  );
  assert.match(history[0].event_id, /^\d{13}-[0-9a-f]{20}$/);
});

test("watch --hooks: slack and json hooks, retried, without the URL or secret in any output", async () => {
  using home = new CliHome();
  const secret = `topsecret-${crypto.randomUUID()}`;
  const json = receiver((count) => count === 1 ? 503 : 200);
  const slack = receiver();
  const secretFile = home.write("hook-secret", `${secret}\n`);
  home.write(
    ".stormlock.cfg",
    `[default]\nprincipal = ann@a\n[hook.audit]\nurl = ${json.url}\nsecret_file = ${secretFile}\nevents = broken\n[hook.chat]\nurl = ${slack.url}\nformat = slack\nresources = prod/*\nevents = broken, released\n`,
  );
  const watch = spawnCli(home, ["watch", "--hooks", "--json"]);
  try {
    await watch.ready();
    const resource = `prod/${uniqueResource("db")}`;
    const taken = await home.run([
      "acquire",
      resource,
      "--reason",
      "migrate <db>",
      "--link",
      "https://ci.example/run/9",
    ]);
    const broke = await home.run([
      "break",
      resource,
      taken.stdout.trim(),
      "--reason",
      "job died",
    ]);
    assert.equal(broke.code, 0, broke.stderr);
    await until(
      () => json.received.length === 1 && slack.received.length === 1,
      "both hooks",
    );
    const message = JSON.parse(slack.received[0].body);
    assert.match(message.text, /broken by \*ann@a\*: job died/);
    assert.match(message.text, new RegExp(resource.replace(/[/-]/g, ".")));
    assert.ok(Array.isArray(message.blocks));
    assert.ok(
      JSON.stringify(message.blocks).includes(
        "<https://ci.example/run/9|https://ci.example/run/9>",
      ),
    );
    assert.ok(JSON.stringify(message.blocks).includes("migrate &lt;db&gt;"));
    assert.equal(JSON.parse(json.received[0].body).kind, "broken");
  } finally {
    const code = await watch.stop();
    const text = watch.output.stdout + watch.output.stderr;
    assert.equal(code, 0, text);
    assert.ok(!text.includes(secret), "the secret leaked");
    assert.ok(!text.includes(json.url) && !text.includes(slack.url));
    assert.ok(!text.includes(new URL(json.url).pathname));
    assert.match(text, /answered HTTP 503; retrying/i);
    await json.close();
    await slack.close();
  }
});

Deno.test("notify: hook config: bad sections get one clear error naming the key, never the URL", () => {
  const bad = (text: string, pattern: RegExp) =>
    assert.throws(() => parseHooks(parseConfig(text, "/etc/s.cfg")), pattern);
  bad("[hook.a]\nurl = ftp://x/secret-token\n", /\[hook\.a\] url: not an http/);
  bad("[hook.a]\n", /give either url .* or command/);
  bad("[hook.a]\ncommand = x\nurl = https://x\n", /not both/);
  bad("[hook.a]\nurl = https://x\nevents = nope\n", /unknown event "nope"/);
  bad("[hook.a]\nurl = https://x\nformat = xml\n", /not json or slack/);
  bad(
    "[hook.a]\nurl = https://x\nsecret_file = /nonexistent/s\n",
    /secret_file: can't read/,
  );
  try {
    parseHooks(parseConfig("[hook.a]\nurl = ftp://x/secret-token\n"));
  } catch (error) {
    assert.ok(!(error as Error).message.includes("secret-token"));
  }
  const [hook] = parseHooks(
    parseConfig("[hook.a]\nurl = https://x\nresources = prod/*, db?\n"),
  );
  assert.deepEqual(hook.resources, ["prod/*", "db?"]);
  assert.ok(!hook.events.includes("renewed"));
});

test("watch --exec runs once per event with the JSON on stdin and the environment set", async () => {
  using home = new CliHome();
  const out = join(home.home, "exec.log");
  const resource = uniqueResource("exec");
  const watch = spawnCli(home, [
    "watch",
    resource,
    "--events",
    "acquired,released",
    "--exec",
    `printf '%s %s ' "$STORMLOCK_EVENT" "$STORMLOCK_RESOURCE" >> ${out}; cat >> ${out}`,
  ]);
  try {
    await watch.ready();
    const taken = await home.run(["acquire", resource]);
    await home.run(["release", resource, taken.stdout.trim()]);
    await until(() => {
      try {
        return Deno.readTextFileSync(out).split("\n").length >= 3;
      } catch {
        return false;
      }
    }, "two events");
  } finally {
    const code = await watch.stop("SIGINT");
    assert.equal(code, 0, watch.output.stderr);
    const lines = watch.output.stdout.trim().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0], /acquired/);
  }
  const logged = Deno.readTextFileSync(out).trim().split("\n");
  assert.equal(logged.length, 2);
  const [kind, name, ...json] = logged[0].split(" ");
  assert.equal(kind, "acquired");
  assert.equal(name, resource);
  assert.equal(JSON.parse(json.join(" ")).kind, "acquired");
  assert.match(logged[1], /^released /);
});

test("notification lines and the watch flags fail cleanly on bad input", async () => {
  using home = new CliHome();
  const badKind = await home.run(["watch", "--events", "nope"]);
  assert.equal(badKind.code, 64);
  assert.match(badKind.stderr, /Unknown event kind "nope"/);
  const badSince = await home.run(["watch", "--since", "yesterday-ish"]);
  assert.equal(badSince.code, 64);
  assert.match(badSince.stderr, /Bad --since/);
  const noReason = await home.run(["request", "x"]);
  assert.equal(noReason.code, 64);
  assert.match(noReason.stderr, /request needs --reason/i);
});

test("watch: a lease taken and lapsed between two passes, never seen live, is still expired and recorded", async () => {
  const backend = await sqlite(tempDb());
  const stop = new AbortController();
  const prefix = uniqueResource("between");
  const kinds: string[] = [];
  let unblock = () => {};
  const blocked = new Promise<void>((resolve) => unblock = resolve);
  let holding = false;
  const watching = watchEvents([{ name: "sqlite", backend }], {
    prefix,
    pollMs: 100,
    signal: stop.signal,
    onEvent: async (event) => {
      kinds.push(`${event.lease.resource}:${event.kind}`);
      // The watcher waits for this: no pass runs while a lease lives.
      if (event.lease.resource === `${prefix}/a`) {
        holding = true;
        await blocked;
      }
    },
  });
  try {
    await sleep(300);
    await backend.acquire(`${prefix}/a`, "ann@a", 60);
    for (let i = 0; i < 600 && !holding; i++) await sleep(50);
    assert.ok(holding, "the watcher saw the first lease");
    const short = await backend.acquire(`${prefix}/b`, "ann@a", 1);
    for (let i = 0; i < 200 && Date.now() <= short.expires.getTime(); i++) {
      await sleep(50);
    }
    unblock();
    for (let i = 0; i < 600; i++) {
      if (kinds.includes(`${prefix}/b:expired`)) break;
      await sleep(50);
    }
    assert.deepEqual(kinds.filter((kind) => kind.startsWith(`${prefix}/b`)), [
      `${prefix}/b:acquired`,
      `${prefix}/b:expired`,
    ]);
    const [recorded] = await backend.history(`${prefix}/b`, 1);
    assert.equal(recorded.kind, "expired");
    assert.equal(recorded.id, short.id);
  } finally {
    unblock();
    stop.abort();
    await watching;
    await backend.close();
  }
});
