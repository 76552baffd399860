/**
 * Tests of `stormlock serve`'s JSON API and headers: in-process over a
 * SQLite store shared with the CLI, and as the real command.
 */
import assert from "assert";
import { join } from "node:path";
import { CliHome, repoPath, sleep } from "./helpers.ts";
import { span } from "../lib/kit/time.ts";
import {
  BackendUnavailableError,
  parseConfig,
  Stormlock,
  UsageError,
} from "../mod.ts";
import {
  createServeHandler,
  isLoopback,
  parseListen,
  serveStatus,
} from "../lib/apps/serve/server.ts";
import type { ServeOptions, ServeStore } from "../lib/apps/serve/server.ts";

const TOKEN = "test-token-0123456789abcdef";
const PAGE_PRINCIPAL = "pager@example";

/** A fresh HOME whose CLI and whose in-process server share one database. */
class Setup implements AsyncDisposable {
  readonly home = new CliHome();
  // The CLI's default database, which the launcher may write.
  readonly db = join(
    this.home.home,
    ".local",
    "state",
    "stormlock",
    "locks.db",
  );
  readonly locks: Stormlock;
  server?: ReturnType<typeof serveStatus>;

  constructor() {
    this.locks = new Stormlock(
      parseConfig(
        `[default]\nprincipal = ${PAGE_PRINCIPAL}\n[backend.sqlite]\npath = ${this.db}\n`,
      ),
      { warn() {} },
    );
  }

  /** Starts the server on a free loopback port. */
  start(options: ServeOptions = {}, store: ServeStore = this.locks): string {
    this.server = serveStatus(store, { listen: "127.0.0.1:0", ...options });
    return this.server.url;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server?.shutdown();
    await this.locks.close();
    this.home[Symbol.dispose]();
  }
}

async function getJson(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: unknown; headers: Headers }> {
  const response = await fetch(url, init);
  const text = await response.text();
  return {
    status: response.status,
    headers: response.headers,
    body: text ? JSON.parse(text) : undefined,
  };
}

function bearer(token = TOKEN): RequestInit {
  return { headers: { authorization: `Bearer ${token}` } };
}

