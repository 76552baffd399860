import assert from "assert";
import { join } from "node:path";
import {
  ConfigError,
  findConfigFile,
  loadConfig,
  parseConfig,
  resolveLockSettings,
  UsageError,
} from "../mod.ts";
import { assertPluginAllowed } from "../lib/composition/plugin.ts";

/** A fake HOME with a working folder, and an environment reading from it. */
function sandbox(vars: Record<string, string> = {}) {
  const home = Deno.makeTempDirSync({ prefix: "stormlock-config-" });
  const cwd = join(home, "work");
  Deno.mkdirSync(cwd);
  const env = (name: string) => ({ HOME: home, USER: "ann", ...vars })[name];
  const write = (relative: string, text = "[default]\n") => {
    const path = join(home, relative);
    Deno.mkdirSync(join(path, ".."), { recursive: true });
    Deno.writeTextFileSync(path, text);
    return path;
  };
  return { home, cwd, env, write };
}

/** An environment with USER set, so no principal warning is expected. */
const withUser = (name: string) => name === "USER" ? "ann" : undefined;

Deno.test("findConfigFile() searches cwd, then XDG_CONFIG_HOME, then ~", () => {
  const { cwd, env, write } = sandbox();
  assert.equal(findConfigFile({ env, cwd }), undefined);
  const inHome = write(".stormlock.cfg");
  assert.equal(findConfigFile({ env, cwd }), inHome);
  const inXdgDefault = write(".config/stormlock.cfg");
  assert.equal(findConfigFile({ env, cwd }), inXdgDefault);
  const inCwd = write("work/.stormlock.cfg");
  assert.equal(findConfigFile({ env, cwd }), inCwd);
});

Deno.test("findConfigFile() honours XDG_CONFIG_HOME over ~/.config", () => {
  const { home, cwd, write } = sandbox();
  write(".config/stormlock.cfg");
  const custom = write("xdg/stormlock.cfg");
  const env = (name: string) =>
    ({ HOME: home, XDG_CONFIG_HOME: join(home, "xdg") })[name];
  assert.equal(findConfigFile({ env, cwd }), custom);
});

Deno.test("findConfigFile() prefers -c, then STORMLOCK_CONFIG, over the search", () => {
  const { cwd, home, write } = sandbox();
  write("work/.stormlock.cfg");
  const fromEnv = write("env.cfg");
  const fromFlag = write("flag.cfg");
  const env = (name: string) =>
    ({ HOME: home, STORMLOCK_CONFIG: fromEnv })[name];
  assert.equal(findConfigFile({ env, cwd }), fromEnv);
  assert.equal(findConfigFile({ env, cwd, path: fromFlag }), fromFlag);
});

Deno.test("findConfigFile() expands ~ and resolves relative -c paths", () => {
  const { cwd, env, write } = sandbox();
  const path = write("custom.cfg");
  assert.equal(findConfigFile({ env, cwd, path: "~/custom.cfg" }), path);
  assert.equal(findConfigFile({ env, cwd, path: "../custom.cfg" }), path);
});

Deno.test("loadConfig() records how the file was found", () => {
  const { cwd, env, write } = sandbox();
  write(".stormlock.cfg");
  assert.equal(loadConfig({ env, cwd }).origin, "home");
  write(".config/stormlock.cfg");
  assert.equal(loadConfig({ env, cwd }).origin, "xdg");
  write("work/.stormlock.cfg");
  assert.equal(loadConfig({ env, cwd }).origin, "cwd");
  const flag = write("flag.cfg");
  assert.equal(loadConfig({ env, cwd, path: flag }).origin, "option");
});

Deno.test("findConfigFile() refuses a -c path that is a folder", () => {
  const { cwd, env } = sandbox();
  assert.throws(
    () => findConfigFile({ env, cwd, path: "." }),
    /\(from -c\/--config\) is not a file/,
  );
});

