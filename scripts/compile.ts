/**
 * `deno task compile`: builds one standalone `stormlock` executable per
 * target into `dist/`, with the CLI's permissions baked in, every built-in
 * backend embedded, and a SHA-256 checksum next to each binary.
 *
 * ```sh
 * deno task compile                      # all five targets into dist/
 * deno task compile --target x86_64-unknown-linux-gnu
 * deno task compile --validate           # no denort download: see below
 * ```
 *
 * `deno compile` downloads the `denort` runtime for each target. Where that
 * is impossible (CI here), `--validate` runs the whole pipeline (type check,
 * module graph, includes, embedding) against generated placeholder runtimes
 * of the right format (ELF, Mach-O, PE) into `dist/validate/`. Those files
 * can't run. A `DENORT_BIN` you set yourself is used for every target, and
 * must match each target's format.
 *
 * @module
 */
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { builtinBackendNames } from "../lib/composition/registry.ts";
import { VERSION } from "../lib/kit/version.ts";

const root = new URL("..", import.meta.url).pathname;

/** Every target Stormlock ships a binary for. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/** One of {@linkcode TARGETS}. */
export type Target = typeof TARGETS[number];

/**
 * The permissions baked into the binary, as `deno run` flags. Writes are
 * not limited to the state folder as in `scripts/stormlock`: a binary's
 * paths are fixed at compile time, and the SQLite `path` may be anywhere.
 * `--allow-run` is there for `stormlock run`, which starts the command it
 * is given and signals its process group. `--allow-sys` is bare because
 * Deno's node:https asks for sys access to "ca" (the system certificates),
 * which no `--allow-sys=LIST` can name.
 */
export const PERMISSIONS: readonly string[] = [
  "--no-prompt",
  "--allow-env",
  "--allow-sys",
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-run",
];

/** The file name of a target's binary. */
export function binaryName(target: Target): string {
  return `stormlock-${target}${target.includes("windows") ? ".exe" : ""}`;
}

/** The executable format a target's runtime must have. */
export function runtimeFormat(target: Target): "elf" | "macho" | "pe" {
  if (target.includes("linux")) return "elf";
  if (target.includes("apple")) return "macho";
  return "pe";
}

/** The format of an executable, from its first bytes. */
export function detectFormat(bytes: Uint8Array): "elf" | "macho" | "pe" | "?" {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length >= 4 && view.getUint32(0) === 0x7f454c46) return "elf";
  if (bytes.length >= 4 && view.getUint32(0, true) === 0xfeedfacf) {
    return "macho";
  }
  if (bytes.length >= 2 && view.getUint16(0, true) === 0x5a4d) return "pe";
  return "?";
}

/**
 * The smallest runtime stand-in `deno compile` accepts for a target: an
 * ELF with one segment; a Mach-O with `__TEXT`, `__LINKEDIT` and a code signature
 * slot (Deno inserts a segment and re-signs); a PE32+ with one section
 * (Deno adds its data as a resource). None of them runs.
 */
