/**
 * Plugin backends: the example plugin passes the contract when loaded the
 * ways a config names it, a Stormlock 0.1 plugin still works, a module
 * that doesn't fit gets a ConfigError naming what is missing, and a plugin
 * that misbehaves gets a clear error naming it, never an internal error
 * or a leaked lease.
 */
import assert from "assert";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  BackendUnavailableError,
  ConfigError,
  openBackend,
  parseConfig,
  resolveLockSettings,
} from "../mod.ts";
import type { Backend, BackendContext, BackendOptions } from "../mod.ts";
import { definitionOf } from "../lib/composition/plugin_adapter.ts";
import { kitContext } from "../lib/kit/define.ts";
import {
  foreignImports,
  isPluginSpecifier,
  loadPlugin,
} from "../lib/composition/plugin.ts";
import { testBackendContract } from "../lib/testing/mod.ts";
import { serveTls, testCertificates } from "./certificates.ts";
import {
  assertCleanExit,
  assertCliLockCycle,
  CliHome,
  repoPath,
  runDeno,
  uniqueResource,
} from "./helpers.ts";

const EXAMPLE = repoPath("examples", "json-file-backend.js");
const MINIMAL = repoPath("tests", "fixtures", "minimal-plugin.js");
const LEGACY = repoPath("tests", "fixtures", "legacy-plugin.js");
const FAULTY = repoPath("tests", "fixtures", "faulty-plugin.js");
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

/** A 0.1 plugin whose factory runs `body` (JavaScript). */
function factoryPlugin(name: string, body: string): string {
  return write(
    `factories/${name}.js`,
    `export function createBackend() {\n  ${body}\n}\n`,
  );
}

/** A plugin whose `open` runs `body` (JavaScript). */
function definitionPlugin(name: string, body: string): string {
  return write(
    `definitions/${name}.js`,
    `export const backend = {
  name: "${name}",
  options: {},
  capabilities: { clock: "host" },
  open(settings, context) {
    ${body}
  },
};
`,
  );
}

/** Opens the plugin module at `path` as the instance `[backend.NAME]`. */
function openModule(
  path: string,
  name: string,
  options: BackendOptions = {},
): Promise<Backend> {
  return openBackend({ module: path, ...options }, {
    name,
    section: `backend.${name}`,
  });
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

/** Reads what the example plugin keeps in its file. */
function savedLeases(path: string): Record<string, { id: string }> {
  return JSON.parse(Deno.readTextFileSync(path)).leases;
}

// The contract, with the example named the ways a config names a plugin.

const configDir = repoPath("examples");
testBackendContract(
  "plugin by relative path in [backend.NAME] module",
  (extra = {}) =>
    openFromConfig(
      `[default]\nbackend = shared\n\n[backend.shared]\nmodule = ./json-file-backend.js\npath = ${
        join(folder, "relative.json")
      }\n${
        Object.entries(extra).map(([key, value]) => `${key} = ${value}\n`)
          .join("")
      }`,
      join(configDir, "stormlock.cfg"),
    ),
);

testBackendContract(
  "plugin by file: URL",
  (extra) =>
    openBackend({
      module: pathToFileURL(EXAMPLE).href,
      path: join(folder, "url.json"),
      ...extra,
    }, { name: "shared", section: "backend.shared" }),
);

const dataContext: BackendContext = {
  name: "shared",
  section: "backend.shared",
  configDir,
};
testBackendContract(
  "plugin imported as a data: URL, as in the compiled binary",
  async (extra) => {
    const module = await loadPlugin(
      "./json-file-backend.js",
      dataContext,
      "data",
    );
    return await definitionOf(module, "shared").createBackend(
      { path: join(folder, "data.json"), ...extra },
      dataContext,
      { plugin: "module ./json-file-backend.js" },
    );
  },
);

/**
 * The contract's cases for host, reason and link, which a 0.1 plugin has
 * no way to store: its `acquire` gets only resource, principal and TTL.
 */
const DETAILS_CASES = /stores host, reason and link|can change the reason/;

{
  // Registers the legacy run with those cases shown as ignored.
  const deno = Deno as { test: typeof Deno.test };
  const register = deno.test;
  deno.test = ((definition: Deno.TestDefinition) =>
    register({
      ...definition,
      ignore: DETAILS_CASES.test(definition.name),
    })) as typeof Deno.test;
  try {
    testBackendContract(
      "a Stormlock 0.1 plugin exporting createBackend",
      () => openModule(LEGACY, "legacy"),
    );
  } finally {
    deno.test = register;
  }
}

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
  let id: string;
  try {
    id = (await backend.acquire("r", "ann", 60)).id;
  } finally {
    await backend.close();
  }
  // Both the module and its relative `path` option came from configs/.
  const saved = savedLeases(join(folder, "configs", "state", "leases.json"));
  assert.equal(saved.r.id, id);
});