Deno.test("findConfigFile() refuses a -c or STORMLOCK_CONFIG file that doesn't exist", () => {
  const { cwd, home, env } = sandbox();
  assert.throws(
    () => findConfigFile({ env, cwd, path: "missing.cfg" }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /missing\.cfg.*-c\/--config/.test(error.message),
  );
  const viaEnv = (name: string) =>
    ({ HOME: home, STORMLOCK_CONFIG: "/nonexistent/x.cfg" })[name];
  assert.throws(
    () => findConfigFile({ env: viaEnv, cwd }),
    /STORMLOCK_CONFIG/,
  );
});

Deno.test("resolveLockSettings() uses the embedded defaults with no file", () => {
  const { cwd, env } = sandbox();
  const settings = resolveLockSettings(loadConfig({ env, cwd }), "deploy", env);
  assert.equal(settings.backend, "sqlite");
  assert.equal(settings.ttlSeconds, 3600);
  assert.equal(settings.principal, `ann@${Deno.hostname()}`);
  assert.deepEqual(settings.warnings, []);
});

Deno.test("resolveLockSettings() reads [RESOURCE], then [default], and [backend.NAME]", () => {
  const config = parseConfig(
    `[default]
ttl = 1 days
principal = me@example.com
backend = etcd

[special]
ttl = 30 minutes
backend = redis

[backend.etcd]
host = etcd.example.com

[backend.redis]
url = redis://example.com:6379
`,
    "/etc/stormlock.cfg",
  );
  const special = resolveLockSettings(config, "special");
  assert.equal(special.ttlSeconds, 1800);
  assert.equal(special.backend, "redis");
  assert.equal(special.principal, "me@example.com");
  assert.deepEqual(special.backendOptions, { url: "redis://example.com:6379" });
  assert.equal(special.backendContext.configDir, "/etc");
  const other = resolveLockSettings(config, "other");
  assert.equal(other.ttlSeconds, 86400);
  assert.equal(other.backend, "etcd");
  assert.deepEqual(other.backendOptions, { host: "etcd.example.com" });
});

Deno.test("resolveLockSettings() names file, section and key of a bad value", () => {
  const config = parseConfig("[default]\nttl = soon\n", "/x/s.cfg");
  assert.throws(
    () => resolveLockSettings(config, "r"),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.startsWith("/x/s.cfg [default] ttl: Bad TTL"),
  );
  const zero = parseConfig("[r]\nttl = 0 seconds\n", "/x/s.cfg");
  assert.throws(() => resolveLockSettings(zero, "r"), /\[r\] ttl/);
  const empty = parseConfig("[default]\nprincipal =\n", "/x/s.cfg");
  assert.throws(() => resolveLockSettings(empty, "r"), /\[default\] principal/);
});

Deno.test("resolveLockSettings() warns about unknown keys instead of ignoring them", () => {
  const config = parseConfig("[default]\nttl = 1h\ntll = 2h\n", "/x/s.cfg");
  const settings = resolveLockSettings(config, "r", withUser);
  assert.equal(settings.warnings.length, 1);
  assert.match(
    settings.warnings[0],
    /\/x\/s\.cfg \[default\] tll: unknown key/,
  );
});

Deno.test("parseConfig() refuses a broken INI line with its line number", () => {
  assert.throws(
    () => parseConfig("[default\nttl = 1h\n", "a.cfg"),
    /a\.cfg:1: malformed section/,
  );
  assert.throws(
    () => parseConfig("[default]\nttl 1h\n", "a.cfg"),
    /a\.cfg:2: expected "key = value"/,
  );
});

Deno.test("parseConfig() reads values as written, # and ; and backslashes included", () => {
  const config = parseConfig(
    [
      "# top",
      "; also a comment",
      "[backend.redis]",
      "url = redis://:p#ss;w@h:1",
      'password = "pa\\ss#1"',
      "path: C:\\temp;x",
      "quoted = 'a = b'",
      "Mixed_Case = yes",
    ].join("\n"),
  );
  assert.deepEqual({ ...config.sections["backend.redis"] }, {
    url: "redis://:p#ss;w@h:1",
    password: "pa\\ss#1",
    path: "C:\\temp;x",
    quoted: "a = b",
    mixed_case: "yes",
  });
});

Deno.test("parseConfig() refuses what it would otherwise misread", () => {
  const cases: Array<[string, RegExp]> = [
    ["[default]\n  ttl = 1h\n", /a\.cfg:2: indented line/],
    ["ttl = 1h\n[default]\n", /a\.cfg:1: "ttl" comes before any \[section\]/],
    ["[default]\nttl = 1h\nttl = 2h\n", /a\.cfg:3: "ttl" is set twice/],
    ["[default]\nTTL = 1h\nttl = 2h\n", /a\.cfg:3: "ttl" is set twice/],
    ["[r]\n[x]\n[r]\n", /a\.cfg:3: section \[r\] appears twice/],
    ["[]\n", /a\.cfg:1: malformed section/],
  ];
  for (const [text, pattern] of cases) {
    assert.throws(() => parseConfig(text, "a.cfg"), pattern, text);
  }
});

Deno.test("parseConfig() does not echo a line it can't read, which may hold a secret", () => {
  assert.throws(
    () => parseConfig("[backend.redis]\nurl redis://u:hunter2@h\n", "a.cfg"),
    (error: unknown) =>
      error instanceof ConfigError && !error.message.includes("hunter2"),
  );
});

Deno.test("resolveLockSettings() warns when no section applies, e.g. a misspelt [default]", () => {
  const config = parseConfig(
    "[defualt]\nbackend = redis\n[backend.redis]\nurl = redis://h\n",
    "/x/s.cfg",
  );
  const settings = resolveLockSettings(config, "deploy");
  assert.equal(settings.backend, "sqlite");
  assert.ok(
    settings.warnings.some((warning) =>
      /no \[default\] or \[deploy\] section.*\[defualt\]/.test(warning)
    ),
    settings.warnings.join("\n"),
  );
});

Deno.test("resolveLockSettings() warns about a [backend.NAME] that nothing uses", () => {
  const config = parseConfig(
    "[default]\nbackend = redis\n[backend.reddis]\nurl = redis://h\n[backend.sqlite]\npath = x.db\n",
    "/x/s.cfg",
  );
  const warnings = resolveLockSettings(config, "r", withUser).warnings;
  assert.deepEqual(warnings, [
    '/x/s.cfg [backend.reddis]: no "backend = reddis" uses this section (did you mean [backend.redis]?)',
  ]);
});

Deno.test("parseConfig() keeps dotted resource sections and true/false as text", () => {
  const config = parseConfig(
    "[deploy.prod]\nttl = 2h\n[backend.x]\nflag = true\n",
  );
  assert.equal(resolveLockSettings(config, "deploy.prod").ttlSeconds, 7200);
  assert.equal(config.sections["backend.x"].flag, "true");
});

/** A ConfigError whose message matches every pattern. */
function configError(...patterns: RegExp[]) {
  return (error: unknown) => {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  };
}

/** `text` as a regular expression that matches it literally. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Makes `path` a symbolic link to itself: every stat of it fails (ELOOP). */
function symlinkLoop(path: string): string {
  Deno.symlinkSync(path, path);
  return path;
}

Deno.test("findConfigFile() turns a -c or STORMLOCK_CONFIG path it can't look at into a ConfigError", () => {
  const { home, cwd, env } = sandbox();
  const loop = symlinkLoop(join(home, "loop.cfg"));
  const tooLong = join(home, "x".repeat(300) + ".cfg");
  for (
    const [path, reason] of [[loop, /symbolic links form a loop/], [
      tooLong,
      /name is too long/,
    ]] as const
  ) {
    assert.throws(
      () => findConfigFile({ env, cwd, path }),
      configError(
        new RegExp(`^Config file ${escape(path)} \\(from -c/--config\\)`),
        reason,
        /fix the path or name another file$/,
      ),
    );
    const viaEnv = (name: string) =>
      ({ HOME: home, STORMLOCK_CONFIG: path })[name];
    assert.throws(
      () => findConfigFile({ env: viaEnv, cwd }),
      configError(/from STORMLOCK_CONFIG/, reason),
    );
  }
  // A file below the loop fails the same way.
  assert.throws(
    () => findConfigFile({ env, cwd, path: join(loop, "x.cfg") }),
    configError(/symbolic links form a loop/),
  );
});

Deno.test("findConfigFile() refuses an empty -c, and reads an empty STORMLOCK_CONFIG as unset", () => {
  const { home, cwd, env, write } = sandbox();
  assert.throws(
    () => findConfigFile({ env, cwd, path: "" }),
    configError(/^The -c\/--config value is empty; name a config file/),
  );
  const inHome = write(".stormlock.cfg");
  const emptyEnv = (name: string) =>
    ({ HOME: home, STORMLOCK_CONFIG: "" })[name];
  assert.equal(findConfigFile({ env: emptyEnv, cwd }), inHome);
});

Deno.test("findConfigFile() refuses a ./.stormlock.cfg that is a symlink loop or a folder", () => {
  const { cwd, env, write } = sandbox();
  write(".stormlock.cfg"); // must not be used instead of the broken one
  const inCwd = join(cwd, ".stormlock.cfg");
  symlinkLoop(inCwd);
  assert.throws(
    () => loadConfig({ env, cwd }),
    configError(
      new RegExp(
        `^Config file ${
          escape(inCwd)
        } \\(\\./\\.stormlock\\.cfg in the working folder\\)`,
      ),
      /symbolic links form a loop; fix or remove it/,
    ),
  );
  Deno.removeSync(inCwd);
  Deno.mkdirSync(inCwd);
  assert.throws(
    () => findConfigFile({ env, cwd }),
    configError(/working folder\) is not a file; fix or remove it/),
  );
});