export function placeholderRuntime(target: Target): Uint8Array {
  const format = runtimeFormat(target);
  const arm = target.startsWith("aarch64");
  if (format === "elf") {
    // Header, one PT_LOAD over the headers, and a section table holding
    // only .shstrtab: Deno adds its note section and segment after them.
    const bytes = new Uint8Array(320);
    const view = new DataView(bytes.buffer);
    bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]); // ELF64, little endian
    view.setUint16(16, 2, true); // ET_EXEC
    view.setUint16(18, arm ? 183 : 62, true); // EM_AARCH64 / EM_X86_64
    view.setUint32(20, 1, true);
    view.setBigUint64(24, 0x400078n, true); // entry
    view.setBigUint64(32, 64n, true); // program headers at
    view.setBigUint64(40, 192n, true); // section headers at
    view.setUint16(52, 64, true);
    view.setUint16(54, 56, true);
    view.setUint16(56, 1, true);
    view.setUint16(58, 64, true);
    view.setUint16(60, 2, true);
    view.setUint16(62, 1, true); // .shstrtab is section 1
    view.setUint32(64, 1, true); // PT_LOAD
    view.setUint32(68, 5, true); // r-x
    view.setBigUint64(80, 0x400000n, true);
    view.setBigUint64(88, 0x400000n, true);
    view.setBigUint64(96, 192n, true);
    view.setBigUint64(104, 192n, true);
    view.setBigUint64(112, 0x1000n, true);
    bytes.set(new TextEncoder().encode("\0.shstrtab\0"), 128);
    view.setUint32(256, 1, true); // name at 1
    view.setUint32(260, 3, true); // SHT_STRTAB
    view.setBigUint64(280, 128n, true);
    view.setBigUint64(288, 11n, true);
    view.setBigUint64(304, 1n, true);
    return bytes;
  }
  if (format === "macho") {
    const bytes = new Uint8Array(4096 + 16);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, 0xfeedfacf, true);
    view.setUint32(4, arm ? 0x0100000c : 0x01000007, true);
    view.setUint32(8, arm ? 0 : 3, true);
    view.setUint32(12, 2, true); // MH_EXECUTE
    view.setUint32(16, 3, true); // three load commands …
    view.setUint32(20, 72 + 72 + 16, true); // … of this many bytes
    let at = 32;
    const segment = (name: string, address: bigint, offset: number) => {
      view.setUint32(at, 0x19, true); // LC_SEGMENT_64
      view.setUint32(at + 4, 72, true);
      bytes.set(new TextEncoder().encode(name), at + 8);
      view.setBigUint64(at + 24, address, true);
      view.setBigUint64(at + 32, 0x4000n, true);
      view.setBigUint64(at + 40, BigInt(offset), true);
      view.setBigUint64(at + 48, offset === 0 ? 4096n : 16n, true);
      view.setUint32(at + 56, offset === 0 ? 5 : 1, true);
      view.setUint32(at + 60, offset === 0 ? 5 : 1, true);
      at += 72;
    };
    segment("__TEXT", 0x100000000n, 0);
    segment("__LINKEDIT", 0x100004000n, 4096);
    view.setUint32(at, 0x1d, true); // LC_CODE_SIGNATURE
    view.setUint32(at + 4, 16, true);
    view.setUint32(at + 8, 4096, true);
    view.setUint32(at + 12, 16, true);
    return bytes;
  }
  const bytes = new Uint8Array(0x600);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, 0x5a4d, true); // MZ
  view.setUint32(0x3c, 0x40, true);
  view.setUint32(0x40, 0x4550, true); // PE\0\0
  view.setUint16(0x44, arm ? 0xaa64 : 0x8664, true);
  view.setUint16(0x46, 1, true); // one section
  view.setUint16(0x54, 240, true); // optional header size
  view.setUint16(0x56, 0x22, true); // executable, large address aware
  const optional = 0x58;
  view.setUint16(optional, 0x20b, true); // PE32+
  view.setUint32(optional + 4, 0x200, true);
  view.setUint32(optional + 16, 0x1000, true);
  view.setUint32(optional + 20, 0x1000, true);
  view.setBigUint64(optional + 24, 0x140000000n, true);
  view.setUint32(optional + 32, 0x1000, true); // section alignment
  view.setUint32(optional + 36, 0x200, true); // file alignment
  view.setUint16(optional + 40, 6, true);
  view.setUint16(optional + 48, 6, true);
  view.setUint32(optional + 56, 0x2000, true); // image size
  view.setUint32(optional + 60, 0x400, true); // header size
  view.setUint16(optional + 68, 3, true); // console
  view.setUint16(optional + 70, 0x8160, true);
  view.setBigUint64(optional + 72, 0x100000n, true); // stack reserve
  view.setBigUint64(optional + 80, 0x1000n, true); // stack commit
  view.setBigUint64(optional + 88, 0x100000n, true); // heap reserve
  view.setBigUint64(optional + 96, 0x1000n, true); // heap commit
  view.setUint32(optional + 108, 16, true); // data directories
  const section = optional + 240;
  bytes.set(new TextEncoder().encode(".text"), section);
  view.setUint32(section + 8, 0x200, true);
  view.setUint32(section + 12, 0x1000, true);
  view.setUint32(section + 16, 0x200, true);
  view.setUint32(section + 20, 0x400, true);
  view.setUint32(section + 36, 0x60000020, true);
  bytes[0x400] = 0xc3;
  return bytes;
}

/** A built-in backend's entry file: its folder's `mod.ts`. */
function backendFile(name: string): string {
  return `backends/${name}/mod.ts`;
}

/** The built-in backend files, which every binary embeds. */
export function backendFiles(): string[] {
  return builtinBackendNames().map(backendFile);
}

/** The `deno compile` arguments for one target. */
export function compileArgs(target: Target, output: string): string[] {
  return [
    "compile",
    "--target",
    target,
    "--output",
    output,
    ...PERMISSIONS,
    ...backendFiles().flatMap((file) => ["--include", file]),
    "main.ts",
  ];
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    await Deno.readFile(path),
  );
  return Array.from(
    new Uint8Array(digest),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
}

/** A reason to stop the build, printed without a stack trace. */
class BuildError extends Error {}

