/**
 * Plugin backends: the example plugin passes the contract when loaded the
 * way a config names it, and a module that doesn't fit gets a ConfigError
 * naming what is missing.
 */
import assert from "assert";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  ConfigError,
  openBackend,
  parseConfig,
  resolveLockSettings,
} from "../mod.ts";
import type { BackendContext, BackendOptions } from "../mod.ts";
import {
  foreignImports,
  isPluginSpecifier,
  loadPlugin,
  pluginContext,
} from "../lib/plugin.ts";
import { assertBackend } from "../lib/registry.ts";
import { testBackendContract } from "../lib/testing/mod.ts";
import { serveTls, testCertificates } from "./certificates.ts";
import { assertCliLockCycle, CliHome, repoPath, runDeno } from "./helpers.ts";

const EXAMPLE = repoPath("examples", "json-file-backend.js");
const folder = Deno.makeTempDirSync({ prefix: "stormlock-plugin-" });
globalThis.addEventListener("unload", () => {
  Deno.removeSync(folder, { recursive: true });
});

/** Writes a file under the temporary folder and returns its path. */
function write(relative: string, text: string): string {
  const path = join(folder, relative);
  Deno.mkdirSync(join(path, ".."), { recursive: true });
  Deno.writeTextFileSync(path, text);
  return path;
}

/** Opens the backend a config text describes, as `openLock` does. */
function openFromConfig(text: string, configPath: string) {
  const settings = resolveLockSettings(parseConfig(text, configPath), "r");
  return openBackend(settings.backendOptions, settings.backendContext);
}

/** A factory that returns `body` (JavaScript), as a plugin module. */
function factoryPlugin(name: string, body: string): string {
  return write(
    `factories/${name}.js`,
    `export function createBackend() {\n  ${body}\n}\n`,
  );
}

async function rejectsConfig(
  promise: Promise<unknown>,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof ConfigError, `not a ConfigError: ${error}`);
    assert.match(error.message, pattern);
    assert.doesNotMatch(error.message, /data:text/, "no data: URL in messages");
    return true;
  });
}

// The contract, with the example named the ways a config names a plugin.

const configDir = repoPath("examples");
testBackendContract(
  "plugin by relative path in [backend.NAME] module",
  () =>
    openFromConfig(
      `[default]\nbackend = shared\n\n[backend.shared]\nmodule = ./json-file-backend.js\npath = ${
        join(folder, "relative.json")
      }\n`,
      join(configDir, "stormlock.cfg"),
    ),
);

testBackendContract(
  "plugin by file: URL",
  () =>
    openBackend({
      module: pathToFileURL(EXAMPLE).href,
      path: join(folder, "url.json"),
    }, { name: "shared", section: "backend.shared" }),
);

const dataContext: BackendContext = {
  name: "shared",
  section: "backend.shared",
  configDir,
};
testBackendContract(
  "plugin imported as a data: URL, as in the compiled binary",
  async () => {
    const module = await loadPlugin(
      "./json-file-backend.js",
      dataContext,
      "data",
    );
    return assertBackend(
      await module.createBackend(
        { path: join(folder, "data.json") },
        pluginContext(dataContext),
      ),
      "data",
    );
  },
);

// Naming a plugin.

Deno.test("a backend named by path or URL is a plugin; a bare name is not", () => {
  for (
    const name of [
      "./my.js",
      "../my.js",
      "/opt/my.js",
      "~/my.js",
      "C:\\plugins\\my.js",
      "file:///opt/my.js",
      "https://example.com/my.js",
      "jsr:@me/lock-plugin",
      "npm:lock-plugin",
    ]
  ) {
    assert.equal(isPluginSpecifier(name), true, name);
  }
  for (const name of ["sqlite", "shared", "my.js", "backends/my.js"]) {
    assert.equal(isPluginSpecifier(name), false, name);
  }
});

