/**
 * End-to-end tests of the operator commands: metadata, list, break,
 * history, JSON shapes, readable times, completions, and output that
 * can't be written.
 */
import assert from "assert";
import { assertCleanExit, CliHome, repoPath, run } from "./helpers.ts";

/** A bidi override or an escape character, sent raw. */
const RAW_CONTROL = new RegExp("[\u202e\u001b]");

const LEASE_FIELDS = [
  "resource",
  "id",
  "principal",
  "host",
  "reason",
  "link",
  "fence",
  "created",
  "expires",
];

Deno.test("cli: acquire records reason, link and host; current, list and history show them", async () => {
  using home = new CliHome();
  const acquired = await home.run([
    "acquire",
    "--json",
    "-r",
    "deploy 4.2",
    "--link",
    "https://ci.example/run/7",
    "deploy",
  ]);
  assert.equal(acquired.code, 0, acquired.stderr);
  const lease = JSON.parse(acquired.stdout);
  assert.deepEqual(Object.keys(lease), LEASE_FIELDS);
  assert.equal(lease.reason, "deploy 4.2");
  assert.equal(lease.link, "https://ci.example/run/7");
  assert.equal(typeof lease.host, "string");
  assert.ok(lease.fence >= 1);

  const current = JSON.parse(
    (await home.run(["current", "--json", "deploy"])).stdout,
  );
  assert.deepEqual(current, { ...lease, waiting: [], request: null });
  const long = await home.run(["current", "--long", "deploy"], {
    TZ: "Asia/Kolkata",
  });
  assert.match(long.stdout, /reason: +deploy 4\.2/);
  // A time on another day than today carries its date (the hour before
  // midnight in Kolkata, the expiry does).
  const day = String.raw`(?:\d{4}-\d\d-\d\d )?`;
  assert.match(
    long.stdout,
    new RegExp(String.raw`since: +${day}\d\d:\d\d \(\+05:30\), \d+s ago`),
  );
  assert.match(
    long.stdout,
    new RegExp(String.raw`expires: +${day}\d\d:\d\d \(\+05:30\), in 1h`),
  );

  const listed = JSON.parse((await home.run(["list", "--json"])).stdout);
  assert.equal(listed.length, 1);
  assert.deepEqual(Object.keys(listed[0]), [
    "backend",
    ...LEASE_FIELDS,
    "waiting",
    "request",
  ]);
  assert.equal(listed[0].id, lease.id);
  const table = await home.run(["list"]);
  assert.match(
    table.stdout,
    /^RESOURCE +HOLDER +REASON +SINCE \([+-]\d\d:\d\d\) +EXPIRES \([+-]\d\d:\d\d\) +FENCE +LINK\n/,
  );
  assert.match(table.stdout, /deploy +tester@\S+ +deploy 4\.2 /);

  const renewed = await home.run([
    "renew",
    "--reason",
    "still deploying",
    "deploy",
    lease.id,
  ]);
  assert.equal(renewed.code, 0, renewed.stderr);
  const refused = await home.run(["acquire", "deploy"], { USER: "bob" });
  assertCleanExit(
    refused,
    2,
    /"deploy" is held by tester@\S+ for "still deploying" since .*ago, until .*, in \d+m?.*fence \d+; see https:\/\/ci\.example\/run\/7; if it is stale: stormlock break deploy --reason/,
  );
  const history = JSON.parse(
    (await home.run(["history", "--json", "deploy"])).stdout,
  );
  assert.deepEqual(history.map((e: { kind: string }) => e.kind), [
    "reason-changed",
    "acquired",
  ]);
  assert.deepEqual(Object.keys(history[0]), [
    "event_id",
    "kind",
    "at",
    ...LEASE_FIELDS,
    "by",
  ]);
});

Deno.test("cli: the CI run becomes the link when none is given", async () => {
  using home = new CliHome();
  const result = await home.run(["acquire", "--json", "ci"], {
    GITHUB_SERVER_URL: "https://github.example",
    GITHUB_REPOSITORY: "acme/app",
    GITHUB_RUN_ID: "99",
  });
  assert.equal(
    JSON.parse(result.stdout).link,
    "https://github.example/acme/app/actions/runs/99",
  );
  const gitlab = await home.run(["acquire", "--json", "ci2"], {
    CI_JOB_URL: "https://gitlab.example/j/5",
  });
  assert.equal(JSON.parse(gitlab.stdout).link, "https://gitlab.example/j/5");
});