/** Reads server-sent events from a response until `done` says stop. */
async function readEvents(
  response: Response,
  done: (event: string, data: unknown) => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const reader = response.body!.pipeThrough(new TextDecoderStream())
    .getReader();
  const timer = setTimeout(() => reader.cancel("timed out"), timeoutMs);
  let buffer = "";
  try {
    for (;;) {
      const { value, done: ended } = await reader.read();
      assert.ok(!ended, "the event stream ended before the expected event");
      buffer += value;
      let at;
      while ((at = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, at);
        buffer = buffer.slice(at + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event && data && await done(event, JSON.parse(data))) return;
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

Deno.test("serve: parseListen and isLoopback read addresses strictly", () => {
  assert.deepEqual(parseListen("127.0.0.1:7878"), {
    hostname: "127.0.0.1",
    port: 7878,
  });
  assert.deepEqual(parseListen("[::1]:80"), { hostname: "::1", port: 80 });
  assert.deepEqual(parseListen("9000"), { hostname: "127.0.0.1", port: 9000 });
  for (const bad of ["", "host", "1.2.3.4:", ":80", "a:99999", "a b:1"]) {
    assert.throws(() => parseListen(bad), UsageError, bad);
  }
  for (const host of ["127.0.0.1", "127.9.9.9", "localhost", "::1", "[::1]"]) {
    assert.ok(isLoopback(host), host);
  }
  for (const host of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) {
    assert.ok(!isLoopback(host), host);
  }
});

Deno.test("serve: the page, its assets and /healthz come with strict headers", async () => {
  await using setup = new Setup();
  const url = setup.start();
  for (
    const [path, type] of [
      ["/", "text/html"],
      ["/app.js", "text/javascript"],
      ["/app.css", "text/css"],
      ["/healthz", "application/json"],
    ]
  ) {
    const response = await fetch(url + path);
    const text = await response.text();
    assert.equal(response.status, 200, path);
    assert.ok(response.headers.get("content-type")!.startsWith(type), path);
    const csp = response.headers.get("content-security-policy")!;
    for (
      const part of [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
      ]
    ) {
      assert.ok(csp.includes(part), `${path}: ${part}`);
    }
    assert.equal(response.headers.get("x-content-type-options"), "nosniff");
    assert.equal(response.headers.get("referrer-policy"), "no-referrer");
    if (path === "/") {
      assert.doesNotMatch(text, /<script>|<style>| style=| on\w+=/);
      assert.match(text, /<script src="\/app.js" defer><\/script>/);
    }
    if (path === "/app.js") assert.ok(!text.includes("innerHTML"));
    if (path === "/healthz") assert.deepEqual(JSON.parse(text), { ok: true });
  }
});

Deno.test("serve: the page is its own files, and the script says spans with the CLI's own rule", async () => {
  await using setup = new Setup();
  const url = setup.start();
  const file = (name: string) =>
    Deno.readTextFileSync(repoPath("lib", "apps", "serve", "page", name));
  assert.equal(await (await fetch(`${url}/`)).text(), file("index.html"));
  assert.equal(await (await fetch(`${url}/app.css`)).text(), file("app.css"));
  const script = await (await fetch(`${url}/app.js`)).text();
  const source = file("app.js");
  assert.match(source, /was not inlined/);
  assert.doesNotMatch(script, /was not inlined/);
  assert.ok(script.includes(span.toString()), "the CLI's span is inlined");
  // Only the stand-in differs: the rest is sent as it is.
  const [before, after] = source.split(/ *function span\(ms\) \{\n.*\n *\}/);
  assert.ok(script.startsWith(before) && script.endsWith(after));
});

Deno.test("serve: /api/locks and /api/locks/{resource} match the CLI's --json", async () => {
  await using setup = new Setup();
  const url = setup.start();
  const { home } = setup;
  assert.deepEqual((await getJson(`${url}/api/locks`)).body, []);
  const names = ["deploy/prod", "ünïcödé ✓", "plain"];
  for (const name of names) {
    const acquired = await home.run(["acquire", "-r", `for ${name}`, name]);
    assert.equal(acquired.code, 0, acquired.stderr);
  }
  // One lock with an open hand-over request, which both must show.
  const asked = await home.run(["request", "plain", "--reason", "hotfix"]);
  assert.equal(asked.code, 0, asked.stderr);
  const list = await getJson(`${url}/api/locks`);
  assert.equal(list.status, 200);
  assert.deepEqual(
    list.body,
    JSON.parse((await home.run(["list", "--json"])).stdout),
  );
  const prefixed = await getJson(`${url}/api/locks?prefix=deploy%2F`);
  assert.deepEqual(
    (prefixed.body as { resource: string }[]).map((l) => l.resource),
    ["deploy/prod"],
  );
  for (const name of names) {
    const one = await getJson(`${url}/api/locks/${encodeURIComponent(name)}`);
    assert.equal(one.status, 200, name);
    // The lease's fields and its hand-over request are the CLI's;
    // `current` adds the waiters.
    const { waiting: _, ...cli } = JSON.parse(
      (await home.run(["current", "--json", name])).stdout,
    );
    assert.deepEqual(one.body, cli);
    if (name === "plain") {
      assert.equal(
        (one.body as { request: { reason: string } }).request.reason,
        "hotfix",
      );
    }
  }
  const free = await getJson(`${url}/api/locks/free%2Fone`);
  assert.equal(free.status, 404);
  assert.deepEqual(free.body, {
    error: 'No current lease on "free/one"',
    resource: "free/one",
  });
});

Deno.test("serve: /api/locks/{resource}/history matches the CLI and honours ?limit", async () => {
  await using setup = new Setup();
  const url = setup.start();
  const { home } = setup;
  const id = (await home.run(["acquire", "a/b"])).stdout.trim();
  await home.run(["renew", "-r", "new reason", "a/b", id]);
  await home.run(["release", "a/b", id]);
  const all = await getJson(`${url}/api/locks/a%2Fb/history`);
  assert.equal(all.status, 200);
  assert.deepEqual(
    all.body,
    JSON.parse((await home.run(["history", "--json", "a/b"])).stdout),
  );
  const kinds = (all.body as { kind: string }[]).map((event) => event.kind);
  assert.equal(kinds[0], "released");
  assert.equal(kinds.at(-1), "acquired");
  const one = await getJson(`${url}/api/locks/a%2Fb/history?limit=1`);
  assert.equal((one.body as unknown[]).length, 1);
  for (const bad of ["0", "x", "1.5", "9999999"]) {
    const refused = await getJson(
      `${url}/api/locks/a%2Fb/history?limit=${bad}`,
    );
    assert.equal(refused.status, 400, bad);
    assert.match((refused.body as { error: string }).error, /Bad limit/);
  }
});

Deno.test("serve: bad paths get clear 4xx JSON errors", async () => {
  await using setup = new Setup();
  const url = setup.start();
  const cases: [string, RequestInit, number, RegExp][] = [
    ["/nope", {}, 404, /No such page/],
    ["/api/nope", {}, 404, /No such API path/],
    ["/api/locks/a/b/c", {}, 404, /No such API path/],
    ["/api/locks/a/unknown", {}, 404, /No such API path/],
    ["/api/locks/%00", {}, 400, /U\+0000, which Stormlock reserves/],
    ["/api/locks/a%00b/history", {}, 400, /U\+0000/],
    ["/api/locks/deploy%1Fwait%1F0000000000000001", {}, 400, /U\+001F/],
    ["/api/locks/a%1Fb/history", {}, 400, /U\+001F/],
    ["/api/locks/a%0Ab", {}, 400, /U\+000A/],
    ["/api/locks/%E0%A4%A", {}, 400, /percent-encoded UTF-8/],
    ["/api/locks/%ff", {}, 400, /percent-encoded UTF-8/],
    ["/api/locks/" + "x".repeat(5000), {}, 414, /over 4096 bytes/],
    ["/api/locks", { method: "POST" }, 405, /POST is not allowed/],
    ["/api/locks/x", { method: "DELETE" }, 405, /DELETE is not allowed/],
    ["/api/locks/x/break", {}, 405, /GET is not allowed here; use POST/],
    ["/api/events", { method: "POST" }, 405, /not allowed/],
    ["/", { method: "PUT", body: "x" }, 405, /not allowed/],
  ];
  for (const [path, init, status, pattern] of cases) {
    const result = await getJson(url + path, init);
    assert.equal(result.status, status, path);
    assert.match((result.body as { error: string }).error, pattern, path);
    assert.ok(
      result.headers.get("content-type")!.startsWith("application/json"),
    );
    if (status === 405) assert.ok(result.headers.get("allow"), path);
  }
});

Deno.test("serve: with a token every /api call needs it, the shell and /healthz do not", async () => {
  await using setup = new Setup();
  const url = setup.start({ token: TOKEN });
  const shell = await fetch(`${url}/`);
  assert.equal(shell.status, 200);
  assert.match(await shell.text(), /<!doctype html>/);
  assert.equal((await getJson(`${url}/healthz`)).status, 200);
  for (
    const path of [
      "/api/locks",
      "/api/locks/x",
      "/api/locks/x/history",
      "/api/events",
      "/api/info",
    ]
  ) {
    const missing = await getJson(url + path);
    assert.equal(missing.status, 401, path);
    assert.match((missing.body as { error: string }).error, /needs a token/);
    assert.match(missing.headers.get("www-authenticate")!, /^Bearer/);
    const wrong = await getJson(url + path, bearer("x".repeat(TOKEN.length)));
    assert.equal(wrong.status, 401, path);
    assert.match((wrong.body as { error: string }).error, /token was refused/);
  }
  assert.equal((await getJson(`${url}/api/locks`, bearer())).status, 200);
  // A cookie is never a credential.
  const cookie = await getJson(`${url}/api/locks`, {
    headers: { cookie: `token=${TOKEN}` },
  });
  assert.equal(cookie.status, 401);
  const info = await getJson(`${url}/api/info`, bearer());
  assert.deepEqual(
    { ...(info.body as object), version: "" },
    {
      version: "",
      allowBreak: false,
      token: true,
      principal: null,
      scopes: ["read", "acquire"],
      resources: null,
    },
  );
});

Deno.test("serve: without a token only loopback Host names and same-origin requests are answered", async () => {
  await using setup = new Setup();
  const app = createServeHandler(setup.locks);
  try {
    const rebound = await app.handler(
      new Request("http://attacker.example:7878/api/locks"),
    );
    assert.equal(rebound.status, 403);
    assert.match((await rebound.json()).error, /not this server/);
    const crossOrigin = await app.handler(
      new Request("http://127.0.0.1:7878/api/locks", {
        headers: { origin: "https://attacker.example" },
      }),
    );
    assert.equal(crossOrigin.status, 403);
    await crossOrigin.body?.cancel();
    const local = await app.handler(
      new Request("http://localhost:7878/api/locks"),
    );
    assert.equal(local.status, 200);
    await local.body?.cancel();
  } finally {
    app.close();
  }
});

Deno.test("serve: options that would expose the store are refused", async () => {
  await using setup = new Setup();
  assert.throws(
    () => serveStatus(setup.locks, { listen: "0.0.0.0:0" }),
    /not loopback, needs a token/,
  );
  assert.throws(
    () => createServeHandler(setup.locks, { allowBreak: true }),
    /--allow-break needs a token/,
  );
  assert.throws(
    () => createServeHandler(setup.locks, { token: "short" }),
    /at least 16/,
  );
});

Deno.test("serve: a break is refused unless --allow-break and the token are both there", async () => {
  await using setup = new Setup();
  const id = (await setup.home.run(["acquire", "db"])).stdout.trim();
  const body = JSON.stringify({ id, reason: "job died" });
  const post = (token?: string): RequestInit => ({
    method: "POST",
    body,
    headers: {
      "content-type": "application/json",
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
  });
  const readOnly = setup.start({ token: TOKEN });
  const off = await getJson(`${readOnly}/api/locks/db/break`, post(TOKEN));
  assert.equal(off.status, 403);
  assert.match((off.body as { error: string }).error, /--allow-break/);
  await setup.server!.shutdown();

  const url = setup.start({ token: TOKEN, allowBreak: true });
  assert.equal(
    (await getJson(`${url}/api/locks/db/break`, post())).status,
    401,
  );
  assert.equal(
    (await getJson(`${url}/api/locks/db/break`, post("wrong-token-0123456789")))
      .status,
    401,
  );
  assert.equal(
    (await setup.home.run(["is-held", "db", id])).code,
    0,
    "still held",
  );
});

Deno.test("serve: a break with the token is recorded, and the holder's next renew exits 3 naming the page", async () => {
  await using setup = new Setup();
  const { home } = setup;
  const id = (await home.run(["acquire", "team/db"])).stdout.trim();
  const url = setup.start({ token: TOKEN, allowBreak: true });
  const at = `${url}/api/locks/team%2Fdb/break`;
  const post = (body: string, type = "application/json"): RequestInit => ({
    method: "POST",
    body,
    headers: { "content-type": type, authorization: `Bearer ${TOKEN}` },
  });
  const bad: [RequestInit, number, RegExp][] = [
    [post("{", "text/plain"), 415, /Content-Type: application\/json/],
    [post("{"), 400, /not valid JSON/],
    [post("[]"), 400, /JSON object/],
    [post(JSON.stringify({ id })), 400, /"reason"/],
    [post(JSON.stringify({ id: "nope", reason: "x" })), 400, /lease id/i],
    [post(JSON.stringify({ id, reason: "  " })), 400, /reason/],
    [post(JSON.stringify({ id, reason: "x".repeat(20_000) })), 413, /16384/],
    [
      post(
        JSON.stringify({ id: "0123456789abcdef0123456789abcdef", reason: "x" }),
      ),
      409,
      /does not hold/,
    ],
  ];
  for (const [init, status, pattern] of bad) {
    const result = await getJson(at, init);
    assert.equal(result.status, status, String(init.body).slice(0, 40));
    assert.match((result.body as { error: string }).error, pattern);
  }
  assert.equal((await home.run(["is-held", "team/db", id])).code, 0);

  const broke = await getJson(
    at,
    post(JSON.stringify({ id, reason: "job died" })),
  );
  assert.equal(broke.status, 200);
  assert.equal((broke.body as { id: string }).id, id);
  assert.equal((broke.body as { resource: string }).resource, "team/db");

  const renew = await home.run(["renew", "team/db", id]);
  assert.equal(renew.code, 3, renew.stderr);
  assert.match(
    renew.stderr,
    /was broken by pager@example via serve at .*: job died/,
  );
  const history = await getJson(`${url}/api/locks/team%2Fdb/history`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const [event] = history.body as {
    kind: string;
    by: { principal: string; reason: string };
  }[];
  assert.equal(event.kind, "broken");
  assert.equal(event.by.principal, `${PAGE_PRINCIPAL} via serve`);
  assert.equal(event.by.reason, "job died");
});

Deno.test("serve: each client is rate limited with a 429 JSON answer", async () => {
  await using setup = new Setup();
  const url = setup.start({ rate: { burst: 3, perSecond: 0.5 } });
  for (let i = 0; i < 3; i++) {
    assert.equal((await getJson(`${url}/healthz`)).status, 200);
  }
  const limited = await getJson(`${url}/api/locks`);
  assert.equal(limited.status, 429);
  assert.match((limited.body as { error: string }).error, /Too many requests/);
  assert.equal(limited.headers.get("retry-after"), "2");
});

Deno.test("serve: /api/events pushes the set of locks when it changes", async () => {
  await using setup = new Setup();
  const url = setup.start({ pollMs: 100 });
  const { home } = setup;
  const response = await fetch(`${url}/api/events`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type")!, /^text\/event-stream/);
  let id = "";
  let step = 0;
  await readEvents(response, async (event, data) => {
    assert.equal(event, "locks");
    const names = (data as { resource: string }[]).map((l) => l.resource);
    if (step === 0) {
      assert.deepEqual(names, []);
      id = (await home.run(["acquire", "live/one"])).stdout.trim();
    } else if (step === 1) {
      assert.deepEqual(names, ["live/one"]);
      await home.run(["release", "live/one", id]);
    } else {
      assert.deepEqual(names, []);
      return true;
    }
    step++;
    return false;
  });
});

Deno.test("serve: a store that is down gets 503 JSON and an event, and recovers", async () => {
  await using setup = new Setup();
  let down = false;
  const failing = () =>
    Promise.reject(new BackendUnavailableError("Redis at 10.0.0.9 is down"));
  const store: ServeStore = {
    list: (prefix) => down ? failing() : setup.locks.list(prefix),
    lock: (resource) => down ? failing() : setup.locks.lock(resource),
  };
  const url = setup.start({ pollMs: 100 }, store);
  down = true;
  for (const path of ["/api/locks", "/api/locks/x", "/api/locks/x/history"]) {
    const result = await getJson(url + path);
    assert.equal(result.status, 503, path);
    assert.deepEqual(result.body, {
      error: "Redis at 10.0.0.9 is down",
      code: "BACKEND_UNAVAILABLE",
    });
  }
  assert.equal((await getJson(`${url}/healthz`)).status, 200);
  const response = await fetch(`${url}/api/events`);
  const seen: string[] = [];
  await readEvents(response, (event, data) => {
    seen.push(event);
    if (event === "unavailable") {
      assert.deepEqual(data, { error: "Redis at 10.0.0.9 is down" });
      down = false;
      return false;
    }
    return true;
  });
  assert.deepEqual(seen, ["unavailable", "locks"]);
  assert.equal((await getJson(`${url}/api/locks`)).status, 200);
});

/** Starts `stormlock serve` from the launcher and waits for its URL. */
async function spawnServe(
  home: CliHome,
  args: string[],
  env: Record<string, string> = {},
) {
  const child = home.spawn(["serve", ...args], env);
  const url = (await child.stderrMatch(/serving (http:\/\/\S+)/))?.[1];
  return { url, stop: () => child.stop() };
}

Deno.test("serve: the command refuses unsafe or bad options with exit 64", async () => {
  using home = new CliHome();
  const cases: [string[], Record<string, string>, RegExp][] = [
    [["--listen", "0.0.0.0:0"], {}, /not loopback, needs a token/],
    [["--allow-break"], {}, /--allow-break needs a token/],
    [["--token", "short"], {}, /at least 16/],
    [["--listen", "nowhere"], {}, /Bad --listen "nowhere"/],
    [["extra"], {}, /"serve" takes no arguments, but got 1 argument/],
  ];
  for (const [args, env, pattern] of cases) {
    const result = await home.run(["serve", ...args], env);
    assert.equal(result.code, 64, `${args}: ${result.stderr}`);
    assert.equal(result.stdout, "");
    assert.match(result.stderr, /^stormlock: /);
    assert.match(result.stderr, pattern);
    assert.equal(result.stderr.trimEnd().split("\n").length, 1);
  }
});

Deno.test("serve: the command serves /healthz, takes the token from the environment and stops on SIGTERM", async () => {
  using home = new CliHome();
  const server = await spawnServe(home, ["--listen", "127.0.0.1:0"], {
    STORMLOCK_SERVE_TOKEN: TOKEN,
  });
  try {
    assert.ok(server.url, "no URL on stderr");
    assert.deepEqual((await getJson(`${server.url}/healthz`)).body, {
      ok: true,
    });
    assert.equal((await getJson(`${server.url}/api/locks`)).status, 401);
    assert.equal(
      (await getJson(`${server.url}/api/locks`, bearer())).status,
      200,
    );
    // An open event stream does not keep the server from stopping.
    const events = await fetch(`${server.url}/api/events`, bearer());
    assert.equal(events.status, 200);
    await sleep(200);
    const ended = await server.stop();
    await events.body?.cancel().catch(() => {});
    assert.equal(ended.code, 0, ended.stderr);
    assert.equal(ended.stdout, "");
    assert.match(ended.stderr, /shared token: read, acquire\)/);
    assert.ok(!ended.stderr.includes(TOKEN), "the token leaked");
  } finally {
    await server.stop();
  }
});