Deno.test("a named instance gets its parsed options, and a warning for unknown keys", async () => {
  const path = write(
    "echo/echo.js",
    `export const backend = {
  name: "echo",
  options: {
    colour: { kind: "text", doc: "A colour." },
    shades: { kind: "integer", default: 3, doc: "How many." },
  },
  capabilities: { clock: "host" },
  open(settings, context) {
    globalThis.echoed = { settings, name: context.name, section: context.section };
    const none = () => null;
    return { label: "echo", acquire: none, end: none, renew: none, current: none, close() {} };
  },
};
`,
  );
  const warnings: string[] = [];
  const settings = resolveLockSettings(
    parseConfig(
      `[default]\nbackend = blue\n\n[backend.blue]\nmodule = ${path}\ncolour = blue\ncolor = typo\n`,
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
    settings: { colour: "blue", shades: 3 },
    name: "blue",
    section: "backend.blue",
  });
  assert.deepEqual(warnings, [
    `${
      join(folder, "echo", "stormlock.cfg")
    } [backend.blue] color: unknown option, ignored (known: colour, shades)`,
  ]);
});

Deno.test("a 0.1 plugin gets its raw options, and optionNames still name the known ones", async () => {
  write(
    "echo/legacy.js",
    `export const optionNames = ["colour"];
export function createBackend(options, context) {
  globalThis.echoedLegacy = { options, name: context.name, section: context.section };
  const none = () => Promise.resolve(null);
  return { acquire: none, release: none, renew: none, current: none, isHeld: none, close: none };
}
`,
  );
  const warnings: string[] = [];
  const settings = resolveLockSettings(
    parseConfig(
      "[default]\nbackend = blue\n\n[backend.blue]\nmodule = ./legacy.js\ncolour = blue\ncolor = typo\n",
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
  assert.deepEqual((globalThis as Record<string, unknown>).echoedLegacy, {
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

// The example's file.

Deno.test("the example keeps fences and history in its file, across instances", async () => {
  const path = join(folder, "kept.json");
  const first = await openModule(EXAMPLE, "kept", { path });
  const lease = await first.acquire("r", "ann@host", 60, { reason: "one" });
  await first.release("r", lease.id);
  await first.close();
  const second = await openModule(EXAMPLE, "kept", { path });
  try {
    const next = await second.acquire("r", "bob@host", 60);
    assert.equal(next.fence, lease.fence + 1, "the fence is never reused");
    const kinds = (await second.history("r")).map((event) => event.kind);
    assert.deepEqual(kinds, ["acquired", "released", "acquired"]);
  } finally {
    await second.close();
  }
  const saved = JSON.parse(Deno.readTextFileSync(path));
  assert.deepEqual(Object.keys(saved).sort(), ["events", "fences", "leases"]);
  assert.equal(saved.fences.r, lease.fence + 1);
});

Deno.test("the example reads a file written by the 0.1 template", async () => {
  const path = write("old/leases.json", "");
  const id = "0123456789abcdef0123456789abcdef";
  const created = Date.now();
  Deno.writeTextFileSync(
    path,
    JSON.stringify({
      old: { id, principal: "ann", created, expires: created + 60_000 },
    }),
  );
  const backend = await openModule(EXAMPLE, "old", { path });
  try {
    const held = await backend.current("old");
    assert.equal(held?.id, id);
    assert.equal(held?.fence, 0, "0.1 leases carry no fence");
    await backend.acquire("new", "bob", 60);
    await backend.release("old", id);
  } finally {
    await backend.close();
  }
  assert.deepEqual(Object.keys(savedLeases(path)), ["new"]);
});

Deno.test("the example names its file when the JSON is corrupt", async () => {
  const path = write("corrupt/leases.json", "{ not json");
  const backend = await openModule(EXAMPLE, "corrupt", { path });
  try {
    for (
      const call of [
        () => backend.current("r"),
        () => backend.acquire("r", "ann", 60),
      ]
    ) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof BackendUnavailableError, String(error));
        assert.match(
          error.message,
          new RegExp(`^JSON file ${path} is not valid JSON \\(.*\\); fix it`),
        );
        return true;
      });
    }
  } finally {
    await backend.close();
  }
  assert.equal(Deno.readTextFileSync(path), "{ not json", "left untouched");
});

Deno.test({
  name:
    "the example gives up at its timeout while the lock file is held, and then changes nothing",
  // The blocked flock finishes in the background after the test's own.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const path = join(folder, "blocked", "leases.json");
    const backend = await openModule(EXAMPLE, "blocked", {
      path,
      timeout: "300ms",
    });
    Deno.mkdirSync(join(folder, "blocked"), { recursive: true });
    const holder = await Deno.open(`${path}.lock`, {
      create: true,
      write: true,
    });
    await holder.lock(true);
    try {
      const started = Date.now();
      await assert.rejects(
        backend.acquire("r", "ann", 60),
        (error: unknown) => {
          assert.ok(error instanceof BackendUnavailableError, String(error));
          assert.match(
            error.message,
            /^JSON file .*leases\.json did not answer within 300ms \(timeout\)/,
          );
          return true;
        },
      );
      assert.ok(Date.now() - started < 3000, "bounded by the timeout");
    } finally {
      holder.close();
    }
    // The acquire still waiting for the lock file sees its signal aborted.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await backend.current("r"), null);
    await backend.close();
  },
});

// Modules that don't fit.

Deno.test("a module with neither backend nor createBackend is refused, naming what it exports", async () => {
  const path = write("shapes/none.js", "export const createbackend = 1;\n");
  await rejectsConfig(
    openModule(path, "x"),
    /exports neither a backend definition nor a createBackend\(options, context\) function; it exports only createbackend/,
  );
  const fallback = write(
    "shapes/default.js",
    "export default { createBackend() {} };\n",
  );
  await rejectsConfig(
    openModule(fallback, "x"),
    /it has one on its default export, but it must be a named export/,
  );
  const number = write("shapes/number.js", "export const createBackend = 5;\n");
  await rejectsConfig(
    openModule(number, "x"),
    /function; its createBackend is a number$/,
  );
  const empty = write("shapes/empty.js", "\n");
  await rejectsConfig(openModule(empty, "x"), /it exports nothing/);
});

Deno.test("a backend export without open(settings, context) is refused", async () => {
  const path = write(
    "shapes/no-open.js",
    'export const backend = { name: "x", options: {} };\n',
  );
  await rejectsConfig(
    openModule(path, "x"),
    /no-open\.js exports backend, but not as a definition with an open\(settings, context\) function; see "Writing a backend"/,
  );
});

Deno.test("optionNames must be an array of strings", async () => {
  const path = write(
    "shapes/options.js",
    'export const optionNames = "path";\nexport function createBackend() {}\n',
  );
  await rejectsConfig(
    openModule(path, "x"),
    /exports optionNames, but not as an array of strings/,
  );
});

Deno.test("an open() returning something other than a store is refused, naming what it lacks", async () => {
  await rejectsConfig(
    openModule(
      definitionPlugin("half", "return { acquire() {}, close() {} };"),
      "half",
    ),
    /^Backend "half" \(module .*half\.js\) did not open a store: open returned an object, which lacks end, renew, current; fix the backend$/,
  );
  await rejectsConfig(
    openModule(definitionPlugin("nothing", "return undefined;"), "nothing"),
    /^Backend "nothing" \(module .*nothing\.js\) did not open a store: open returned nothing; fix the backend$/,
  );
});

Deno.test("a 0.1 factory returning something other than a backend is refused at open, naming what it lacks", async () => {
  await rejectsConfig(
    openModule(
      factoryPlugin("half", "return { acquire() {}, close() {} };"),
      "half",
    ),
    /^Backend "half" \(module .*half\.js\) .*lacks release, renew, current/,
  );
  await rejectsConfig(
    openModule(factoryPlugin("nothing", "return undefined;"), "nothing"),
    /^Backend "nothing" \(module .*nothing\.js\) did not open a store: createBackend returned nothing/,
  );
});

Deno.test("an error thrown while opening becomes a ConfigError naming the plugin; Stormlock's pass through", async () => {
  await rejectsConfig(
    openModule(definitionPlugin("throws", "null.x;"), "t"),
    /^Backend "t" \(module .*throws\.js\) failed in open: Cannot read properties of null.*; fix the plugin or its options$/,
  );
  await rejectsConfig(
    openModule(factoryPlugin("throws", "null.x;"), "t"),
    /^Backend "t" \(module .*throws\.js\) failed in open: Cannot read properties of null/,
  );
  await rejectsConfig(
    openModule(
      definitionPlugin(
        "refuses",
        'throw context.optionError("colour", "not a colour");',
      ),
      "t",
    ),
    /^<config> \[backend\.t\] colour: not a colour$/,
  );
  await rejectsConfig(
    openBackend({ module: EXAMPLE }, {
      name: "t",
      section: "backend.t",
      configPath: "/etc/stormlock.cfg",
    }),
    /^\/etc\/stormlock\.cfg \[backend\.t\] path: required; The JSON file/,
  );
});

Deno.test("a plugin that fails to evaluate is a ConfigError with its message", async () => {
  const path = write("shapes/syntax.js", "export const = 1;\n");
  await rejectsConfig(openModule(path, "x"), /syntax\.js.*failed to load: .*/);
});

// Plugins that misbehave once open.

/** What the faulty fixture's `fault` option makes acquire do, and say. */
const FAULTS: Record<string, RegExp> = {
  "error": /failed in acquire: the disk is on fire; fix the plugin/,
  "null": /failed in acquire: threw null; fix the plugin/,
  "string": /failed in acquire: the disk is on fire; fix the plugin/,
  "returns-string": /returned a string from acquire, not a lease of "[^"]+"/,
  "returns-object": /returned an object from acquire, not a lease of "[^"]+"/,
};
const FAULT_NAMES: Record<string, string> = {
  "error": "throws an Error",
  "null": "throws null",
  "string": "throws a string",
  "returns-string": "returns a string",
  "returns-object": "returns {}",
};

