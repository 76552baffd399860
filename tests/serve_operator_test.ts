/**
 * `serve` and an operator's mistakes: an address that can't be listened
 * on, a token that can never match, huge headers, and one client holding
 * every event stream. Each is one clear line or one JSON error, never
 * "internal error" (exit 70). Only loopback and literal addresses are used;
 * no host name is resolved.
 */
import assert from "assert";
import { join } from "node:path";
import {
  createServeHandler,
  parseConfig,
  serveStatus,
  Stormlock,
} from "../mod.ts";
import { assertCleanExit, CliHome, repoPath, runDeno } from "./helpers.ts";

const TOKEN = "serve-operator-token-0123456789";

/** `stormlock serve ARGS` through `deno run main.ts`, in a fresh HOME. */
function serve(
  home: CliHome,
  args: string[],
  env: Record<string, string> = {},
) {
  return runDeno(
    ["run", "--quiet", "-A", repoPath("main.ts"), "serve", ...args],
    { cwd: home.cwd, clearEnv: true, env: { ...home.env, ...env } },
  );
}

Deno.test("serve: a port in use, an address the host lacks, or a bad IPv4 address is one line, exit 64", async () => {
  using home = new CliHome();
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  assertCleanExit(
    await serve(home, ["--listen", `127.0.0.1:${port}`]),
    64,
    new RegExp(
      `^stormlock: Can't listen on 127\\.0\\.0\\.1:${port}: the port is in use by another program; stop it, or pick another port`,
    ),
  );
  assertCleanExit(
    await serve(home, ["--listen", "192.0.2.1:0", "--token", TOKEN]),
    64,
    /Can't listen on 192\.0\.2\.1:0: this host has no such address; use one of its own addresses/,
  );
  assertCleanExit(
    await serve(home, ["--listen", "999.999.999.999:0", "--token", TOKEN]),
    64,
    /Bad --listen "999\.999\.999\.999:0": 999\.999\.999\.999 is not an IPv4 address/,
  );
});

Deno.test("serve: a token with whitespace, which no request could match, is refused at start", async () => {
  using home = new CliHome();
  for (const token of [` ${TOKEN}`, `${TOKEN} `, `a b${TOKEN}`, `${TOKEN}\n`]) {
    assertCleanExit(
      await serve(home, [], { STORMLOCK_SERVE_TOKEN: token }),
      64,
      /The serve token contains whitespace/,
    );
  }
});

/** A store over a fresh sqlite file, for the in-process server. */
function store(dir: string): Stormlock {
  return new Stormlock(
    parseConfig(`[backend.sqlite]\npath = ${join(dir, "locks.db")}\n`),
    { warn() {} },
  );
}

Deno.test("serve: headers over 16 KB get a JSON 431 with the strict headers", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-serve-" });
  const locks = store(dir);
  const server = serveStatus(locks, { listen: "127.0.0.1:0" });
  try {
    const response = await fetch(`${server.url}/api/locks`, {
      headers: { "x-big": "a".repeat(20_000) },
    });
    assert.equal(response.status, 431);
    assert.match(
      response.headers.get("content-security-policy") ?? "",
      /default-src 'none'/,
    );
    assert.match((await response.json()).error, /headers are over 16 KB/);
  } finally {
    await server.shutdown();
    await locks.close();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("serve: one client can hold 16 event streams, and others still get theirs", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "stormlock-serve-" });
  const locks = store(dir);
  const app = createServeHandler(locks, { pollMs: 60_000 });
  const from = (hostname: string) => ({
    remoteAddr: { transport: "tcp" as const, hostname, port: 40000 },
    completed: Promise.resolve(),
  });
  const open: Response[] = [];
  try {
    const events = () => new Request("http://127.0.0.1/api/events");
    for (let i = 0; i < 16; i++) {
      const response = await app.handler(events(), from("10.0.0.1"));
      assert.equal(response.status, 200);
      open.push(response);
    }
    const refused = await app.handler(events(), from("10.0.0.1"));
    assert.equal(refused.status, 429);
    assert.match(
      (await refused.json()).error,
      /This client has 16 live pages open/,
    );
    const other = await app.handler(events(), from("10.0.0.2"));
    assert.equal(other.status, 200);
    open.push(other);
  } finally {
    for (const response of open) await response.body?.cancel();
    app.close();
    await locks.close();
    Deno.removeSync(dir, { recursive: true });
  }
});
