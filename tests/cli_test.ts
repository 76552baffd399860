/** End-to-end tests of the CLI, run as a newcomer would, in a fresh HOME. */
import assert from "assert";
import { assertCleanExit, CliHome, sleep } from "./helpers.ts";
import { VERSION } from "../mod.ts";

const LEASE_LINE = /^[0-9a-f]{32}\n$/;

Deno.test("cli: a lease's whole life on the embedded default", async () => {
  using home = new CliHome();
  const acquired = await home.run(["acquire", "deploy-prod"]);
  assert.equal(acquired.code, 0, acquired.stderr);
  assert.match(acquired.stdout, LEASE_LINE);
  assert.equal(acquired.stderr, "");
  const id = acquired.stdout.trim();

  const current = await home.run(["current", "deploy-prod"]);
  assert.equal(current.code, 0);
  const [principal, created, leaseId] = current.stdout.trimEnd().split("\t");
  assert.match(principal, /^tester@/);
  assert.match(created, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/);
  assert.ok(Math.abs(Date.parse(created) - Date.now()) < 60_000);
  assert.equal(leaseId, id);

  const idOnly = await home.run(["current", "--id-only", "deploy-prod"]);
  assert.equal(idOnly.stdout, `${id}\n`);

  assert.equal((await home.run(["is-held", "deploy-prod", id])).code, 0);
  const renewed = await home.run(["renew", "--ttl", "2h", "deploy-prod", id]);
  assert.equal(renewed.code, 0, renewed.stderr);
  const json = JSON.parse(
    (await home.run(["current", "--json", "deploy-prod"])).stdout,
  );
  const left = Date.parse(json.expires) - Date.now();
  assert.ok(left > 7000_000 && left <= 7200_000, `expires in ${left} ms`);

  const released = await home.run(["release", "deploy-prod", id]);
  assert.equal(released.code, 0, released.stderr);
  assert.equal(released.stdout, "");
  assert.ok(Deno.statSync(`${home.home}/.local/state/stormlock/locks.db`));
});

Deno.test("cli: a held lock exits 2 with an empty stdout and the holder on stderr", async () => {
  using home = new CliHome();
  const first = await home.run(["acquire", "db-patch"]);
  const refused = await home.run(["acquire", "db-patch"], { USER: "bob" });
  assertCleanExit(
    refused,
    2,
    /"db-patch" is held by tester@\S+ since .* until /,
  );
  // The holder's lease id must never reach stdout or stderr.
  assert.ok(!refused.stderr.includes(first.stdout.trim()));
});

Deno.test("cli: negative answers exit 1, stale leases exit 3", async () => {
  using home = new CliHome();
  const free = await home.run(["current", "free"]);
  assertCleanExit(free, 1, /No current lease on "free"/);
  const stranger = "0123456789abcdef0123456789abcdef";
  assert.equal((await home.run(["is-held", "free", stranger])).code, 1);

  const id = (await home.run(["acquire", "r"])).stdout.trim();
  assertCleanExit(
    await home.run(["release", "r", stranger]),
    3,
    /does not hold "r"/,
  );
  assertCleanExit(
    await home.run(["renew", "r", stranger]),
    3,
    /does not hold/,
  );
  assert.equal((await home.run(["is-held", "r", id])).code, 0, "still held");
  assert.equal((await home.run(["release", "r", id])).code, 0);
  assertCleanExit(await home.run(["release", "r", id]), 3, /does not hold/);
  assertCleanExit(await home.run(["renew", "r", id]), 3, /does not hold/);
  assert.equal((await home.run(["is-held", "r", id])).code, 1);
});

Deno.test("cli: a 1-second TTL really expires", async () => {
  using home = new CliHome();
  const taken = JSON.parse(
    (await home.run(["acquire", "--ttl", "1s", "--json", "short"])).stdout,
  );
  const id = taken.id;
  const expires = Date.parse(taken.expires);
  const held = await home.run(["is-held", "short", id]);
  // On a loaded machine the CLI may start after the second is over: only
  // an answer that came back before the expiry must say held.
  if (Date.now() < expires) assert.equal(held.code, 0);
  await sleep(Math.max(0, expires - Date.now()) + 500);
  assert.equal((await home.run(["is-held", "short", id])).code, 1);
  assertCleanExit(await home.run(["renew", "short", id]), 3, /expired/);
  const next = await home.run(["acquire", "short"], { USER: "bob" });
  assert.equal(next.code, 0);
  assert.notEqual(next.stdout.trim(), id);
});

