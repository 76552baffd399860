/**
 * Where the embedded SQLite database lives, whatever the environment: the
 * library, `deno run main.ts` and the launcher must agree on one file, and
 * never resolve it against the working folder.
 */
import assert from "assert";
import { join } from "node:path";
import { ConfigError } from "../mod.ts";
import { stateDir } from "../lib/kit/paths.ts";
import {
  assertCleanExit,
  CliHome,
  type CliResult,
  repoPath,
  run,
  runDeno,
} from "./helpers.ts";

const LEASE_LINE = /^[0-9a-f]{32}\n$/;

/** An environment reader over a fixed set of variables. */
function envOf(vars: Record<string, string>) {
  return (name: string): string | undefined => vars[name];
}

/** `deno run -A main.ts ARGS` in `cwd`, with exactly `env` (plus NO_COLOR). */
function runMain(
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<CliResult> {
  return runDeno(["run", "--quiet", "-A", repoPath("main.ts"), ...args], {
    cwd,
    clearEnv: true,
    env,
  });
}

/** `home`'s environment without HOME, plus `extra`. */
function withoutHome(
  home: CliHome,
  extra: Record<string, string> = {},
): Record<string, string> {
  const { HOME: _home, ...rest } = home.env;
  return { ...rest, ...extra };
}

Deno.test("stateDir() ignores a relative XDG_STATE_HOME and uses ~/.local/state/stormlock", () => {
  assert.equal(
    stateDir(envOf({ XDG_STATE_HOME: "state", HOME: "/home/ann" })),
    "/home/ann/.local/state/stormlock",
  );
  assert.equal(
    stateDir(envOf({ XDG_STATE_HOME: "./state", HOME: "/home/ann" })),
    "/home/ann/.local/state/stormlock",
  );
  assert.equal(
    stateDir(envOf({ XDG_STATE_HOME: "/var/state", HOME: "/home/ann" })),
    "/var/state/stormlock",
  );
  assert.equal(
    stateDir(envOf({ XDG_STATE_HOME: "", HOME: "/home/ann" })),
    "/home/ann/.local/state/stormlock",
  );
});

Deno.test("stateDir() without HOME or an absolute XDG_STATE_HOME is a ConfigError naming what to set", () => {
  const names = (error: unknown) =>
    error instanceof ConfigError &&
    /set HOME or XDG_STATE_HOME to an absolute folder/.test(error.message) &&
    /\[backend\.sqlite\]/.test(error.message);
  assert.throws(() => stateDir(envOf({})), names);
  assert.throws(() => stateDir(envOf({ XDG_STATE_HOME: "state" })), names);
  assert.throws(
    () => stateDir(envOf({ XDG_STATE_HOME: "state", HOME: "home/ann" })),
    names,
  );
  // An absolute XDG_STATE_HOME needs no HOME.
  assert.equal(
    stateDir(envOf({ XDG_STATE_HOME: "/var/state" })),
    "/var/state/stormlock",
  );
});

Deno.test("cli: with no HOME and a relative XDG_STATE_HOME, acquire exits 78 naming what to set", async () => {
  using home = new CliHome();
  const result = await runMain(
    ["acquire", "x"],
    home.cwd,
    withoutHome(home, { XDG_STATE_HOME: "state" }),
  );
  assertCleanExit(
    result,
    78,
    /No state folder .*set HOME or XDG_STATE_HOME to an absolute folder/,
  );
  assert.throws(() => Deno.statSync(join(home.cwd, "state")));
});

Deno.test("cli: a relative XDG_STATE_HOME in two working folders still gives one database", async () => {
  using home = new CliHome();
  const other = join(home.home, "elsewhere");
  Deno.mkdirSync(other);
  const env = { ...home.env, XDG_STATE_HOME: "state" };
  const first = await runMain(["acquire", "shared"], home.cwd, env);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, LEASE_LINE);
  const second = await runMain(["acquire", "shared"], other, env);
  assertCleanExit(second, 2, /"shared" is held by tester@/);
  assert.ok(
    Deno.statSync(join(home.home, ".local/state/stormlock/locks.db")).isFile,
  );
  for (const folder of [home.cwd, other]) {
    assert.throws(() => Deno.statSync(join(folder, "state")), folder);
  }
});

Deno.test("launcher: a relative XDG_STATE_HOME uses ~/.local/state/stormlock, the library's database", async () => {
  using home = new CliHome();
  const viaLauncher = await home.run(["acquire", "shared"], {
    XDG_STATE_HOME: "state",
  });
  assert.equal(viaLauncher.code, 0, viaLauncher.stderr);
  assert.match(viaLauncher.stdout, LEASE_LINE);
  assert.ok(
    Deno.statSync(join(home.home, ".local/state/stormlock/locks.db")).isFile,
  );
  assert.throws(() => Deno.statSync(join(home.cwd, "state")));

  const viaMain = await runMain(["acquire", "shared"], home.cwd, home.env);
  assertCleanExit(viaMain, 2, /"shared" is held by tester@/);
});

Deno.test("launcher: with no HOME and a relative XDG_STATE_HOME, it exits 78 naming what to set", async () => {
  using home = new CliHome();
  const result = await home.run(["acquire", "x"], {
    HOME: "",
    XDG_STATE_HOME: "state",
  });
  assertCleanExit(
    result,
    78,
    /no state folder: .*set HOME or XDG_STATE_HOME to an absolute folder/,
  );
});

// Config search: every failure is a config error (78), never internal (70).