Deno.test("backend = ./FILE resolves against the config file's folder", async () => {
  const plugin = Deno.readTextFileSync(EXAMPLE);
  write("configs/plugins/json.js", plugin);
  const configPath = join(folder, "configs", "stormlock.cfg");
  const backend = await openFromConfig(
    "[default]\nbackend = ./plugins/json.js\n\n[backend../plugins/json.js]\npath = state/leases.json\n",
    configPath,
  );
  try {
    await backend.acquire("r", "ann", 60);
  } finally {
    await backend.close();
  }
  // Both the module and its relative `path` option came from configs/.
  const saved = JSON.parse(
    Deno.readTextFileSync(join(folder, "configs", "state", "leases.json")),
  );
  assert.equal(saved.r.principal, "ann");
});

Deno.test("a named instance passes its options to the plugin without module", async () => {
  write(
    "echo/echo.js",
    `export const optionNames = ["colour"];
export function createBackend(options, context) {
  globalThis.echoed = { options, name: context.name, section: context.section };
  const none = () => Promise.resolve(null);
  return { acquire: none, release: none, renew: none, current: none, isHeld: none, close: none };
}
`,
  );
  const warnings: string[] = [];
  const settings = resolveLockSettings(
    parseConfig(
      "[default]\nbackend = blue\n\n[backend.blue]\nmodule = ./echo.js\ncolour = blue\ncolor = typo\n",
      join(folder, "echo", "stormlock.cfg"),
    ),
    "r",
  );
  const backend = await openBackend(
    settings.backendOptions,
    settings.backendContext,
    (message) => warnings.push(message),
  );
  await backend.close();
  const echoed = (globalThis as Record<string, unknown>).echoed;
  assert.deepEqual(echoed, {
    options: { colour: "blue", color: "typo" },
    name: "blue",
    section: "backend.blue",
  });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /\[backend\.blue\] color: unknown option/);
});

Deno.test("a missing plugin file names the path it looked at", async () => {
  await rejectsConfig(
    openFromConfig(
      "[default]\nbackend = x\n[backend.x]\nmodule = ./nowhere.js\n",
      join(folder, "stormlock.cfg"),
    ),
    new RegExp(
      `\\./nowhere\\.js \\(${join(folder, "nowhere.js")}\\) does not exist`,
    ),
  );
});

Deno.test("an unknown bare name suggests ./ for a file and lists built-ins", async () => {
  await rejectsConfig(
    openFromConfig("[default]\nbackend = my.js\n", "/etc/stormlock.cfg"),
    /Unknown backend "my\.js".*sqlite, redis.*write a path, e.g\. "\.\/my\.js"/,
  );
  await rejectsConfig(
    openFromConfig(
      "[default]\nbackend = shared\n[backend.shared]\npath = x\n",
      "/etc/stormlock.cfg",
    ),
    /Unknown backend "shared".*add \[backend\.shared\] with module = /,
  );
});

Deno.test("a built-in name can't also name a plugin module", async () => {
  await rejectsConfig(
    openFromConfig(
      `[default]\nbackend = sqlite\n[backend.sqlite]\nmodule = ${EXAMPLE}\n`,
      "/etc/stormlock.cfg",
    ),
    /\[backend\.sqlite\] module: "sqlite" is a built-in backend/,
  );
});

Deno.test("an empty module key asks for the plugin module", async () => {
  await rejectsConfig(
    openFromConfig(
      "[default]\nbackend = x\n[backend.x]\nmodule =\n",
      "/etc/stormlock.cfg",
    ),
    /\[backend\.x\] module: it is empty; name the plugin module/,
  );
});

Deno.test("plain http: plugins are refused", async () => {
  await rejectsConfig(
    openBackend({}, { name: "http://example.com/p.js", section: "x" }),
    /never plain http:/,
  );
});

Deno.test("an https: plugin without --allow-import says which host to allow", async () => {
  // deno test grants no import access to 127.0.0.1, like the launcher.
  await rejectsConfig(
    openBackend({}, {
      name: "https://127.0.0.1:9/plugin.js",
      section: "backend.https://127.0.0.1:9/plugin.js",
    }),
    /needs explicit permission.*STORMLOCK_ALLOW_IMPORT=127\.0\.0\.1:9.*--allow-import=127\.0\.0\.1:9/,
  );
});

// Modules that don't fit.