Deno.test("cli: bad input gets one line on stderr and a usage or config exit", async () => {
  using home = new CliHome();
  const id = "0123456789abcdef0123456789abcdef";
  assertCleanExit(
    await home.run(["acquire", "--ttl", "0s", "r"]),
    64,
    /Bad TTL "0s"/,
  );
  assertCleanExit(
    await home.run(["acquire", "-t", "1 hr", "r"]),
    64,
    /"hr" is not a unit/,
  );
  assertCleanExit(
    await home.run(["acquire", "-t", "400 days", "r"]),
    64,
    /at most 365 days/,
  );
  assertCleanExit(
    await home.run(["renew", "--ttl=-1m", "r", id]),
    64,
    /it is negative/,
  );
  assertCleanExit(
    await home.run(["renew", "--ttl", "-1m", "r", id]),
    64,
    /--ttl needs a value; write --ttl=VALUE for a value that starts with "-"/,
  );
  assertCleanExit(
    await home.run(["release", "r", "not-a-lease"]),
    64,
    /Malformed lease id "not-a-lease"/,
  );
  assertCleanExit(
    await home.run(["is-held", "r", "'; DROP TABLE x; --"]),
    64,
    /Malformed lease id/,
  );
  assertCleanExit(
    await home.run(["frobnicate", "r"]),
    64,
    /Unknown command "frobnicate"/,
  );
  assertCleanExit(await home.run(["acquire"]), 64, /"acquire" takes RESOURCE/);
  assertCleanExit(
    await home.run(["release", "r"]),
    64,
    /usage: stormlock .*release/,
  );
  assertCleanExit(await home.run(["acquire", "--bogus", "r"]), 64, /bogus/);
  assertCleanExit(
    await home.run(["release", "--ttl", "1h", "r", id]),
    64,
    /"release" takes no --ttl/,
  );
  assertCleanExit(
    await home.run(["acquire", "--id-only", "r"]),
    64,
    /"acquire" takes no --id-only/,
  );
  assertCleanExit(
    await home.run(["current", "--json", "--id-only", "r"]),
    64,
    /--id-only or --json, not both/,
  );
  const bare = await home.run([]);
  assert.equal(bare.code, 64);
  assert.match(bare.stderr, /^stormlock: No command given\nUsage:/);
});

Deno.test("cli: config problems exit 78 and name the file", async () => {
  using home = new CliHome();
  assertCleanExit(
    await home.run(["-c", "missing.cfg", "current", "r"]),
    78,
    /missing\.cfg \(from -c\/--config\) does not exist/,
  );
  assertCleanExit(
    await home.run(["current", "r"], {
      STORMLOCK_CONFIG: `${home.home}/nope.cfg`,
    }),
    78,
    /STORMLOCK_CONFIG/,
  );
  const broken = home.write("broken.cfg", "[default\nttl = 1h\n");
  assertCleanExit(
    await home.run(["-c", broken, "current", "r"]),
    78,
    /broken\.cfg:1: malformed section/,
  );
  const unknown = home.write("unknown.cfg", "[default]\nbackend = mongodb\n");
  assertCleanExit(
    await home.run(["-c", unknown, "current", "r"]),
    78,
    /Unknown backend "mongodb"/,
  );
  const badTtl = home.write("ttl.cfg", "[default]\nttl = forever\n");
  assertCleanExit(
    await home.run(["--config", badTtl, "acquire", "r"]),
    78,
    /ttl\.cfg \[default\] ttl: Bad TTL "forever"/,
  );
});

Deno.test("cli: STORMLOCK_DEBUG=1 adds the stack trace", async () => {
  using home = new CliHome();
  const result = await home.run(["-c", "missing.cfg", "current", "r"], {
    STORMLOCK_DEBUG: "1",
  });
  assert.equal(result.code, 78);
  assert.match(result.stderr, /\n\s+at /);
});