Deno.test("loadConfig() skips an XDG_CONFIG_HOME it can't search, with a warning", () => {
  const { home, cwd, write } = sandbox();
  const xdg = symlinkLoop(join(home, "xdg"));
  const env = (name: string) =>
    ({ HOME: home, USER: "ann", XDG_CONFIG_HOME: xdg })[name];
  // With no config at all: the embedded defaults, and a warning.
  const none = loadConfig({ env, cwd });
  assert.equal(none.path, undefined);
  assert.equal(none.warnings?.length, 1);
  assert.match(
    none.warnings![0],
    new RegExp(
      `^XDG_CONFIG_HOME \\(${
        escape(xdg)
      }\\) can't be searched .*loop.*skipped; fix or unset XDG_CONFIG_HOME$`,
    ),
  );
  const settings = resolveLockSettings(none, "deploy", env);
  assert.equal(settings.backend, "sqlite");
  assert.deepEqual(settings.warnings, none.warnings);
  // With ~/.stormlock.cfg: the search goes on to it.
  const inHome = write(".stormlock.cfg", "[default]\nttl = 2h\n");
  const found = loadConfig({ env, cwd });
  assert.equal(found.path, inHome);
  assert.equal(found.origin, "home");
  // A file found before the broken folder needs no warning.
  write("work/.stormlock.cfg");
  assert.equal(loadConfig({ env, cwd }).warnings, undefined);
});

