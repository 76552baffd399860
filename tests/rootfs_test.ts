/**
 * The container image's root filesystem, assembled into a folder by
 * `scripts/rootfs.ts` exactly as the Dockerfile does, runs Stormlock under
 * `chroot`. The `deno` binary stands in for `denort` (they link the same
 * libraries), and Stormlock's sources stand in for what a compiled binary
 * embeds.
 */
import assert from "assert";
import { join } from "node:path";
import {
  BINARY_PATH,
  CA_BUNDLE,
  IMAGE_ENV,
  IMAGE_USER,
  STATE_DIR,
} from "../scripts/rootfs.ts";
import { PERMISSIONS } from "../scripts/compile.ts";
import { VERSION } from "../mod.ts";
import { serveTls, testCertificates } from "./certificates.ts";
import { repoPath } from "./helpers.ts";

/** A host command's absolute path: the chroot runs with the image's PATH. */
function which(name: string): string {
  const output = new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "piped",
  }).outputSync();
  return new TextDecoder().decode(output.stdout).trim() || name;
}

const tools = {
  chroot: which("chroot"),
  mount: which("mount"),
  sh: which("sh"),
  unshare: which("unshare"),
};

/** Whether this process may chroot: root with CAP_SYS_CHROOT. */
function chrootPermitted(): boolean {
  try {
    return new Deno.Command(tools.chroot, { args: ["/", "true"] })
      .outputSync().success;
  } catch {
    return false;
  }
}

const permitted = chrootPermitted();
if (!permitted) {
  console.error(
    "rootfs_test: SKIPPED: chroot isn't permitted here (it needs root, or CAP_SYS_CHROOT and CAP_SYS_ADMIN)",
  );
}

const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the stand-in binary inside the root filesystem as the image's user,
 * with the image's environment. `/proc` is mounted in a private mount
 * namespace, as the container runtime would.
 */