Deno.test("cli: config is found in ./.stormlock.cfg and ~, and unknown keys warn", async () => {
  using home = new CliHome();
  home.write(".stormlock.cfg", "[default]\nprincipal = home-config\n");
  const fromHome = await home.run(["acquire", "a"]);
  assert.equal(fromHome.code, 0);
  assert.match((await home.run(["current", "a"])).stdout, /^home-config\t/);

  home.write(
    "work/.stormlock.cfg",
    "[default]\nprincipal = cwd-config\ncolour = blue\n",
  );
  const fromCwd = await home.run(["acquire", "b"]);
  assert.equal(fromCwd.code, 0);
  assert.match(
    fromCwd.stderr,
    /^stormlock: Warning: .*\.stormlock\.cfg \[default\] colour: unknown key/,
  );
  assert.match((await home.run(["current", "b"])).stdout, /^cwd-config\t/);
});

Deno.test("cli: per-resource TTL and the sqlite path come from the config", async () => {
  using home = new CliHome();
  const config = home.write(
    ".config/stormlock.cfg",
    "[default]\nttl = 10m\n[quick]\nttl = 1m\n[backend.sqlite]\npath = ~/.local/state/stormlock/other.db\n",
  );
  assert.ok(config);
  await home.run(["acquire", "quick"]);
  const lease = JSON.parse(
    (await home.run(["current", "--json", "quick"])).stdout,
  );
  const ttl = Date.parse(lease.expires) - Date.parse(lease.created);
  assert.equal(ttl, 60_000);
  assert.ok(
    Deno.statSync(`${home.home}/.local/state/stormlock/other.db`).isFile,
  );
});

Deno.test("cli: a database outside the state folder is a config error, not a crash", async () => {
  using home = new CliHome();
  const config = home.write(
    "c.cfg",
    "[backend.sqlite]\npath = /tmp/elsewhere/locks.db\n",
  );
  assertCleanExit(
    await home.run(["-c", config, "acquire", "r"]),
    78,
    /No permission .*\/tmp\/elsewhere\/locks\.db/,
  );
});

Deno.test("cli: --help works on every command and --version prints the version", async () => {
  using home = new CliHome();
  for (
    const command of [
      "acquire",
      "release",
      "renew",
      "current",
      "is-held",
      "init",
      "list",
      "break",
      "history",
      "completions",
      "help",
    ]
  ) {
    const help = await home.run([command, "--help"]);
    assert.equal(help.code, 0);
    assert.match(
      help.stdout,
      new RegExp(`^Usage: stormlock \\[-c FILE\\] ${command}`),
    );
    assert.match(help.stdout, /Examples:\n {2}\S/);
  }
  const main = await home.run(["--help"]);
  assert.match(main.stdout, /78 +config error/);
  assert.match(main.stdout, /69 +backend unavailable/);
  assert.equal((await home.run(["--version"])).stdout, `${VERSION}\n`);
});

Deno.test("cli: 20 processes race for one resource and exactly one wins", async () => {
  using home = new CliHome();
  await home.run(["--version"]); // Warm the module cache before the race.
  const results = await Promise.all(
    Array.from(
      { length: 20 },
      (_, i) => home.run(["acquire", "contended"], { USER: `racer${i}` }),
    ),
  );
  const winners = results.filter((result) => result.code === 0);
  assert.equal(winners.length, 1, results.map((r) => r.stderr).join(""));
  assert.match(winners[0].stdout, LEASE_LINE);
  for (const loser of results.filter((result) => result.code !== 0)) {
    assertCleanExit(loser, 2, /is held by racer\d+@/);
  }
  const current = await home.run(["current", "--id-only", "contended"]);
  assert.equal(current.stdout, winners[0].stdout);
});

Deno.test("cli: a config found in the working folder may not load plugin code", async () => {
  using home = new CliHome();
  home.write("work/hook.js", 'throw new Error("plugin code ran");\n');
  const config = home.write(
    "work/.stormlock.cfg",
    "[default]\nbackend = ./hook.js\n",
  );
  assertCleanExit(
    await home.run(["current", "r"]),
    78,
    /names the plugin module \.\/hook\.js, but a config found in the working folder may not load code/,
  );
  // Named explicitly, the same file is trusted, and its code runs.
  const trusted = await home.run(["-c", config, "current", "r"]);
  assert.equal(trusted.code, 78);
  assert.match(trusted.stderr, /plugin code ran/);
});