Deno.test("findConfigFile() ignores a relative XDG_CONFIG_HOME or HOME, as XDG says", () => {
  const { home, cwd, write } = sandbox();
  // Relative paths would resolve against the process's working folder.
  write("rel/stormlock.cfg");
  write("rel/.stormlock.cfg");
  const before = Deno.cwd();
  Deno.chdir(home);
  try {
    const relXdg = (name: string) =>
      ({ HOME: home, XDG_CONFIG_HOME: "rel" })[name];
    assert.equal(findConfigFile({ env: relXdg, cwd }), undefined);
    const inXdgDefault = write(".config/stormlock.cfg");
    assert.equal(findConfigFile({ env: relXdg, cwd }), inXdgDefault);
    const relHome = (name: string) => ({ HOME: "rel" })[name];
    assert.equal(findConfigFile({ env: relHome, cwd }), undefined);
  } finally {
    Deno.chdir(before);
  }
});

Deno.test("loadConfig() from the home folder trusts ~/.stormlock.cfg as home, not cwd", () => {
  const { home, env, write } = sandbox();
  const config = write(".stormlock.cfg", "[default]\nbackend = ./my.js\n");
  const loaded = loadConfig({ env, cwd: home });
  assert.equal(loaded.path, join(home, ".stormlock.cfg"));
  assert.equal(loaded.origin, "home");
  assertPluginAllowed("./my.js", loaded.path, { origin: loaded.origin });
  // A working folder's link to the XDG config is that file, too.
  const xdgConfig = write(".config/stormlock.cfg");
  Deno.removeSync(config);
  const cwd = join(home, "work");
  Deno.symlinkSync(xdgConfig, join(cwd, ".stormlock.cfg"));
  assert.equal(loadConfig({ env, cwd }).origin, "xdg");
  // A copy in the working folder is a different file: still refused.
  Deno.removeSync(join(cwd, ".stormlock.cfg"));
  const copy = write("work/.stormlock.cfg", "[default]\nbackend = ./my.js\n");
  const fromCwd = loadConfig({ env, cwd });
  assert.equal(fromCwd.origin, "cwd");
  assert.throws(
    () => assertPluginAllowed("./my.js", copy, { origin: fromCwd.origin }),
    configError(/found in the working folder may not load code/),
  );
});

