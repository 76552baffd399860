/**
 * `deno task compile`, validated without `denort`: every target builds
 * against a placeholder runtime, embeds every built-in backend, bakes in
 * explicit permissions and writes checksums; a type error, a missing
 * backend file or a version mismatch fails the build.
 */
import assert from "assert";
import { join } from "node:path";
import { VERSION } from "../mod.ts";
import { builtinBackendNames } from "../lib/composition/registry.ts";
import {
  binaryName,
  detectFormat,
  placeholderRuntime,
  runtimeFormat,
  TARGETS,
} from "../scripts/compile.ts";
import { repoPath, runDeno } from "./helpers.ts";

interface Run {
  code: number;
  output: string;
}

/** Runs scripts/compile.ts from `root` with the task's permissions. */
async function compile(
  root: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Run> {
  const { code, stdout, stderr } = await runDeno([
    "run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-run",
    join(root, "scripts", "compile.ts"),
    ...args,
  ], { cwd: root, env });
  return { code, output: stdout + stderr };
}

/** A copy of the sources compile.ts needs, to break on purpose. */
function projectCopy(): string {
  const copy = Deno.makeTempDirSync({ prefix: "stormlock-compile-" });
  for (const name of ["main.ts", "mod.ts", "deno.json", "deno.lock"]) {
    Deno.copyFileSync(repoPath(name), join(copy, name));
  }
  const copyTree = (folder: string) => {
    Deno.mkdirSync(join(copy, folder));
    for (const entry of Deno.readDirSync(repoPath(folder))) {
      const path = join(folder, entry.name);
      if (entry.isDirectory) copyTree(path);
      else if (entry.isFile) {
        Deno.copyFileSync(repoPath(path), join(copy, path));
      }
    }
  };
  copyTree("lib");
  copyTree("backends");
  Deno.mkdirSync(join(copy, "scripts"));
  Deno.copyFileSync(
    repoPath("scripts", "compile.ts"),
    join(copy, "scripts", "compile.ts"),
  );
  Deno.symlinkSync(repoPath("node_modules"), join(copy, "node_modules"));
  return copy;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "compile --validate builds all five targets with checksums",
  sanitizeResources: false,
  fn: async () => {
    const out = Deno.makeTempDirSync({ prefix: "stormlock-dist-" });
    try {
      const run = await compile(repoPath(), ["--validate", "--out", out]);
      assert.equal(run.code, 0, run.output);
      assert.match(run.output, new RegExp(`stormlock ${VERSION}, 5 targets`));
      const sums = Deno.readTextFileSync(join(out, "SHA256SUMS"));
      assert.equal(sums.trim().split("\n").length, TARGETS.length);
      for (const target of TARGETS) {
        const name = binaryName(target);
        const bytes = Deno.readFileSync(join(out, name));
        const line = `${await sha256(bytes)}  ${name}`;
        assert.equal(
          Deno.readTextFileSync(join(out, `${name}.sha256`)),
          `${line}\n`,
        );
        assert.ok(sums.includes(`${line}\n`), `${name} in SHA256SUMS`);
        assert.equal(detectFormat(bytes), runtimeFormat(target));

        const text = new TextDecoder("latin1").decode(bytes);
        for (const backend of builtinBackendNames()) {
          // The registry imports backends by a template literal, so the
          // binary holds each backend's code, found by its definition.
          assert.ok(
            text.includes(`name: "${backend}"`),
            `${name} embeds backends/${backend}/mod.ts`,
          );
        }
        // The status page's own files travel in the module graph.
        for (
          const part of [
            "Skip to the locks", // page/index.html
            "prefers-color-scheme", // page/app.css
            "was not inlined by page.ts", // page/app.js
          ]
        ) {
          assert.ok(text.includes(part), `${name} embeds the page: ${part}`);
        }
        // The permissions deno compile recorded: explicit, never -A.
        const permissions = /"permissions":(\{[^}]*\})/.exec(text)?.[1];
        assert.ok(permissions, `${name} records its permissions`);
        const parsed = JSON.parse(permissions);
        // Bare: node:https asks for sys access to "ca" (see compile.ts).
        assert.deepEqual(parsed.allow_sys, []);
        // For `stormlock run`.
        assert.deepEqual(parsed.allow_run, []);
        assert.equal(parsed.allow_ffi, null);
        assert.equal(parsed.prompt, false);
      }
    } finally {
      Deno.removeSync(out, { recursive: true });
    }
  },
});