Deno.test("cli: npm: and jsr: plugins need STORMLOCK_ALLOW_PACKAGE_PLUGINS=1", async () => {
  using home = new CliHome();
  for (const module of ["npm:some-lock-plugin@1", "jsr:@me/lock-plugin"]) {
    const config = home.write("c.cfg", `[default]\nbackend = ${module}\n`);
    assertCleanExit(
      await home.run(["-c", config, "current", "r"]),
      78,
      /is a registry package, which runs with all of Stormlock's permissions; set STORMLOCK_ALLOW_PACKAGE_PLUGINS=1/,
    );
  }
});

Deno.test("cli: control characters from others are shown escaped, never sent to the terminal", async () => {
  using home = new CliHome();
  const principal = "ev\x1b[31mil\tname";
  const config = home.write(
    "c.cfg",
    `[default]\nprincipal = ${principal}\n`,
  );
  assert.equal((await home.run(["-c", config, "acquire", "r"])).code, 0);
  const current = await home.run(["current", "r"]);
  assert.equal(current.stdout.split("\t")[0], "ev\\x1b[31mil\\x09name");
  const refused = await home.run(["acquire", "r"]);
  assertCleanExit(refused, 2, /held by ev\\x1b\[31mil\\x09name since/);
  assert.ok(!refused.stderr.includes("\x1b"));
});

Deno.test("cli: help for an unknown command is a usage error", async () => {
  using home = new CliHome();
  assertCleanExit(
    await home.run(["help", "frob"]),
    64,
    /Unknown command "frob"/,
  );
  assert.equal((await home.run(["help", "renew"])).code, 0);
});

Deno.test("cli: acquire --wait takes the lock once the holder's lease ends", async () => {
  using home = new CliHome();
  await home.run(["acquire", "--ttl", "4s", "queue"], { USER: "ann" });
  const waited = await home.run(["acquire", "--wait", "30s", "queue"], {
    USER: "bob",
  });
  assert.equal(waited.code, 0, waited.stderr);
  assert.match(waited.stdout, LEASE_LINE);
  assert.match(
    waited.stderr,
    /^stormlock: Waited \d+s of 30s; next in line; held by ann@\S+ until /,
  );
  assert.equal(waited.stderr.trim().split("\n").length, 1, "said once");
  const current = await home.run(["current", "queue"]);
  assert.match(current.stdout, /^bob@/);
});

Deno.test("cli: acquire --wait gives up after its time with exit 2", async () => {
  using home = new CliHome();
  await home.run(["acquire", "busy"], { USER: "ann" });
  const result = await home.run(["acquire", "--wait", "1s", "busy"], {
    USER: "bob",
  });
  assert.equal(result.code, 2);
  assert.equal(result.stdout, "");
  const lines = result.stderr.trim().split("\n");
  assert.match(lines[0], /Waited \d+s of 1s/);
  assert.match(
    lines.at(-1)!,
    /^stormlock: Gave up after waiting 1s: "busy" is held by ann@/,
  );
  assertCleanExit(
    await home.run(["acquire", "--wait", "0s", "busy"]),
    64,
    /Bad wait time "0s"/,
  );
  assertCleanExit(
    await home.run(["current", "--wait", "1s", "busy"]),
    64,
    /"current" takes no --wait/,
  );
});

Deno.test("cli: a plugin's own bug is its error, with a stack only when debugging", async () => {
  using home = new CliHome();
  home.write(
    "buggy.js",
    `export function createBackend() {
  const fail = () => null.boom;
  return { acquire: fail, release: fail, renew: fail, current: fail,
    isHeld: fail, close: async () => {} };
}
`,
  );
  const config = home.write("c.cfg", "[default]\nbackend = ./buggy.js\n");
  assertCleanExit(
    await home.run(["-c", config, "current", "r"]),
    69,
    /Backend "\.\/buggy\.js" \(module \.\/buggy\.js\) failed in read: .*boom.*fix the plugin/,
  );
  const debug = await home.run(["-c", config, "current", "r"], {
    STORMLOCK_DEBUG: "1",
  });
  assert.equal(debug.code, 69);
  assert.match(debug.stderr, /\n\s+at /);
});

Deno.test("cli: the SQLite default honours XDG_STATE_HOME", async () => {
  using home = new CliHome();
  const state = `${home.home}/state`;
  const result = await home.run(["acquire", "r"], { XDG_STATE_HOME: state });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(Deno.statSync(`${state}/stormlock/locks.db`).isFile);
});