for (const [fault, expected] of Object.entries(FAULTS)) {
  Deno.test(
    `a plugin's acquire that ${
      FAULT_NAMES[fault]
    } fails clearly, naming the plugin, and leaks no lease`,
    async () => {
      const faulty = await openModule(FAULTY, "faulty", { fault });
      const sound = await openModule(FAULTY, "faulty");
      try {
        const resource = uniqueResource();
        await assert.rejects(
          faulty.acquire(resource, "ann@host", 60),
          (error: unknown) => {
            assert.ok(error instanceof BackendUnavailableError, String(error));
            assert.match(error.message, /^Backend "faulty" \(module .*\) /);
            assert.match(error.message, expected);
            return true;
          },
        );
        // The fixture took the lease before failing: the kit must undo it.
        assert.equal(await sound.current(resource), null, "a leaked lease");
        const next = await sound.acquire(resource, "bob@host", 60);
        assert.equal(next.principal, "bob@host");
      } finally {
        await faulty.close();
        await sound.close();
      }
    },
  );
}

Deno.test("every primitive's failure names the plugin and the operation", async () => {
  const sound = await openModule(FAULTY, "faulty");
  try {
    for (const fault of ["error", "null", "string"]) {
      for (
        const [faultIn, action] of Object.entries({
          current: "read",
          renew: "renew",
          release: "release",
        })
      ) {
        const resource = uniqueResource();
        const lease = await sound.acquire(resource, "ann@host", 60);
        const faulty = await openModule(FAULTY, "faulty", {
          fault,
          fault_in: faultIn,
        });
        const call = faultIn === "current"
          ? faulty.current(resource)
          : faultIn === "renew"
          ? faulty.renew(resource, lease.id, 60)
          : faulty.release(resource, lease.id);
        await assert.rejects(call, (error: unknown) => {
          assert.ok(error instanceof BackendUnavailableError, String(error));
          assert.match(
            error.message,
            new RegExp(
              `^Backend "faulty" \\(module .*\\) failed in ${action}: .*; fix the plugin`,
            ),
          );
          return true;
        });
        await faulty.close();
      }
    }
    for (const fault of ["returns-string", "returns-object"]) {
      for (const faultIn of ["current", "renew"]) {
        const resource = uniqueResource();
        const lease = await sound.acquire(resource, "ann@host", 60);
        const faulty = await openModule(FAULTY, "faulty", {
          fault,
          fault_in: faultIn,
        });
        await assert.rejects(
          faultIn === "current"
            ? faulty.current(resource)
            : faulty.renew(resource, lease.id, 60),
          (error: unknown) => {
            assert.ok(error instanceof BackendUnavailableError, String(error));
            assert.match(
              error.message,
              new RegExp(`returned an? \\w+ from ${faultIn}, not a lease of`),
            );
            return true;
          },
        );
        await faulty.close();
      }
    }
  } finally {
    await sound.close();
  }
});