Deno.test("cli: break needs a reason, refuses without a terminal, and the broken holder exits 3 naming the breaker", async () => {
  using home = new CliHome();
  const id = (await home.run(["acquire", "db"])).stdout.trim();
  assertCleanExit(
    await home.run(["break", "db"]),
    64,
    /"break" needs --reason/,
  );
  assertCleanExit(
    await home.run(["break", "db", "--reason", "  "]),
    64,
    /"break" needs --reason/,
  );
  assertCleanExit(
    await home.run(["break", "db", "--reason", "job died"]),
    64,
    /stdin is not a terminal; add --yes/,
  );
  assertCleanExit(
    await home.run([
      "break",
      "db",
      "0123456789abcdef0123456789abcdef",
      "-r",
      "x",
    ]),
    3,
    /does not hold "db"/,
  );
  assert.equal((await home.run(["is-held", "db", id])).code, 0, "unchanged");
  const broke = await home.run(["break", "db", "--yes", "-r", "job died"], {
    USER: "ops",
  });
  assert.equal(broke.code, 0, broke.stderr);
  assert.match(broke.stderr, /Broke the lease of tester@\S+ on "db"/);
  for (const command of ["renew", "release", "is-held"]) {
    assertCleanExit(
      await home.run([command, "db", id]),
      3,
      /was broken by ops@\S+ at \d\d:\d\d \([+-]\d\d:\d\d\), \d+s ago: job died/,
    );
  }
  const events = JSON.parse(
    (await home.run(["history", "--json", "db"])).stdout,
  );
  assert.equal(events[0].kind, "broken");
  assert.equal(events[0].by.reason, "job died");
  assert.match(events[0].by.principal, /^ops@/);
  assert.equal((await home.run(["acquire", "db"])).code, 0);
});

Deno.test("cli: bad input to the new commands gets one clear line", async () => {
  using home = new CliHome();
  await home.run(["acquire", "r"]);
  for (const limit of ["0", "abc", "1.5"]) {
    assertCleanExit(
      await home.run(["history", "--limit", limit, "r"]),
      64,
      /Bad --limit/,
    );
  }
  assertCleanExit(
    await home.run(["history", "--limit=-5", "r"]),
    64,
    /Bad --limit "-5"/,
  );
  assertCleanExit(
    await home.run(["acquire", "--reason", "", "x"]),
    64,
    /reason is empty/,
  );
  assertCleanExit(
    await home.run(["acquire", "--reason", "x".repeat(100_000), "x"]),
    64,
    /reason is 100000 characters long/,
  );
  assertCleanExit(
    await home.run(["acquire", "--link", "javascript:alert(1)", "x"]),
    64,
    /link is not an http\(s\) URL/,
  );
  assertCleanExit(
    await home.run(["list", "bad\uFFFDprefix"]),
    64,
    /prefix is not valid text/,
  );
  assertCleanExit(
    await home.run(["list", "--limit", "3"]),
    64,
    /"list" takes no --limit/,
  );
  assertCleanExit(
    await home.run(["completions", "tcsh"]),
    64,
    /bash, zsh or fish/,
  );
});