function fail(message: string): never {
  throw new BuildError(message);
}

/** Checks what must hold before any build: the version and the includes. */
function preflight(): void {
  const config = JSON.parse(Deno.readTextFileSync(join(root, "deno.json")));
  if (config.version !== VERSION) {
    fail(
      `deno.json has version ${config.version}, but lib/kit/version.ts has ${VERSION}; make them equal`,
    );
  }
  for (const name of builtinBackendNames()) {
    const file = backendFile(name);
    try {
      Deno.statSync(join(root, file));
    } catch {
      fail(
        `lib/composition/registry.ts names the built-in backend ${name}, but ${file} is missing`,
      );
    }
  }
}

/** The command line, for argument errors. */
export const USAGE =
  "deno task compile [--target TARGET]... [--out FOLDER] [--validate] [--verbose]";

/** Bad arguments: one line and exit 64, as the CLI's usage errors. */
class UsageError extends Error {}

/** Whether `error` is node:util parseArgs refusing the arguments. */
function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}

function parseCommandLine(args: string[]) {
  try {
    return parseArgs({
      args,
      options: {
        target: { type: "string", multiple: true },
        out: { type: "string" },
        validate: { type: "boolean" },
        verbose: { type: "boolean" },
      },
    }).values;
  } catch (error) {
    if (!isParseArgsError(error)) throw error;
    throw new UsageError((error as Error).message);
  }
}

async function main(): Promise<void> {
  const values = parseCommandLine(Deno.args);
  const targets = (values.target ?? [...TARGETS]) as Target[];
  for (const target of targets) {
    if (!TARGETS.includes(target)) {
      throw new UsageError(
        `unknown target ${target}; choose from ${TARGETS.join(", ")}`,
      );
    }
  }
  preflight();
  const out = values.out ??
    join(root, "dist", values.validate ? "validate" : "");
  Deno.mkdirSync(out, { recursive: true });
  const runtimes = Deno.makeTempDirSync({ prefix: "stormlock-denort-" });
  const given = Deno.env.get("DENORT_BIN");
  if (values.validate) {
    console.log(
      `compile: --validate: placeholder runtimes; the files in ${out} can't run`,
    );
  } else if (given) {
    console.log(`compile: DENORT_BIN=${given} is every target's runtime`);
  }

  const sums: string[] = [];
  try {
    for (const target of targets) {
      let runtime = given;
      if (values.validate) {
        runtime = join(runtimes, target);
        Deno.writeFileSync(runtime, placeholderRuntime(target));
      } else if (given) {
        const format = detectFormat(Deno.readFileSync(given).subarray(0, 4));
        if (format !== runtimeFormat(target)) {
          fail(
            `DENORT_BIN=${given} is ${format} but ${target} needs a ${
              runtimeFormat(target)
            } runtime; use --validate to check every target without denort`,
          );
        }
      }
      const output = join(out, binaryName(target));
      // deno compile won't overwrite a file it didn't write, e.g. a partial one.
      await Deno.remove(output).catch(() => {});
      const started = performance.now();
      const result = await new Deno.Command(Deno.execPath(), {
        args: compileArgs(target, output),
        cwd: root,
        env: {
          NO_COLOR: "1",
          ...(runtime ? { DENORT_BIN: runtime } : {}),
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(result.stdout) +
        new TextDecoder().decode(result.stderr);
      if (!result.success) {
        console.error(log);
        fail(`${target} failed (exit ${result.code})`);
      }
      if (values.verbose) console.log(log);
      const hash = await sha256(output);
      const name = binaryName(target);
      Deno.writeTextFileSync(`${output}.sha256`, `${hash}  ${name}\n`);
      sums.push(`${hash}  ${name}`);
      const size = Deno.statSync(output).size / 1e6;
      const seconds = (performance.now() - started) / 1000;
      console.log(
        `compile: ${relative(Deno.cwd(), output)} ${size.toFixed(1)} MB in ${
          seconds.toFixed(1)
        } s`,
      );
    }
  } finally {
    Deno.removeSync(runtimes, { recursive: true });
  }
  Deno.writeTextFileSync(join(out, "SHA256SUMS"), `${sums.join("\n")}\n`);
  console.log(
    `compile: stormlock ${VERSION}, ${targets.length} target${
      targets.length === 1 ? "" : "s"
    }; checksums in ${relative(Deno.cwd(), join(out, "SHA256SUMS"))}`,
  );
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`compile: ${error.message}; usage: ${USAGE}`);
      Deno.exit(64);
    }
    if (!(error instanceof BuildError)) throw error;
    console.error(`compile: ${error.message}`);
    Deno.exit(1);
  }
}