Deno.test("a module without createBackend is refused, naming what it exports", async () => {
  const path = write("shapes/none.js", "export const createbackend = 1;\n");
  await rejectsConfig(
    openBackend({ module: path }, { name: "x", section: "backend.x" }),
    /does not export a createBackend\(options, context\) function; it exports only createbackend/,
  );
  const fallback = write(
    "shapes/default.js",
    "export default { createBackend() {} };\n",
  );
  await rejectsConfig(
    openBackend({ module: fallback }, { name: "x", section: "backend.x" }),
    /it has one on its default export, but it must be a named export/,
  );
  const number = write("shapes/number.js", "export const createBackend = 5;\n");
  await rejectsConfig(
    openBackend({ module: number }, { name: "x", section: "backend.x" }),
    /function; its createBackend is a number$/,
  );
  const empty = write("shapes/empty.js", "\n");
  await rejectsConfig(
    openBackend({ module: empty }, { name: "x", section: "backend.x" }),
    /it exports nothing/,
  );
});

Deno.test("optionNames must be an array of strings", async () => {
  const path = write(
    "shapes/options.js",
    'export const optionNames = "path";\nexport function createBackend() {}\n',
  );
  await rejectsConfig(
    openBackend({ module: path }, { name: "x", section: "backend.x" }),
    /exports optionNames, but not as an array of strings/,
  );
});

Deno.test("a factory returning a non-Backend is refused, naming the missing methods", async () => {
  const open = (path: string, options: BackendOptions = {}) =>
    openBackend({ module: path, ...options }, {
      name: "half",
      section: "backend.half",
    });
  await rejectsConfig(
    open(factoryPlugin("half", "return { acquire() {}, close() {} };")),
    /Backend "half" \(module .*half\.js\) is not a Backend: it lacks release, renew, current, isHeld$/,
  );
  await rejectsConfig(
    open(factoryPlugin("nothing", "return undefined;")),
    /its createBackend returned undefined, not an object with acquire, release/,
  );
  await rejectsConfig(
    open(
      factoryPlugin(
        "badinit",
        "const f = () => {}; return { acquire: f, release: f, renew: f, current: f, isHeld: f, close: f, init: 1 };",
      ),
    ),
    /it lacks init \(present, but not a function\)/,
  );
});

Deno.test("a factory's own error becomes a ConfigError; Stormlock's pass through", async () => {
  await rejectsConfig(
    openBackend({ module: factoryPlugin("throws", "null.x;") }, {
      name: "t",
      section: "backend.t",
    }),
    /Backend "t" \(module .*throws\.js\) failed in createBackend: Cannot read properties of null/,
  );
  await rejectsConfig(
    openBackend({ module: EXAMPLE }, {
      name: "t",
      section: "backend.t",
      configPath: "/etc/stormlock.cfg",
    }),
    /^\/etc\/stormlock\.cfg \[backend\.t\] path: required/,
  );
});

Deno.test("a plugin that fails to evaluate is a ConfigError with its message", async () => {
  const path = write("shapes/syntax.js", "export const = 1;\n");
  await rejectsConfig(
    openBackend({ module: path }, { name: "x", section: "backend.x" }),
    /syntax\.js.*failed to load: .*/,
  );
});

// The compiled binary's rules, checked by the data: loader.

Deno.test("the import scan finds what a data: module can't resolve", () => {
  const source = [
    "// import x from './commented.js'",
    ' * import("./in-a-doc-comment.js")',
    'import { readFile } from "node:fs/promises";',
    "import {",
    "  helper,",
    '} from "./helper.js";',
    "import './side-effect.js';",
    'export { x } from "npm:ini";',
    'const lazy = () => import("https://example.com/x.js");',
    'const text = "import nothing from here";',
  ].join("\n");
  assert.deepEqual(foreignImports(source), [
    "./helper.js",
    "./side-effect.js",
    "npm:ini",
    "https://example.com/x.js",
  ]);
});