Deno.test("cli: text from others is escaped in human and JSON output, and cut when huge", async () => {
  using home = new CliHome();
  const reason = `evil\u202e\x1b[31m ${"y".repeat(3000)}`;
  assert.equal((await home.run(["acquire", "-r", reason, "r"])).code, 0);
  const refused = await home.run(["acquire", "r"], { USER: "bob" });
  assert.equal(refused.code, 2);
  assert.ok(!RAW_CONTROL.test(refused.stderr));
  assert.match(
    refused.stderr,
    /evil\\u\{202e\}\\x1b\[31m y+… \(\d+ more characters\)/,
  );
  const json = await home.run(["current", "--json", "r"]);
  assert.ok(!RAW_CONTROL.test(json.stdout), "raw controls in JSON");
  assert.equal(JSON.parse(json.stdout).reason, reason, "JSON keeps it whole");
  const list = await home.run(["list"]);
  assert.ok(!RAW_CONTROL.test(list.stdout));
});

Deno.test("cli: help help, and completions come from the command table", async () => {
  using home = new CliHome();
  const help = await home.run(["help", "help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: stormlock \[-c FILE\] help \[COMMAND\]/);
  const bash = await home.run(["completions", "bash"]);
  assert.equal(bash.code, 0);
  for (const word of ["acquire", "break", "history", "--reason", "--limit"]) {
    assert.ok(bash.stdout.includes(word), word);
  }
  const syntax = await run("bash", ["-n"], {
    stdin: "piped",
  } as never).catch(() => undefined);
  void syntax;
  const file = home.write("c.bash", bash.stdout);
  assert.equal((await run("bash", ["-n", file])).code, 0, "bash parses it");
  for (const shell of ["zsh", "fish"]) {
    const script = await home.run(["completions", shell]);
    assert.equal(script.code, 0);
    assert.ok(script.stdout.includes("history"));
  }
});

Deno.test("cli: an acquire whose id can't be written releases the lease and exits 74", async () => {
  using home = new CliHome();
  const result = await run("sh", [
    "-c",
    `sh "${repoPath("scripts", "stormlock")}" acquire full >/dev/full`,
  ], {
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      ...home.env,
    },
  });
  assert.equal(result.code, 74, result.stderr);
  assert.match(
    result.stderr,
    /Could not write the answer to stdout.*the lease was released/,
  );
  assert.equal((await home.run(["current", "full"])).code, 1, "not held");
});

Deno.test("cli: exit codes do not depend on whether stderr can be written", async () => {
  using home = new CliHome();
  await home.run(["acquire", "held"]);
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    DENO: Deno.execPath(),
    ...home.env,
  };
  const launcher = repoPath("scripts", "stormlock");
  const refused = await run("sh", [
    "-c",
    `sh "${launcher}" acquire held 2>/dev/full`,
  ], {
    cwd: home.cwd,
    clearEnv: true,
    env,
  });
  assert.equal(refused.code, 2);
  const config = home.write(
    "dead.cfg",
    "[default]\nbackend = redis\n[backend.redis]\nurl = redis://127.0.0.1:9\ntimeout = 300ms\n",
  );
  const dead = await run("sh", [
    "-c",
    `sh "${launcher}" -c "${config}" is-held r 0123456789abcdef0123456789abcdef 2>/dev/full`,
  ], { cwd: home.cwd, clearEnv: true, env });
  assert.equal(dead.code, 69);
});

Deno.test("cli: a waiter shows in current and list, defers a plain acquire, and leaves the queue when killed", async () => {
  using home = new CliHome();
  assert.equal((await home.run(["acquire", "q"], { USER: "ann" })).code, 0);
  const waiter = new Deno.Command("sh", {
    args: [repoPath("scripts", "stormlock"), "acquire", "--wait", "5m", "q"],
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      ...home.env,
      USER: "bob",
    },
    stdout: "null",
    stderr: "null",
  }).spawn();
  const queue = async () =>
    JSON.parse((await home.run(["current", "--json", "q"])).stdout).waiting;
  for (let tries = 0; tries < 300 && (await queue()).length === 0; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const waiting = await queue();
  assert.equal(waiting.length, 1);
  assert.match(waiting[0].principal, /^bob@/);
  const listed = JSON.parse((await home.run(["list", "--json"])).stdout);
  assert.equal(listed.length, 1, "the queue is not a lock");
  assert.equal(listed[0].waiting.length, 1);
  assertCleanExit(
    await home.run(["acquire", "q"], { USER: "cy" }),
    2,
    /1 waiting/,
  );
  waiter.kill("SIGKILL");
  await waiter.status;
  // Its registration lapses within its 10-second TTL.
  for (let tries = 0; tries < 300 && (await queue()).length > 0; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.deepEqual(await queue(), []);
});
