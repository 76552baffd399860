/**
 * Assembles the container image's root filesystem in a folder: the
 * `stormlock` binary, the glibc libraries it links (as `ldd` reports them),
 * CA certificates, and a non-root user. The `Dockerfile` runs this script
 * in its build stage and copies the folder into a `FROM scratch` image, so
 * the image and the folder that `tests/rootfs_test.ts` chroots into hold
 * the same files.
 *
 * ```sh
 * deno run --allow-read --allow-write --allow-run=ldd scripts/rootfs.ts \
 *   --binary dist/stormlock-x86_64-unknown-linux-gnu --out /tmp/rootfs
 * ```
 *
 * @module
 */
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

/** The image's user: not root, with a home for the state folder. */
export const IMAGE_USER = {
  name: "stormlock",
  uid: 65532,
  gid: 65532,
  home: "/home/stormlock",
} as const;

/**
 * The default state folder (`$HOME/.local/state`): the SQLite backend keeps
 * `stormlock/locks.db` in it, and docs/install.md mounts a volume there.
 */
export const STATE_DIR = `${IMAGE_USER.home}/.local/state`;

/** Where the binary lives in the image; the entrypoint. */
export const BINARY_PATH = "/usr/local/bin/stormlock";

/** The CA bundle, at the path Debian and OpenSSL look in. */
export const CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * The image's environment. `DENO_TLS_CA_STORE=system` makes TLS trust the
 * image's CA bundle (replace or extend it for a private CA) instead of the
 * roots built into Deno.
 */
export const IMAGE_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/local/bin",
  HOME: IMAGE_USER.home,
  USER: IMAGE_USER.name,
  SSL_CERT_FILE: CA_BUNDLE,
  DENO_TLS_CA_STORE: "system",
};

/** One thing in the root filesystem. */
export type Entry =
  | { kind: "file"; path: string; from: string; mode: number }
  | { kind: "text"; path: string; text: string; mode: number }
  | { kind: "dir"; path: string; mode: number; owner?: number };

/**
 * The shared libraries a dynamically linked executable loads, with the
 * dynamic loader, as `ldd` lists them.
 *
 * @throws {Error} when `ldd` fails or a library is not found.
 */
export async function linkedLibraries(binary: string): Promise<string[]> {
  const output = await new Deno.Command("ldd", {
    args: [binary],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(
      `ldd ${binary} failed: ${
        new TextDecoder().decode(output.stderr).trim() || text.trim()
      }`,
    );
  }
  const libraries: string[] = [];
  for (const line of text.split("\n")) {
    const linked = /^\s*(\S+) => (\S+)/.exec(line);
    if (linked && linked[2] === "not") {
      throw new Error(`ldd ${binary}: ${linked[1]} not found`);
    }
    const path = linked?.[2] ?? /^\s*(\/\S+) \(0x/.exec(line)?.[1];
    if (path?.startsWith("/")) libraries.push(path);
  }
  return libraries;
}

/**
 * Every entry of the root filesystem for a binary.
 *
 * @param binary The Linux `stormlock` binary (or, for tests, the `deno`
 * binary standing in for `denort`).
 * @param caBundle The CA certificates to copy in.
 */
export async function rootfsEntries(
  binary: string,
  caBundle: string = CA_BUNDLE,
): Promise<Entry[]> {
  const { name, uid, gid, home } = IMAGE_USER;
  const libraries = await linkedLibraries(binary);
  return [
    { kind: "dir", path: "/tmp", mode: 0o1777 },
    { kind: "dir", path: home, mode: 0o755, owner: uid },
    // The default state folder exists in the image, owned by the user, so a
    // volume mounted there (`-v stormlock-state:${STATE_DIR}`) starts out
    // with that owner instead of root; Docker copies the image folder's
    // ownership into a new named volume.
    { kind: "dir", path: `${home}/.local`, mode: 0o755, owner: uid },
    { kind: "dir", path: STATE_DIR, mode: 0o755, owner: uid },
    { kind: "file", path: BINARY_PATH, from: binary, mode: 0o755 },
    ...libraries.map((path): Entry => ({
      kind: "file",
      path,
      from: path,
      mode: 0o755,
    })),
    { kind: "file", path: CA_BUNDLE, from: caBundle, mode: 0o644 },
    {
      kind: "text",
      path: "/etc/passwd",
      text: `root:x:0:0:root:/root:/sbin/nologin\n` +
        `${name}:x:${uid}:${gid}:${name}:${home}:/sbin/nologin\n`,
      mode: 0o644,
    },
    {
      kind: "text",
      path: "/etc/group",
      text: `root:x:0:\n${name}:x:${gid}:\n`,
      mode: 0o644,
    },
  ];
}

/**
 * Writes the entries under `out`, which must not exist or be empty.
 * Ownership is set where permitted: as root, as in the image build.
 */
export function assembleRootfs(entries: Entry[], out: string): void {
  let existing: Deno.DirEntry[] = [];
  try {
    existing = [...Deno.readDirSync(out)];
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (existing.length > 0) {
    throw new Error(`${out} is not empty; give a new folder`);
  }
  for (const entry of entries) {
    const target = join(out, entry.path);
    Deno.mkdirSync(entry.kind === "dir" ? target : dirname(target), {
      recursive: true,
    });
    if (entry.kind === "file") Deno.copyFileSync(entry.from, target);
    if (entry.kind === "text") Deno.writeTextFileSync(target, entry.text);
    Deno.chmodSync(target, entry.mode);
    if (entry.kind === "dir" && entry.owner !== undefined) {
      try {
        Deno.chownSync(target, entry.owner, entry.owner);
      } catch (error) {
        // Not root: the Dockerfile sets the owner with COPY --chown anyway.
        if (!(error instanceof Deno.errors.PermissionDenied)) throw error;
      }
    }
  }
}

/** The size of a folder's files, in bytes. */
export function folderSize(path: string): number {
  let total = 0;
  for (const entry of Deno.readDirSync(path)) {
    const child = join(path, entry.name);
    if (entry.isDirectory) total += folderSize(child);
    else if (entry.isFile) total += Deno.statSync(child).size;
  }
  return total;
}

if (import.meta.main) {
  const usage =
    "usage: rootfs.ts --binary STORMLOCK_LINUX_BINARY --out FOLDER [--ca-bundle FILE]";
  let values: { binary?: string; out?: string; "ca-bundle"?: string } = {};
  try {
    values = parseArgs({
      args: Deno.args,
      options: {
        binary: { type: "string" },
        out: { type: "string" },
        "ca-bundle": { type: "string" },
      },
    }).values;
  } catch (error) {
    console.error(`rootfs: ${(error as Error).message}; ${usage}`);
    Deno.exit(64);
  }
  if (!values.binary || !values.out) {
    console.error(usage);
    Deno.exit(64);
  }
  try {
    const entries = await rootfsEntries(values.binary, values["ca-bundle"]);
    assembleRootfs(entries, values.out);
    console.log(
      `rootfs: ${entries.length} entries, ${
        (folderSize(values.out) / 1e6).toFixed(1)
      } MB in ${values.out}`,
    );
  } catch (error) {
    console.error(`rootfs: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
