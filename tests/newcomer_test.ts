/**
 * A newcomer's first day: typo suggestions, one duration rule, one time
 * format, `config`, `version`, short help, tables that fit the terminal,
 * colours, the wait line, partial lists, and completions in a real shell.
 */
import assert from "assert";
import {
  assertCleanExit,
  CliHome,
  type CliHome as CliHomeType,
  closedPort,
  repoPath,
  run,
  sleep,
} from "./helpers.ts";
import { closest, didYouMean, editDistance } from "../lib/kit/suggest.ts";
import { fitTable } from "../lib/apps/output/format.ts";
import {
  parseConfig,
  parseDurationMs,
  parseTtl,
  serveStatus,
  Stormlock,
} from "../mod.ts";
import { PAGE_JS } from "../lib/apps/serve/page.ts";
import { maskSecret } from "../lib/apps/output/report.ts";
import { timeZoneProblem } from "../lib/kit/time.ts";

const ESC = "\x1b";
const ANSI_STYLE = new RegExp(`${ESC}\\[\\d+m`, "g");
const ANY_ESCAPE = new RegExp(`${ESC}\\[`);
const shellQuote = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/** Runs the launcher in a pseudo-terminal `cols` wide (util-linux script). */
async function inTerminal(
  home: CliHomeType,
  args: string[],
  cols: number,
  env: Record<string, string> = {},
) {
  const command = `stty cols ${cols} rows 50; exec sh ${
    shellQuote(repoPath("scripts", "stormlock"))
  } ${args.map(shellQuote).join(" ")}`;
  const result = await run("script", ["-qec", command, "/dev/null"], {
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      TERM: "xterm",
      ...home.env,
      ...env,
    },
  });
  return { ...result, stdout: result.stdout.replaceAll("\r\n", "\n") };
}

Deno.test("one edit-distance helper: swaps, typos, and nothing far-fetched", () => {
  assert.equal(editDistance("aquire", "acquire"), 1);
  assert.equal(editDistance("relaese", "release"), 1);
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(closest("aquire", ["acquire", "release"]), "acquire");
  assert.equal(closest("lsit", ["list", "init"]), "list");
  assert.equal(closest("frobnicate", ["acquire", "release"]), undefined);
  assert.equal(didYouMean("bsh", ["bash", "zsh"]), ' (did you mean "bash"?)');
  assert.equal(didYouMean("zzz", ["bash"]), "");
});

Deno.test("cli: typos get the nearest command, flag, unit, shell and backend", async () => {
  using home = new CliHome();
  assertCleanExit(
    await home.run(["aquire", "r"]),
    64,
    /Unknown command "aquire" \(did you mean "acquire"\?\)/,
  );
  assertCleanExit(
    await home.run(["help", "relase"]),
    64,
    /did you mean "release"\?/,
  );
  assertCleanExit(
    await home.run(["acquire", "--resaon", "x", "r"]),
    64,
    /Unknown option "--resaon" \(did you mean --reason\?\)/,
  );
  assertCleanExit(
    await home.run(["acquire", "-t", "3 mins", "r"]),
    64,
    /"mins" is not a unit \(did you mean "min"\?\)/,
  );
  assertCleanExit(
    await home.run(["completions", "bsh"]),
    64,
    /did you mean "bash"\?/,
  );
  home.write("work/.stormlock.cfg", "[default]\nbackend = reddis\n");
  assertCleanExit(
    await home.run(["current", "r"]),
    78,
    /Unknown backend "reddis".*\(did you mean "redis"\?\)/,
  );
});