/**
 * Registers a test that breaks a copy of the project with `breakIt`, and
 * checks that compiling it with `args` fails and says each of `says`.
 */
function testBrokenBuild(
  name: string,
  breakIt: (copy: string) => void,
  args: string[],
  says: RegExp[],
): void {
  Deno.test({
    name,
    sanitizeResources: false,
    fn: async () => {
      const copy = projectCopy();
      try {
        breakIt(copy);
        const run = await compile(copy, args);
        assert.notEqual(run.code, 0);
        for (const pattern of says) assert.match(run.output, pattern);
      } finally {
        Deno.removeSync(copy, { recursive: true });
      }
    },
  });
}

testBrokenBuild(
  "compile fails on a type error",
  (copy) => {
    const lock = join(copy, "lib", "composition", "lock.ts");
    Deno.writeTextFileSync(
      lock,
      `${Deno.readTextFileSync(lock)}\nexport const broken: number = "text";\n`,
    );
  },
  ["--validate", "--target", "x86_64-unknown-linux-gnu"],
  [
    /TS2322/,
    /at file:\/\/\S+\/lib\/composition\/lock\.ts:\d+:\d+/,
    /x86_64-unknown-linux-gnu failed/,
  ],
);

testBrokenBuild(
  "compile fails when a built-in backend's file is missing",
  (copy) => Deno.removeSync(join(copy, "backends", "etcd", "mod.ts")),
  ["--validate"],
  [
    /lib\/composition\/registry\.ts names the built-in backend etcd, but backends\/etcd\/mod\.ts is missing/,
  ],
);

testBrokenBuild(
  "compile refuses a version in deno.json that lib/kit/version.ts lacks",
  (copy) => {
    const path = join(copy, "deno.json");
    const config = JSON.parse(Deno.readTextFileSync(path));
    config.version = "9.9.9";
    Deno.writeTextFileSync(path, JSON.stringify(config));
  },
  ["--validate"],
  [
    new RegExp(
      `deno\\.json has version 9\\.9\\.9, but lib/kit/version\\.ts has ${VERSION}`,
    ),
  ],
);

Deno.test("a DENORT_BIN of the wrong format is refused before building", async () => {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-denort-" });
  try {
    const runtime = join(folder, "denort");
    Deno.writeFileSync(runtime, placeholderRuntime("x86_64-unknown-linux-gnu"));
    const run = await compile(repoPath(), [
      "--target",
      "aarch64-apple-darwin",
      "--out",
      join(folder, "out"),
    ], { DENORT_BIN: runtime });
    assert.notEqual(run.code, 0);
    assert.match(
      run.output,
      /is elf but aarch64-apple-darwin needs a macho runtime; use --validate/,
    );
  } finally {
    Deno.removeSync(folder, { recursive: true });
  }
});

Deno.test("compile refuses bad arguments with one usage line and exit 64", async () => {
  for (
    const args of [
      ["--bogus"],
      ["stray"],
      ["--out"],
      ["--target", "pdp11-unknown-unix"],
    ]
  ) {
    const run = await compile(repoPath(), args);
    assert.equal(run.code, 64, `${args.join(" ")}: ${run.output}`);
    const lines = run.output.trimEnd().split("\n");
    assert.equal(lines.length, 1, `${args.join(" ")}: ${run.output}`);
    assert.match(lines[0], /^compile: .+; usage: deno task compile /);
    assert.doesNotMatch(run.output, /\bat \S+:\d+:\d+/, "no stack trace");
  }
});

Deno.test("deno.json and lib/kit/version.ts carry the same version", () => {
  const config = JSON.parse(Deno.readTextFileSync(repoPath("deno.json")));
  assert.equal(config.version, VERSION);
});