Deno.test("a synchronous or throwing close() still closes the backend", async () => {
  for (const close of ["sync", "throws"]) {
    const backend = await openModule(FAULTY, "faulty", { close });
    const lease = await backend.acquire(uniqueResource(), "ann@host", 60);
    await backend.close();
    await assert.rejects(backend.current(lease.resource), /closed/);
  }
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

Deno.test("the example and the docs' minimal plugin import only node: built-ins", () => {
  for (const path of [EXAMPLE, MINIMAL]) {
    assert.deepEqual(foreignImports(Deno.readTextFileSync(path)), [], path);
  }
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
  assert.deepEqual(
    await module.createBackend!({}, kitContext(dataContext)),
    { name: "b.js", deno: "function" },
  );
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
    const saved = savedLeases(
      join(home.home, ".local", "state", "stormlock", "leases.json"),
    );
    assert.deepEqual(saved, {});
  });
}

Deno.test("cli: a plugin with a synchronous close() acquires, prints the id and exits 0", async () => {
  using home = new CliHome();
  home.write("minimal-plugin.js", Deno.readTextFileSync(MINIMAL));
  home.write("faulty-plugin.js", Deno.readTextFileSync(FAULTY));
  const config = home.write(
    "stormlock.cfg",
    "[default]\nbackend = memory\n\n[on-faulty]\nbackend = faulty\n\n[backend.memory]\nmodule = ./minimal-plugin.js\n\n[backend.faulty]\nmodule = ./faulty-plugin.js\nclose = sync\n",
  );
  for (const loader of ["import", "data"]) {
    for (const resource of ["on-memory", "on-faulty"]) {
      const result = await home.run(
        ["-c", config, "acquire", resource],
        { STORMLOCK_PLUGIN_LOADER: loader },
      );
      assert.equal(result.stderr, "", `${resource}, loader ${loader}`);
      assert.equal(result.code, 0);
      assert.match(result.stdout, /^[0-9a-f]{32}\n$/);
    }
  }
});

Deno.test("cli: a plugin that throws or answers nonsense exits 69 naming it, never 70", async () => {
  using home = new CliHome();
  home.write("faulty-plugin.js", Deno.readTextFileSync(FAULTY));
  for (const [fault, expected] of Object.entries(FAULTS)) {
    const config = home.write(
      "stormlock.cfg",
      `[default]\nbackend = faulty\n\n[backend.faulty]\nmodule = ./faulty-plugin.js\nfault = ${fault}\n`,
    );
    const result = await home.run(["-c", config, "acquire", "r"], {
      STORMLOCK_PLUGIN_LOADER: "data",
    });
    assertCleanExit(
      result,
      69,
      new RegExp(
        `^stormlock: Backend "faulty" \\(module \\./faulty-plugin\\.js\\) ${expected.source}`,
      ),
    );
    assert.doesNotMatch(result.stderr, /internal error/);
  }
});

Deno.test("cli: a plugin that is not a Backend exits 78 naming what it lacks", async () => {
  using home = new CliHome();
  home.write(
    "half.js",
    'export const backend = { name: "half", options: {}, capabilities: { clock: "host" }, open() { return { acquire() {} }; } };\n',
  );
  home.write(
    "legacy-half.js",
    "export function createBackend() { return { acquire() {} }; }\n",
  );
  for (const module of ["./half.js", "./legacy-half.js"]) {
    const config = home.write(
      "stormlock.cfg",
      `[default]\nbackend = ${module}\n`,
    );
    const result = await home.run(["-c", config, "current", "r"]);
    assertCleanExit(
      result,
      78,
      new RegExp(
        `^stormlock: Backend "${module.replace(".", "\\.")}" \\(module ${
          module.replace(".", "\\.")
        }\\) .*lacks ${
          module === "./half.js" ? "end" : "release"
        }, renew, current`,
      ),
    );
  }
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
  assert.deepEqual(
    await module.createBackend!({}, kitContext(dataContext)),
    { answer: 42, name: "y.js" },
  );
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
      ], { env: { USER: "tester" } });
      assert.equal(output.stderr, "");
      assert.equal(output.code, 0);
      assert.match(output.stdout, /^[0-9a-f]{32}\n$/);
      assert.equal(
        savedLeases(join(dir, "leases.json")).r.id,
        output.stdout.trim(),
      );
      assert.match(Deno.readTextFileSync(lock), new RegExp(host));
    } finally {
      await server.shutdown();
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