async function inRootfs(root: string, args: string[]): Promise<Run> {
  const { uid, gid } = IMAGE_USER;
  const quoted = [BINARY_PATH, ...args].map((arg) =>
    `'${arg.replaceAll("'", `'"'"'`)}'`
  ).join(" ");
  const output = await new Deno.Command(tools.unshare, {
    args: [
      "--mount",
      tools.sh,
      "-c",
      `${tools.mount} -t proc proc '${root}/proc' && exec ${tools.chroot} --userspec=${uid}:${gid} '${root}' ${quoted}`,
    ],
    clearEnv: true,
    env: {
      ...IMAGE_ENV,
      DENO_DIR: `${IMAGE_USER.home}/.cache/deno`,
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

/** Builds the root filesystem around `deno` and adds Stormlock's sources. */
async function buildRootfs(folder: string): Promise<string> {
  const root = join(folder, "rootfs");
  const built = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-run=ldd",
      repoPath("scripts", "rootfs.ts"),
      "--binary",
      Deno.execPath(),
      "--out",
      root,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(built.success, decoder.decode(built.stderr));
  // What denort would find embedded in a compiled binary.
  Deno.mkdirSync(join(root, "src"));
  Deno.mkdirSync(join(root, "proc"));
  // Deno running beside this test may add and remove a lock file in
  // node_modules while it is copied; such a copy is tried again.
  let copy: Deno.CommandOutput | undefined;
  for (let attempt = 0; attempt < 5 && !copy?.success; attempt++) {
    copy = await new Deno.Command("cp", {
      args: [
        "-a",
        ...["main.ts", "mod.ts", "deno.json", "deno.lock", "lib", "backends"]
          .map((name) => repoPath(name)),
        repoPath("node_modules"),
        join(root, "src"),
      ],
    }).output();
  }
  assert.ok(copy!.success, decoder.decode(copy!.stderr));
  return root;
}

/** `stormlock ARGS` as the compiled binary runs it: baked permissions. */
function cli(...args: string[]): string[] {
  return [
    "run",
    "--quiet",
    "--node-modules-dir=manual",
    ...PERMISSIONS,
    "/src/main.ts",
    ...args,
  ];
}

Deno.test({
  name:
    "the scratch root filesystem runs the CLI under chroot as a non-root user",
  ignore: !permitted,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const folder = Deno.makeTempDirSync({ prefix: "stormlock-rootfs-" });
    try {
      const root = await buildRootfs(folder);

      // The state folder exists in the image, owned by the user: a volume
      // mounted there starts out with that owner, not root's.
      for (const path of [`${IMAGE_USER.home}/.local`, STATE_DIR]) {
        const info = Deno.lstatSync(join(root, path));
        assert.ok(info.isDirectory, `${path} is a folder`);
        assert.equal(info.uid, IMAGE_USER.uid, `${path}'s owner`);
        assert.equal(info.gid, IMAGE_USER.gid, `${path}'s group`);
        assert.equal(info.mode! & 0o777, 0o755, `${path}'s mode`);
      }

      const version = await inRootfs(root, cli("--version"));
      assert.equal(version.stderr, "");
      assert.equal(version.stdout, `${VERSION}\n`);

      const acquire = await inRootfs(root, cli("acquire", "deploy"));
      assert.equal(acquire.stderr, "");
      assert.equal(acquire.code, 0);
      assert.match(acquire.stdout, /^[0-9a-f]{32}\n$/);
      // The default SQLite file, in the user's home inside the rootfs.
      const database = Deno.statSync(
        join(root, STATE_DIR, "stormlock", "locks.db"),
      );
      assert.equal(database.uid, IMAGE_USER.uid);
      assert.equal(database.gid, IMAGE_USER.gid);

      const held = await inRootfs(root, cli("acquire", "deploy"));
      assert.equal(held.code, 2);
      assert.equal(held.stdout, "");
      assert.match(held.stderr, /"deploy" is held by stormlock@/);

      const release = await inRootfs(
        root,
        cli("release", "deploy", acquire.stdout.trim()),
      );
      assert.equal(release.code, 0, release.stderr);
    } finally {
      Deno.removeSync(folder, { recursive: true });
    }
  },
});

Deno.test({
  name: "TLS inside the root filesystem trusts exactly its CA bundle",
  ignore: !permitted,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const folder = Deno.makeTempDirSync({ prefix: "stormlock-rootfs-tls-" });
    const certificates = await testCertificates(folder);
    const server = serveTls(certificates, "trusted");
    try {
      const root = await buildRootfs(folder);
      const fetchIt = [
        "eval",
        `console.log(await (await fetch("https://127.0.0.1:${server.addr.port}/")).text())`,
      ];
      const unknownCa = await inRootfs(root, fetchIt);
      assert.notEqual(unknownCa.code, 0, "a CA outside the bundle is refused");
      assert.match(unknownCa.stderr, /UnknownIssuer|invalid peer certificate/);

      const bundle = join(root, CA_BUNDLE);
      Deno.writeTextFileSync(
        bundle,
        Deno.readTextFileSync(bundle) + Deno.readTextFileSync(certificates.ca),
      );
      const trusted = await inRootfs(root, fetchIt);
      assert.equal(trusted.stderr, "");
      assert.equal(trusted.stdout, "trusted\n");
    } finally {
      await server.shutdown();
      Deno.removeSync(folder, { recursive: true });
    }
  },
});

Deno.test("the Dockerfile builds its scratch stage from scripts/rootfs.ts's folder", () => {
  const dockerfile = Deno.readTextFileSync(repoPath("Dockerfile"));
  const stages = dockerfile.split(/^FROM /m).slice(1);
  const last = stages[stages.length - 1];
  assert.match(last, /^scratch\b/, "the final stage is FROM scratch");
  assert.match(
    dockerfile,
    /RUN deno run [^\n]*scripts\/rootfs\.ts --binary \S+ --out \/rootfs/,
  );
  assert.match(last, /^COPY --from=build \/rootfs\/ \/$/m);
  // The user owns their home in the image, and the state folder in it.
  const { uid, gid, home } = IMAGE_USER;
  assert.match(
    last,
    new RegExp(
      `^COPY --from=build --chown=${uid}:${gid} /rootfs${home}/ ${home}/$`,
      "m",
    ),
  );
  assert.ok(STATE_DIR.startsWith(`${home}/`), "the state folder is in home");
  assert.match(last, new RegExp(`^USER ${uid}:${gid}$`, "m"));
  assert.match(last, new RegExp(`^ENTRYPOINT \\["${BINARY_PATH}"\\]$`, "m"));
  const env = Object.fromEntries(
    [...last.matchAll(/^ENV (\S+)=(\S+)$/gm)].map((
      match,
    ) => [match[1], match[2]]),
  );
  assert.deepEqual(env, IMAGE_ENV);
});

Deno.test({
  name:
    "the scratch root filesystem runs serve with a tokens file, and the http backend works through it",
  ignore: !permitted,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const { openBackend } = await import("../mod.ts");
    const folder = Deno.makeTempDirSync({ prefix: "stormlock-rootfs-" });
    try {
      const root = await buildRootfs(folder);
      const tokens = `${IMAGE_USER.home}/tokens.json`;
      const created = await inRootfs(
        root,
        cli(
          "token",
          "create",
          "ann",
          "--scopes",
          "read,acquire",
          "--tokens",
          tokens,
        ),
      );
      assert.equal(created.code, 0, created.stderr);
      const token = created.stdout.trim();
      const { uid, gid } = IMAGE_USER;
      const quoted = [
        BINARY_PATH,
        ...cli("serve", "--listen", "127.0.0.1:0", "--tokens", tokens),
      ]
        .map((arg) => `'${arg}'`).join(" ");
      const child = new Deno.Command(tools.unshare, {
        args: [
          "--mount",
          tools.sh,
          "-c",
          `${tools.mount} -t proc proc '${root}/proc' && exec ${tools.chroot} --userspec=${uid}:${gid} '${root}' ${quoted}`,
        ],
        clearEnv: true,
        env: {
          ...IMAGE_ENV,
          DENO_DIR: `${IMAGE_USER.home}/.cache/deno`,
          NO_COLOR: "1",
        },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const reader = child.stderr.pipeThrough(new TextDecoderStream())
        .getReader();
      let stderr = "";
      let url: string | undefined;
      try {
        while (url === undefined) {
          const { value, done } = await reader.read();
          if (done) break;
          stderr += value;
          url = /serving (http:\/\/\S+)/.exec(stderr)?.[1];
        }
        assert.ok(url, stderr);
        const file = join(folder, "token");
        Deno.writeTextFileSync(file, token);
        const backend = await openBackend(
          { url, token_file: file, timeout: "5s" },
          { name: "http", section: "backend.http" },
        );
        try {
          const lease = await backend.acquire("deploy", "claimed", 60);
          assert.equal(lease.principal, "ann");
          await backend.release("deploy", lease.id);
        } finally {
          await backend.close();
        }
      } finally {
        child.kill("SIGTERM");
        await child.status;
        await reader.cancel().catch(() => {});
      }
      assert.ok(!stderr.includes(token));
    } finally {
      Deno.removeSync(folder, { recursive: true });
    }
  },
});
