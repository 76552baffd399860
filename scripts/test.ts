/**
 * The test command: checks formatting, lint and types, starts the real
 * servers in `scripts/servers/`, runs every test, stops the servers, and
 * ends with `N passed, N failed`.
 */
import { dirname, join } from "node:path";
import { log, machineChanges } from "./servers/_server.ts";
import type { ServerModule, StartedServer } from "./servers/_server.ts";

const root = new URL("..", import.meta.url).pathname;
const deno = Deno.execPath();
let passed = 0;
let failed = 0;

async function step(name: string, args: string[]): Promise<void> {
  log(name);
  const { success } = await new Deno.Command(deno, {
    args,
    cwd: root,
    env: { NO_COLOR: "1" },
  })
    .output().then((output) => {
      Deno.stdout.writeSync(output.stdout);
      Deno.stderr.writeSync(output.stderr);
      return output;
    });
  if (success) passed++;
  else {
    failed++;
    log(`FAILED: ${name}`);
  }
}

/** Relative modules a file imports, as absolute paths. */
function localImports(file: string, text: string): string[] {
  const found = text.matchAll(
    /(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+\.ts)["']/g,
  );
  return [...found].map((match) => join(dirname(file), match[1]));
}

/**
 * The servers some test files need: a file (or a local module it imports)
 * that reads `STORMLOCK_TEST_<NAME>` needs the server called `name`, and a
 * line `// test-servers: NAME…` asks for servers a file starts itself.
 */
function serversNeeded(files: string[], names: string[]): Set<string> {
  const needed = new Set<string>();
  const seen = new Set<string>();
  const queue = files.map((file) => join(root, file));
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue; // a folder or a missing file: deno test will say
    }
    for (const name of names) {
      if (text.includes(`STORMLOCK_TEST_${name.toUpperCase()}`)) {
        needed.add(name);
      }
    }
    for (const line of text.matchAll(/^\/\/ test-servers: (.*)$/gm)) {
      for (const name of line[1].split(/\s+/)) needed.add(name);
    }
    queue.push(...localImports(file, text));
  }
  return needed;
}

async function startServers(
  workDir: string,
  files: string[],
): Promise<StartedServer[]> {
  const started: StartedServer[] = [];
  const folder = join(root, "scripts", "servers");
  const modules: ServerModule[] = [];
  for (
    const file of [...Deno.readDirSync(folder)]
      .map((entry) => entry.name)
      .filter((name) => name.endsWith(".ts") && !name.startsWith("_"))
      .sort()
  ) {
    modules.push(await import(join(folder, file)));
  }
  // Named files, or a folder: only what they need; no files: everything.
  const wanted = files.length > 0 &&
      files.every((file) => file.endsWith(".ts"))
    ? serversNeeded(files, modules.map((module) => module.name))
    : new Set(modules.map((module) => module.name));
  const skipped = modules.filter((module) => !wanted.has(module.name));
  if (skipped.length > 0) {
    log(
      `not starting ${
        skipped.map((module) => module.name).join(", ")
      }: the named files do not use them`,
    );
  }
  for (const module of modules) {
    if (!wanted.has(module.name)) continue;
    log(`starting ${module.name}`);
    try {
      const server = await module.start(join(workDir, module.name));
      started.push(server);
    } catch (error) {
      // A missing server fails the run; its backend's tests fail too.
      failed++;
      log(`FAILED to start ${module.name}: ${(error as Error).message}`);
    }
  }
  return started;
}

/**
 * Tests that read /proc, which Deno grants only with --allow-all: the
 * browser driver (playwright-core), and the tests that watch other
 * processes (`run`'s process group, the servers of the fault suite and of
 * the original's CLI test). They run on their own with it; nothing else
 * does.
 */
const ALL_ACCESS_TESTS = [
  "tests/browser_test.ts",
  "tests/faults_test.ts",
  "tests/original_cli_test.ts",
  "tests/run_test.ts",
];

/** Runs `deno test`, echoing its output, and adds its summary to ours. */
async function runTests(
  env: Record<string, string>,
  files: string[],
  permissions: string[],
) {
  const child = new Deno.Command(deno, {
    args: ["test", "--parallel", ...permissions, "--doc", ...files],
    cwd: root,
    env: { ...env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    Deno.stdout.writeSync(chunk);
    text += decoder.decode(chunk, { stream: true });
  }
  const status = await child.status;
  const summary = /(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(text);
  if (!summary) {
    failed++;
    log("FAILED: deno test printed no summary");
    return;
  }
  passed += Number(summary[1]);
  failed += Number(summary[2]);
  if (!status.success && Number(summary[2]) === 0) failed++;
}

const filters = Deno.args;
const workDir = Deno.makeTempDirSync({ prefix: "stormlock-test-" });
if (filters.length === 0) {
  await step("deno fmt --check", ["fmt", "--check"]);
  await step("deno lint", ["lint"]);
  await step("deno check", [
    "check",
    "main.ts",
    "mod.ts",
    "tests/",
    "scripts/",
    "backends/",
    "lib/",
    "examples/",
  ]);
}
const servers = await startServers(workDir, filters);
try {
  const env = Object.assign({}, ...servers.map((server) => server.env));
  const explicit = [
    "--allow-env",
    "--allow-read",
    "--allow-write",
    "--allow-net",
    "--allow-run",
    "--allow-sys",
  ];
  const allAccess = filters.length > 0
    ? filters.filter((file) => ALL_ACCESS_TESTS.some((b) => file.endsWith(b)))
    : ALL_ACCESS_TESTS;
  const rest = filters.length > 0
    ? filters.filter((file) => !allAccess.includes(file))
    : [
      ...ALL_ACCESS_TESTS.map((file) => `--ignore=${file}`),
      "tests/",
      "lib/",
      "backends/",
      "mod.ts",
    ];
  if (rest.length > 0) await runTests(env, rest, explicit);
  if (allAccess.length > 0) {
    await runTests(env, allAccess, ["--allow-all"]);
  }
} finally {
  log("stopping servers");
  await Promise.all(servers.map((server) => server.stop().catch(() => {})));
  Deno.removeSync(workDir, { recursive: true });
}
if (machineChanges.length > 0) {
  log(`this run changed the machine: ${machineChanges.join("; ")}`);
}
console.log(`${passed} passed, ${failed} failed`);
Deno.exit(failed === 0 ? 0 : 1);