Deno.test("in the binary's mode, a plugin that imports files or packages is refused", async () => {
  write("data/helper.js", "export const x = 1;\n");
  const relative = write(
    "data/relative.js",
    'import { x } from "./helper.js";\nexport function createBackend() { return x; }\n',
  );
  await rejectsConfig(
    loadPlugin(relative, dataContext, "data"),
    /relative\.js imports \.\/helper\.js; a plugin for the compiled binary must be one self-contained JavaScript file .* that imports only node: built-ins\. Bundle it/,
  );
  const npm = write(
    "data/npm.js",
    'import ini from "npm:ini";\nexport function createBackend() { return ini; }\n',
  );
  await rejectsConfig(loadPlugin(npm, dataContext, "data"), /imports npm:ini/);
});

Deno.test("in the binary's mode, TypeScript and remote plugins are refused", async () => {
  const ts = write(
    "data/typed.ts",
    "export function createBackend(): number { return 1; }\n",
  );
  await rejectsConfig(
    loadPlugin(ts, dataContext, "data"),
    /typed\.ts is not plain JavaScript; a plugin for the compiled binary/,
  );
  await rejectsConfig(
    loadPlugin("https://example.com/p.js", dataContext, "data"),
    /can't load in the compiled binary, which loads plugins only from files; download it/,
  );
  await rejectsConfig(
    loadPlugin("./missing.js", dataContext, "data"),
    /missing\.js \(.*\) does not exist/,
  );
});

Deno.test("in the binary's mode, node: built-ins and Deno APIs work", async () => {
  const path = write(
    "data/node.js",
    `import { basename } from "node:path";
export function createBackend() {
  return { name: basename("/a/b.js"), deno: typeof Deno.readTextFile };
}
`,
  );
  const module = await loadPlugin(path, dataContext, "data");
  assert.deepEqual(await module.createBackend({}, pluginContext(dataContext)), {
    name: "b.js",
    deno: "function",
  });
});

Deno.test("in the binary's mode, a plugin's load error names the file, not a data: URL", async () => {
  const path = write("data/throws.js", 'throw new Error("no config here");\n');
  await rejectsConfig(
    loadPlugin(path, dataContext, "data"),
    /throws\.js.*failed to load: no config here/,
  );
});

// Through the CLI, as operators use it.

function pluginConfig(home: CliHome, loader?: string): string {
  home.write("plugins/json-file-backend.js", Deno.readTextFileSync(EXAMPLE));
  return home.write(
    "stormlock.cfg",
    `[default]\nbackend = shared\n\n[backend.shared]\nmodule = ./plugins/json-file-backend.js\npath = ~/.local/state/stormlock/leases.json\n${
      loader ? `; loader: ${loader}\n` : ""
    }`,
  );
}

for (const loader of ["import", "data"]) {
  Deno.test(`cli: a plugin from the config's folder holds the lock (loader ${loader})`, async () => {
    using home = new CliHome();
    const config = pluginConfig(home, loader);
    await assertCliLockCycle(home, "deploy", {
      args: ["-c", config],
      env: { STORMLOCK_PLUGIN_LOADER: loader },
    });
    const saved = Deno.readTextFileSync(
      join(home.home, ".local", "state", "stormlock", "leases.json"),
    );
    assert.deepEqual(JSON.parse(saved), {});
  });
}

Deno.test("cli: a plugin that is not a Backend exits 78 naming what it lacks", async () => {
  using home = new CliHome();
  home.write(
    "half.js",
    "export function createBackend() { return { acquire() {} }; }\n",
  );
  const config = home.write(
    "stormlock.cfg",
    "[default]\nbackend = ./half.js\n",
  );
  const result = await home.run(["-c", config, "current", "r"]);
  assert.equal(result.code, 78);
  assert.equal(result.stdout, "");
  assert.equal(
    result.stderr,
    `stormlock: Backend module ./half.js is not a Backend: it lacks release, renew, current, isHeld, close\n`,
  );
});

Deno.test("cli: a plugin breaking the binary's rules exits 78 under STORMLOCK_PLUGIN_LOADER=data", async () => {
  using home = new CliHome();
  home.write("lib/helper.js", "export const x = 1;\n");
  home.write(
    "split.js",
    'import { x } from "./lib/helper.js";\nexport function createBackend() { return x; }\n',
  );
  const config = home.write(
    "stormlock.cfg",
    "[default]\nbackend = ./split.js\n",
  );
  const result = await home.run(["-c", config, "current", "r"], {
    STORMLOCK_PLUGIN_LOADER: "data",
  });
  assert.equal(result.code, 78);
  assert.equal(result.stdout, "");
  assert.match(
    result.stderr,
    /^stormlock: Backend module \.\/split\.js \(.*split\.js\) imports \.\/lib\/helper\.js; a plugin for the compiled binary must be/,
  );
  assert.equal(result.stderr.trim().split("\n").length, 1);
});

