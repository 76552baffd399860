import assert from "assert";
import { join } from "node:path";
import {
  ConfigError,
  findConfigFile,
  loadConfig,
  parseConfig,
  resolveLockSettings,
} from "../mod.ts";

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
  const settings = resolveLockSettings(config, "r");
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
  const warnings = resolveLockSettings(config, "r").warnings;
  assert.deepEqual(warnings, [
    '/x/s.cfg [backend.reddis]: no "backend = reddis" uses this section; check the name',
  ]);
});

Deno.test("parseConfig() keeps dotted resource sections and true/false as text", () => {
  const config = parseConfig(
    "[deploy.prod]\nttl = 2h\n[backend.x]\nflag = true\n",
  );
  assert.equal(resolveLockSettings(config, "deploy.prod").ttlSeconds, 7200);
  assert.equal(config.sections["backend.x"].flag, "true");
});