Deno.test("resolveLockSettings() refuses resource names that are not valid text", () => {
  const config = parseConfig("");
  // Deno.args turns each invalid UTF-8 byte into U+FFFD: $'\xff' and
  // $'\xfe' would otherwise be one lock.
  const lossy = new TextDecoder().decode(new Uint8Array([0x64, 0xff]));
  for (const name of [lossy, "d\uFFFD", "d\uD800", "\uDC00x"]) {
    assert.throws(
      () => resolveLockSettings(config, name),
      (error: unknown) =>
        error instanceof UsageError &&
        /^The resource name "[^"]*\\ufffd[^"]*" is not valid text \(UTF-8/.test(
          error.message,
        ) && /use another name$/.test(error.message),
      JSON.stringify(name),
    );
  }
  for (const name of ["déploiement", "部署", "deploy 🚀", "a\u00adb"]) {
    assert.equal(resolveLockSettings(config, name).resource, name);
  }
});

Deno.test("resolveLockSettings() lists the known keys in balanced text", () => {
  const config = parseConfig("[default]\ncolour = blue\n", "/x/s.cfg");
  assert.deepEqual(resolveLockSettings(config, "r", withUser).warnings, [
    "/x/s.cfg [default] colour: unknown key, ignored (known: principal, backend, ttl, reason, max_hold)",
  ]);
});

Deno.test("a config reason over 4096 characters is refused like --reason, naming the key", () => {
  const config = parseConfig(`[deploy]\nreason = ${"x".repeat(5000)}\n`);
  assert.throws(
    () => resolveLockSettings(config, "deploy"),
    (error: Error) => {
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(
        error.message,
        /\[deploy\] reason: it is 5000 characters long; keep it under 4096/,
      );
      return true;
    },
  );
  const fine = parseConfig(`[deploy]\nreason = ${"x".repeat(4096)}\n`);
  assert.equal(resolveLockSettings(fine, "deploy").reason?.length, 4096);
});