Deno.test("cli: a -c path, STORMLOCK_CONFIG or ./.stormlock.cfg that can't be looked at exits 78", async () => {
  using home = new CliHome();
  const loop = join(home.home, "loop.cfg");
  Deno.symlinkSync(loop, loop);
  const tooLong = "x".repeat(300) + ".cfg";
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [
      ["-c", loop],
      {},
      /\(from -c\/--config\) can't be used: its symbolic links form a loop/,
    ],
    [
      ["-c", tooLong],
      {},
      /\(from -c\/--config\) can't be used: the name is too long/,
    ],
    [
      [],
      { STORMLOCK_CONFIG: loop },
      /\(from STORMLOCK_CONFIG\) can't be used: its symbolic links form a loop/,
    ],
    [["-c", ""], {}, /The -c\/--config value is empty/],
  ];
  for (const [args, extra, pattern] of cases) {
    const result = await runMain(
      [...args, "acquire", "x"],
      home.cwd,
      { ...home.env, ...extra },
    );
    assertCleanExit(result, 78, pattern);
  }
  Deno.symlinkSync(loop, join(home.cwd, ".stormlock.cfg"));
  assertCleanExit(
    await runMain(["acquire", "x"], home.cwd, home.env),
    78,
    /\.stormlock\.cfg \(\.\/\.stormlock\.cfg in the working folder\) can't be used: its symbolic links form a loop; fix or remove it/,
  );
});

Deno.test("cli: an XDG_CONFIG_HOME that can't be searched is skipped with a warning", async () => {
  using home = new CliHome();
  const loop = join(home.home, "xdg");
  Deno.symlinkSync(loop, loop);
  const result = await runMain(["acquire", "x"], home.cwd, {
    ...home.env,
    XDG_CONFIG_HOME: loop,
  });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, LEASE_LINE);
  assert.match(
    result.stderr,
    /^stormlock: Warning: XDG_CONFIG_HOME \(.*\) can't be searched for a config file \(its symbolic links form a loop\), so it is skipped/,
  );
  // A relative one is ignored, as XDG says, without a word.
  const relative = await runMain(["current", "x"], home.cwd, {
    ...home.env,
    XDG_CONFIG_HOME: "xdg",
  });
  assert.equal(relative.code, 0, relative.stderr);
  assert.equal(relative.stderr, "");
});

Deno.test("cli: ~/.stormlock.cfg may name a plugin when run from the home folder", async () => {
  using home = new CliHome();
  home.write(
    "plugins/json-file-backend.js",
    Deno.readTextFileSync(repoPath("examples", "json-file-backend.js")),
  );
  home.write(
    ".stormlock.cfg",
    "[default]\nbackend = shared\n\n[backend.shared]\nmodule = ./plugins/json-file-backend.js\npath = ~/.local/state/stormlock/leases.json\n",
  );
  // In HOME, ./.stormlock.cfg is ~/.stormlock.cfg: the same trusted file.
  const fromHome = await runMain(["acquire", "deploy"], home.home, home.env);
  assert.equal(fromHome.code, 0, fromHome.stderr);
  assert.match(fromHome.stdout, LEASE_LINE);
  const fromWork = await runMain(["acquire", "deploy"], home.cwd, home.env);
  assertCleanExit(fromWork, 2, /"deploy" is held by tester@/);
});

Deno.test("cli: a resource name that is not valid UTF-8 exits 64", async () => {
  using home = new CliHome();
  // Deno.Command takes strings, so the shell writes the raw bytes.
  for (const bytes of ["\\377", "\\376", "d\\355\\240\\200"]) {
    const raw = await run("sh", [
      "-c",
      `exec "$DENO" run --quiet -A "$MAIN" acquire "$(printf '${bytes}')"`,
    ], {
      cwd: home.cwd,
      clearEnv: true,
      env: { ...home.env, DENO: Deno.execPath(), MAIN: repoPath("main.ts") },
    });
    assertCleanExit(
      raw,
      64,
      /The resource name ".*\\ufffd.*" is not valid text \(UTF-8.*; use another name$/,
    );
  }
  // U+FFFD typed as such would be the same lock as the bytes: refused too.
  assertCleanExit(
    await runMain(["acquire", "\uFFFD"], home.cwd, home.env),
    64,
    /is not valid text \(UTF-8/,
  );
});

Deno.test("cli: an unknown option is one balanced line, and a sqlite path that is a folder says so", async () => {
  using home = new CliHome();
  const unknown = await home.run(["acquire", "--bogus", "r"]);
  assertCleanExit(
    unknown,
    64,
    /Unknown option "--bogus"; run "stormlock --help"/,
  );
  assert.equal(
    unknown.stderr.split('"').length % 2,
    1,
    `balanced quotes: ${unknown.stderr}`,
  );
  const config = home.write("dir.cfg", "[backend.sqlite]\npath = /tmp\n");
  assertCleanExit(
    await home.run(["-c", config, "acquire", "r"]),
    78,
    /\[backend\.sqlite\] path: \/tmp is a folder; name a database file in it/,
  );
});

Deno.test("cli: a huge resource name or principal is cut in the holder message", async () => {
  using home = new CliHome();
  const name = `big-${"n".repeat(130_000)}`;
  const config = home.write(
    "big.cfg",
    `[default]\nprincipal = ${"p".repeat(1_000_000)}\n`,
  );
  assert.equal((await home.run(["-c", config, "acquire", name])).code, 0);
  const refused = await home.run(["acquire", name]);
  assert.equal(refused.code, 2);
  assert.ok(refused.stderr.length < 2000, `${refused.stderr.length} bytes`);
  assert.match(refused.stderr, /more characters\)/);
});