Deno.test("cli: an https: plugin needs STORMLOCK_ALLOW_IMPORT, which the launcher passes on", async () => {
  using home = new CliHome();
  // Port 9 answers nothing, so no module is ever fetched or locked.
  const config = home.write(
    "stormlock.cfg",
    "[default]\nbackend = https://127.0.0.1:9/plugin.js\n",
  );
  const refused = await home.run(["-c", config, "current", "r"]);
  assert.equal(refused.code, 78);
  assert.match(
    refused.stderr,
    /needs explicit permission, since a plugin runs with all of Stormlock's; set STORMLOCK_ALLOW_IMPORT=127\.0\.0\.1:9/,
  );
  const allowed = await home.run(["-c", config, "current", "r"], {
    STORMLOCK_ALLOW_IMPORT: "127.0.0.1:9",
  });
  assert.equal(allowed.code, 78);
  // Permission granted: now it is the download that fails.
  assert.doesNotMatch(allowed.stderr, /needs explicit permission/);
  assert.match(
    allowed.stderr,
    /failed to load: Import 'https:\/\/127\.0\.0\.1:9\/plugin\.js' failed/,
  );
});

Deno.test("a TypeScript plugin bundled with deno bundle loads in the binary's mode", async () => {
  write("bundle/helper.ts", "export const answer: number = 42;\n");
  const entry = write(
    "bundle/plugin.ts",
    `import { answer } from "./helper.ts";
import { basename } from "node:path";
export function createBackend(): { answer: number; name: string } {
  return { answer, name: basename("/x/y.js") };
}
`,
  );
  const output = join(folder, "bundle", "plugin.js");
  const bundled = await runDeno(
    ["bundle", "--quiet", "--platform", "deno", "-o", output, entry],
  );
  assert.equal(bundled.code, 0, bundled.stderr);
  const module = await loadPlugin(output, dataContext, "data");
  assert.deepEqual(await module.createBackend({}, pluginContext(dataContext)), {
    answer: 42,
    name: "y.js",
  });
});

Deno.test({
  name:
    "an https: plugin loads under deno run once --allow-import names its host",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = Deno.makeTempDirSync({ prefix: "stormlock-https-" });
    const certificates = await testCertificates(dir);
    const { ca } = certificates;
    const server = serveTls(certificates, Deno.readTextFileSync(EXAMPLE));
    try {
      const host = `127.0.0.1:${server.addr.port}`;
      const config = join(dir, "stormlock.cfg");
      Deno.writeTextFileSync(
        config,
        `[default]\nbackend = web\n\n[backend.web]\nmodule = https://${host}/json-file-backend.js\npath = leases.json\n`,
      );
      // A copy of the lockfile: Deno records the plugin's hash in it.
      const lock = join(dir, "deno.lock");
      Deno.copyFileSync(repoPath("deno.lock"), lock);
      const output = await runDeno([
        "run",
        "--quiet",
        "--no-prompt",
        `--lock=${lock}`,
        `--cert=${ca}`,
        `--allow-import=${host}`,
        "--allow-env",
        "--allow-sys=hostname",
        "--allow-read",
        `--allow-write=${dir}`,
        repoPath("main.ts"),
        "-c",
        config,
        "acquire",
        "r",
      ]);
      assert.equal(output.stderr, "");
      assert.equal(output.code, 0);
      assert.match(output.stdout, /^[0-9a-f]{32}\n$/);
      const saved = JSON.parse(
        Deno.readTextFileSync(join(dir, "leases.json")),
      );
      assert.equal(saved.r.id, output.stdout.trim());
      assert.match(Deno.readTextFileSync(lock), new RegExp(host));
    } finally {
      await server.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