Deno.test("cli: a comment after a value is named as one", async () => {
  using home = new CliHome();
  home.write("work/.stormlock.cfg", "[default]\nbackend = redis   # shared\n");
  const result = await home.run(["current", "r"]);
  assertCleanExit(result, 78, /looks like a comment \(# shared\)/);
  assert.match(result.stderr, /write "backend = redis"/);
  assert.doesNotMatch(result.stderr, /\[backend\.redis {3}#/);
  home.write(
    "work/.stormlock.cfg",
    "[default]\nbackend = redis\n[backend.redis]\ntimeout = 3s   # short\n",
  );
  assertCleanExit(
    await home.run(["current", "r"]),
    78,
    /\[backend\.redis\] timeout: .*ends in "# short", which reads as part of the value/,
  );
  home.write("work/.stormlock.cfg", "[default]\nttl = 1h   ; an hour\n");
  assertCleanExit(
    await home.run(["current", "r"]),
    78,
    /ends in "; an hour", which reads as part of the value/,
  );
});

Deno.test("cli: misspelt sections warn on every command, with the nearest name", async () => {
  using home = new CliHome();
  home.write(
    "work/.stormlock.cfg",
    "[defualt]\nttl = 1h\n\n[backends.redis]\nurl = redis://127.0.0.1:1\n\n[backend.sqlite]\n\n[backend.reddis]\nurl = redis://127.0.0.1:1\n",
  );
  for (
    const args of [["list"], ["current", "r"], ["config"], ["history", "r"]]
  ) {
    const result = await home.run(args);
    assert.match(
      result.stderr,
      /\[defualt\]: read as the section of a resource called "defualt" \(did you mean \[default\]\?\)/,
      args.join(" "),
    );
    assert.match(result.stderr, /\(did you mean \[backend\.redis\]\?\)/);
    assert.match(
      result.stderr,
      /\[backend\.reddis\]: no "backend = reddis" uses this section \(did you mean \[backend\.sqlite\]\?\)|\[backend\.reddis\]: no "backend = reddis" uses this section/,
    );
  }
});

Deno.test("one duration rule: bare numbers are seconds in the CLI and the config", async () => {
  assert.equal(parseTtl("90"), 90);
  assert.equal(parseDurationMs("90"), 90_000);
  assert.equal(parseDurationMs("500ms"), 500);
  assert.equal(parseDurationMs("1m30s"), 90_000);
  assert.throws(() => parseTtl("500ms"), /whole seconds/);
  assert.throws(() => parseTtl("0"), /more than zero/);
  using home = new CliHome();
  home.write("work/.stormlock.cfg", "[default]\nttl = 90\n");
  const id = (await home.run(["acquire", "r"])).stdout.trim();
  const lease = JSON.parse(
    (await home.run(["current", "--json", "r"])).stdout,
  );
  assert.equal(
    Date.parse(lease.expires) - Date.parse(lease.created),
    90_000,
  );
  const renewed = await home.run(["renew", "-t", "120", "--json", "r", id]);
  assert.equal(renewed.code, 0, renewed.stderr);
  const waited = await home.run(["acquire", "-w", "1", "r"], { USER: "bob" });
  assert.equal(waited.code, 2);
  assert.match(waited.stderr, /Gave up after waiting 1:/);
});

Deno.test("cli: one time format, local with offset and relative, in errors too", async () => {
  using home = new CliHome();
  const env = { TZ: "Asia/Kolkata" };
  const id = (await home.run(["acquire", "r"], env)).stdout.trim();
  await home.run(["break", "-y", "-r", "stale", "r"], { ...env, USER: "bob" });
  const renewed = await home.run(["renew", "r", id], env);
  assert.equal(renewed.code, 3);
  assert.match(
    renewed.stderr,
    /was broken by bob@\S+ at (?:\S+ )?\d\d:\d\d \(\+05:30\), \d+s ago: stale/,
  );
  assert.doesNotMatch(renewed.stderr, /\d{4}-\d\d-\d\dT/);
  await home.run(["acquire", "held"], env);
  const held = await home.run(["acquire", "held"], { ...env, USER: "carol" });
  assert.match(
    held.stderr,
    /since (?:\S+ )?\d\d:\d\d \(\+05:30\), \d+s ago, until (?:\S+ )?\d\d:\d\d \(\+05:30\), in 1h;/,
  );
});

Deno.test("cli: an invalid TZ is named, not silently taken as UTC", async () => {
  assert.equal(timeZoneProblem("Europe/Paris"), undefined);
  assert.equal(timeZoneProblem(undefined), undefined);
  assert.match(timeZoneProblem("Mars/Olympus")!, /TZ "Mars\/Olympus"/);
  using home = new CliHome();
  const result = await home.run(["list"], { TZ: "Mars/Olympus" });
  assert.match(
    result.stderr,
    /Warning: TZ "Mars\/Olympus" is not a time zone, so times are shown in UTC/,
  );
});

Deno.test("cli: messages start with a capital letter", async () => {
  using home = new CliHome();
  const id = (await home.run(["acquire", "r"])).stdout.trim();
  const runs = await Promise.all([
    home.run(["current", "free"]),
    home.run(["list", "zzz"]),
    home.run(["break", "r"]),
    home.run(["break", "-y", "-r", "x", "r"], { USER: "bob" }),
    home.run(["release", "r", id]),
    home.run(["init"]),
  ]);
  const lines = runs.flatMap((result) =>
    result.stderr.split("\n").filter(Boolean)
  );
  assert.ok(lines.length >= 4, lines.join("\n"));
  for (const line of lines) {
    assert.match(line, /^stormlock: (?:[A-Z"]|Warning: [A-Z"<\/])/, line);
  }
});

Deno.test("cli: version, bare usage, short per-command help with two examples", async () => {
  using home = new CliHome();
  const version = await home.run(["version"]);
  assert.equal(version.code, 0);
  assert.equal(version.stdout, (await home.run(["-V"])).stdout);
  const bare = await home.run([]);
  assert.equal(bare.code, 64);
  assert.match(bare.stderr, /^stormlock: No command given\nUsage:\n/);
  assert.match(bare.stderr, /stormlock \[-c FILE\] acquire/);
  const top = await home.run(["--help"]);
  assert.match(top.stdout, /Environment:/);
  assert.match(top.stdout, /Exit codes:/);
  const help = await home.run(["help"]);
  const commands = [
    ...help.stdout.matchAll(/^ {2}stormlock \[-c FILE\] (\S+)/gm),
  ]
    .map((match) => match[1]);
  assert.ok(commands.includes("config") && commands.includes("version"));
  for (const command of ["acquire", "release", "list", "config", "run"]) {
    const one = await home.run([command, "--help"]);
    assert.equal(one.code, 0);
    assert.doesNotMatch(one.stdout, /Exit codes:|Environment:/, command);
    const examples = /Examples:\n((?: {2}.*\n){2})/.exec(one.stdout);
    assert.ok(examples, `${command} has two examples`);
    assert.ok(one.stdout.split("\n").length < 40, command);
  }
});

Deno.test("cli: config shows the file, search, backends and principal, secrets masked", async () => {
  using home = new CliHome();
  const port = closedPort();
  home.write(
    "work/.stormlock.cfg",
    `[default]\nttl = 90\n\n[deploy]\nbackend = redis\n\n[backend.redis]\nurl = redis://:hunter2secret@127.0.0.1:${port}/0\ntimeout = 1\n`,
  );
  const result = await home.run(["config"]);
  assert.equal(result.code, 69, result.stderr);
  assert.ok(!result.stdout.includes("hunter2secret"));
  assert.ok(!result.stderr.includes("hunter2secret"));
  assert.match(
    result.stdout,
    /Config file: .*\.stormlock\.cfg \(found in the working folder\)/,
  );
  assert.match(result.stdout, /1\. -c FILE/);
  assert.match(result.stdout, /3\. \.\/\.stormlock\.cfg +\S+ {2}<- used/);
  assert.match(
    result.stdout,
    /\[default\] {2}backend sqlite, ttl 1m30s, principal tester@/,
  );
  assert.match(result.stdout, /\[deploy\] {2}backend redis/);
  assert.match(result.stdout, /sqlite: SQLite database \S+locks\.db; answers/);
  assert.match(
    result.stdout,
    /redis: Redis at 127\.0\.0\.1:\d+; does not answer/,
  );
  assert.match(result.stdout, /url = redis:\/\/:\*\*\*\*@127\.0\.0\.1/);
  assert.match(result.stdout, /prefix = stormlock: {2}\(default\)/);
  const json = JSON.parse((await home.run(["config", "--json"])).stdout);
  assert.equal(json.backends[1].answers, false);
  assert.equal(maskSecret("password", "x"), "****");
  assert.equal(
    maskSecret("url", "postgres://u:p@h/db"),
    "postgres://u:****@h/db",
  );
  assert.equal(maskSecret("url", "https://token@h/"), "https://****@h/");
});

Deno.test("cli: with USER unset, the principal is explained once", async () => {
  using home = new CliHome();
  const result = await run("sh", [
    repoPath("scripts", "stormlock"),
    "acquire",
    "r",
  ], {
    cwd: home.cwd,
    clearEnv: true,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      DENO: Deno.execPath(),
      HOME: home.home,
      DENO_DIR: home.env.DENO_DIR,
      NO_COLOR: "1",
    },
  });
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stderr.split("\n").filter((line) => /USER/.test(line));
  assert.equal(lines.length, 1, result.stderr);
  assert.match(
    lines[0],
    /USER is not set, so leases are held as unknown@\S+; set USER, or "principal = NAME"/,
  );
});

Deno.test("fitTable(): fits 80 and 120 columns, cutting and leaving out what it must", () => {
  const long = "x".repeat(70);
  const columns = [
    { title: "RESOURCE", cells: ["deploy-prod", `svc-${long}`], shrink: 12 },
    { title: "HOLDER", cells: ["ann@build-1", "bob@laptop"], shrink: 10 },
    { title: "HOST", cells: ["", "ci-runner-7"], optional: 2, shrink: 8 },
    { title: "REASON", cells: ["release 4.2", `patch ${long}`], shrink: 8 },
    { title: "EXPIRES (+01:00)", cells: ["14:02 in 5m", "15:00 in 1h"] },
    {
      title: "LINK",
      cells: ["https://ci.example/run/1", ""],
      optional: 4,
      shrink: 20,
    },
  ];
  for (const width of [80, 120]) {
    const fitted = fitTable(columns, width);
    for (const line of fitted.text.split("\n")) {
      assert.ok([...line].length <= width, `${width}: ${line}`);
    }
    assert.ok(fitted.cut > 0);
    assert.match(fitted.text, /…/);
  }
  assert.deepEqual(fitTable(columns, 80).dropped, ["LINK"]);
  assert.deepEqual(fitTable(columns, 120).dropped, []);
  const wide = fitTable(columns, Infinity);
  assert.deepEqual(wide.dropped, []);
  assert.match(wide.text, /… \(\d+ more characters\)/);
  assert.equal(fitTable(columns, Infinity).text, wide.text);
});

Deno.test("cli: list and history fit an 80- and a 120-column terminal, in colour", async () => {
  using home = new CliHome();
  const link = `https://ci.example/runs/${"9".repeat(40)}`;
  await home.run([
    "acquire",
    "-r",
    `patch ${"y".repeat(80)}`,
    "--link",
    link,
    "deploy-prod",
  ]);
  await home.run(["acquire", "-t", "2m", "-r", "short", "db"], { USER: "bob" });
  for (const [cols, hasLink] of [[80, false], [120, true]] as const) {
    const list = await inTerminal(home, ["list"], cols, { NO_COLOR: "" });
    assert.equal(list.code, 0, list.stdout);
    const plain = list.stdout.replace(ANSI_STYLE, "");
    const lines = plain.trimEnd().split("\n").filter((line) =>
      !line.startsWith("stormlock:")
    );
    assert.match(
      lines[0],
      /^RESOURCE +HOLDER +REASON +SINCE \([+-]\d\d:\d\d\) +EXPIRES \([+-]\d\d:\d\d\)/,
    );
    for (const line of lines) {
      assert.ok([...line].length <= cols, `${cols}: ${line}`);
    }
    assert.equal(
      (plain.match(/\([+-]\d\d:\d\d\)/g) ?? []).length,
      2,
      "offset once per column, in the header",
    );
    assert.equal(/LINK/.test(lines[0]), hasLink, `${cols}: ${lines[0]}`);
    assert.match(plain, /…/);
    assert.match(plain, /stormlock: \d+ cells? (was|were) cut/);
    assert.ok(list.stdout.includes(`${ESC}[1m`), "the holder is bold");
    assert.ok(list.stdout.includes(`${ESC}[33m`), "expiring soon is yellow");
    const history = await inTerminal(home, ["history", "deploy-prod"], cols);
    for (const line of history.stdout.trimEnd().split("\n")) {
      if (!line.startsWith("stormlock:")) {
        assert.ok([...line].length <= cols, line);
      }
    }
    assert.match(history.stdout, /^WHEN \([+-]\d\d:\d\d\) +EVENT/);
  }
  const noColour = await inTerminal(home, ["list"], 120, { NO_COLOR: "1" });
  assert.doesNotMatch(noColour.stdout, ANY_ESCAPE);
  // No terminal: the same columns whatever COLUMNS says, and no colour.
  const piped = await home.run(["list"], { COLUMNS: "40", NO_COLOR: "" });
  assert.doesNotMatch(piped.stdout, ANY_ESCAPE);
  assert.match(piped.stdout.split("\n")[0], /LINK$/);
  const wider = await home.run(["list"], { COLUMNS: "200" });
  assert.equal(wider.stdout.split("\n")[0], piped.stdout.split("\n")[0]);
});

Deno.test("cli: empty list and history say so on stderr", async () => {
  using home = new CliHome();
  const list = await home.run(["list", "nothing-"]);
  assert.equal(list.code, 0);
  assert.equal(list.stdout, "");
  assert.match(
    list.stderr,
    /^stormlock: No live locks whose name starts with "nothing-"/,
  );
  const history = await home.run(["history", "never"]);
  assert.equal(history.code, 0);
  assert.equal(history.stdout, "");
  assert.match(history.stderr, /^stormlock: No events for "never"/);
});

Deno.test("cli: acquire of a lock you hold says so and how to get the lease id", async () => {
  using home = new CliHome();
  await home.run(["acquire", "mine"]);
  const again = await home.run(["acquire", "mine"]);
  assert.equal(again.code, 2);
  assert.equal(again.stdout, "");
  assert.match(
    again.stderr,
    /^stormlock: "mine" is held by tester@\S+ \(you already hold it\) since .*; your lease id: stormlock current --id-only mine\n$/,
  );
});

Deno.test("cli: an expired --wait says it gave up and does not count itself", async () => {
  using home = new CliHome();
  await home.run(["acquire", "busy"], { USER: "ann" });
  const result = await home.run(["acquire", "--wait", "1s", "busy"], {
    USER: "bob",
  });
  assert.equal(result.code, 2);
  const lines = result.stderr.trim().split("\n");
  assert.match(
    lines[0],
    /^stormlock: Waited \d+s of 1s; next in line; held by ann@\S+ until/,
  );
  assert.match(
    lines.at(-1)!,
    /^stormlock: Gave up after waiting 1s: "busy" is held by ann@/,
  );
  assert.doesNotMatch(lines.at(-1)!, /waiting;|1 waiting/);
});

Deno.test("cli: list shows the healthy backends when one is down, and exits 69 only when all are", async () => {
  using home = new CliHome();
  const port = closedPort();
  home.write(
    "work/.stormlock.cfg",
    `[deploy]\nbackend = redis\n\n[backend.redis]\nurl = redis://127.0.0.1:${port}\ntimeout = 1\n`,
  );
  await home.run(["acquire", "local-thing"]);
  const partial = await home.run(["list"]);
  assert.equal(partial.code, 0, partial.stderr);
  assert.match(partial.stdout, /local-thing/);
  assert.match(
    partial.stderr,
    /Warning: Backend "redis" is down, so its locks are not listed: Redis at 127\.0\.0\.1:\d+/,
  );
  const json = await home.run(["list", "--json"]);
  assert.equal(json.code, 0);
  assert.equal(JSON.parse(json.stdout).length, 1);
  home.write(
    "work/.stormlock.cfg",
    `[default]\nbackend = redis\n\n[backend.redis]\nurl = redis://127.0.0.1:${port}\ntimeout = 1\n`,
  );
  const none = await home.run(["list"]);
  assert.equal(none.code, 69, none.stderr);
});

Deno.test("bash completion in a real interactive shell: resources, files after -c, no stray --", async () => {
  using home = new CliHome();
  const bin = `${home.home}/bin`;
  Deno.mkdirSync(bin);
  Deno.symlinkSync(repoPath("scripts", "stormlock"), `${bin}/stormlock`);
  await home.run(["acquire", "deploy-prod-eu"]);
  home.write("work/team.cfg", "");
  const session = `stormlock-test-${crypto.randomUUID().slice(0, 8)}`;
  const tmux = (...args: string[]) => run("tmux", ["-L", session, ...args]);
  const env = Object.entries({ ...home.env, DENO: Deno.execPath() })
    .map(([key, value]) => `${key}=${shellQuote(value)}`).join(" ");
  await tmux(
    "new-session",
    "-d",
    "-x",
    "150",
    "-y",
    "20",
    `cd ${shellQuote(home.cwd)} && env -i PATH=${
      shellQuote(`${bin}:${Deno.env.get("PATH")}`)
    } ${env} TERM=xterm HISTFILE=/dev/null bash --norc --noprofile -i`,
  );
  const screen = async () =>
    (await tmux("capture-pane", "-p", "-t", "0")).stdout;
  const typeAndWait = async (keys: string[], want: RegExp) => {
    await tmux("send-keys", "-t", "0", ...keys);
    for (let i = 0; i < 200; i++) {
      const text = await screen();
      if (want.test(text)) return text;
      await sleep(100);
    }
    throw new Error(`never saw ${want}:\n${await screen()}`);
  };
  try {
    await typeAndWait(
      ['PS1="$ "; eval "$(stormlock completions bash)"; echo ready', "Enter"],
      /^ready$/m,
    );
    // Each case: type, press Tab, type a marker, and read the line; the
    // marker shows where the cursor was (tmux drops trailing spaces).
    const complete = async (typed: string, want: string) => {
      await tmux("send-keys", "-t", "0", "C-u");
      const text = await typeAndWait(
        [typed, "Tab", "@@"],
        /@@/,
      );
      const line = text.split("\n").findLast((l) => l.includes("@@"))!;
      assert.equal(line, `$ ${want}@@`, `completing "${typed}"`);
    };
    await complete(
      "stormlock release dep",
      "stormlock release deploy-prod-eu ",
    );
    // An empty word after release offers resources, never "--".
    await complete("stormlock release ", "stormlock release deploy-prod-eu ");
    await complete("stormlock -c tea", "stormlock -c team.cfg ");
    await complete("stormlock acq", "stormlock acquire ");
    await complete("stormlock acquire --rea", "stormlock acquire --reason ");
    await complete("stormlock release x ", "stormlock release x ");
  } finally {
    await tmux("kill-server");
  }
});

Deno.test("scripts/test.sh FILE starts only the servers that file needs", async () => {
  const result = await run("sh", [
    repoPath("scripts", "test.sh"),
    "tests/duration_test.ts",
  ], {
    cwd: repoPath(),
    env: { DENO: Deno.execPath(), NO_COLOR: "1" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stderr,
    /not starting (?=[^\n]*redis)(?=[^\n]*etcd)(?=[^\n]*postgres)[^\n]*: the named files do not use them/,
  );
  assert.doesNotMatch(result.stderr, /starting (redis|etcd|postgres)\b/);
  assert.match(result.stdout, /\d+ passed, 0 failed/);
});

Deno.test("serve: the page's event stream names a backend that is down and still shows the others", async () => {
  using home = new CliHome();
  const port = closedPort();
  const locks = new Stormlock(
    parseConfig(
      `[default]\nprincipal = page@test\n[backend.sqlite]\npath = ${home.home}/locks.db\n[deploy]\nbackend = redis\n[backend.redis]\nurl = redis://127.0.0.1:${port}\ntimeout = 1\n`,
    ),
    { warn() {} },
  );
  await (await locks.lock("healthy")).acquire("1h");
  const server = serveStatus(locks, { listen: "127.0.0.1:0", pollMs: 100 });
  try {
    const response = await fetch(`${server.url}/api/events`);
    const reader = response.body!.pipeThrough(new TextDecoderStream())
      .getReader();
    let text = "";
    while (!/event: partial\ndata: .*\n/.test(text)) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await reader.cancel();
    assert.match(text, /event: locks\ndata: \[.*"resource":"healthy"/);
    const partial = JSON.parse(/event: partial\ndata: (.*)\n/.exec(text)![1]);
    assert.equal(partial.missing[0].backend, "redis");
    assert.match(partial.missing[0].error, /Redis at 127\.0\.0\.1:\d+/);
    assert.match(PAGE_JS, /event === "partial"/);
  } finally {
    await server.shutdown();
    await locks.close();
  }
});

Deno.test("scripts/install.sh puts a working stormlock in a folder, and says how to reach it", async () => {
  using home = new CliHome();
  const bin = `${home.home}/tools/bin`;
  const env = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    DENO: Deno.execPath(),
    ...home.env,
  };
  const installed = await run("sh", [repoPath("scripts", "install.sh"), bin], {
    cwd: home.cwd,
    clearEnv: true,
    env,
  });
  assert.equal(installed.code, 0, installed.stderr);
  assert.match(installed.stderr, /installed \S+ as .*tools\/bin\/stormlock/);
  assert.match(installed.stderr, /tools\/bin is not on PATH; add it/);
  // From any folder, through the link, as a newcomer would call it.
  const version = await run(`${bin}/stormlock`, ["version"], {
    cwd: "/",
    clearEnv: true,
    env,
  });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  const again = await run("sh", [repoPath("scripts", "install.sh"), bin], {
    cwd: home.cwd,
    clearEnv: true,
    env: { ...env, PATH: `${bin}:${env.PATH}` },
  });
  assert.equal(again.code, 0, again.stderr);
  assert.doesNotMatch(again.stderr, /not on PATH/);
});
