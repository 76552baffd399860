/**
 * Starts a throwaway PostgreSQL (Debian's, installed with apt-get when
 * missing) on a free loopback port, with a password-protected role over
 * TCP and TLS available, for the postgres backend's tests.
 *
 * PostgreSQL refuses to run as root, so under root the cluster belongs to
 * a dedicated system user and every server command runs through `runuser`.
 */
import { join } from "node:path";
import {
  announceChange,
  ensureApt,
  freePort,
  log,
  run,
  waitUntil,
} from "./_server.ts";
import type { StartedServer } from "./_server.ts";

import {
  cleanups,
  Daemon,
  exited,
  type FaultServer,
  processTree,
  signalTree,
  until,
} from "./_daemon.ts";

/** The server's name in the test run. */
export const name = "postgres";

/** The system user that owns the cluster when the tests run as root. */
const SERVER_USER = "stormlock-pg";
/** The role and database the tests use; the password is random per run. */
const ROLE = "stormlock";

/** Debian keeps each major version's programs in its own folder. */
function findBinDir(): string | undefined {
  const root = "/usr/lib/postgresql";
  let versions: number[] = [];
  try {
    versions = [...Deno.readDirSync(root)]
      .map((entry) => Number(entry.name))
      .filter((version) => Number.isInteger(version))
      .sort((a, b) => b - a);
  } catch {
    return undefined;
  }
  for (const version of versions) {
    const bin = join(root, String(version), "bin");
    try {
      if (Deno.statSync(join(bin, "initdb")).isFile) return bin;
    } catch { /* not this one */ }
  }
  return undefined;
}

async function ensureServerUser(): Promise<void> {
  try {
    await run("id", ["-u", SERVER_USER]);
  } catch {
    announceChange(`create system user ${SERVER_USER} to run PostgreSQL`);
    await run("useradd", [
      "--system",
      "--no-create-home",
      "--home-dir",
      "/nonexistent",
      "--shell",
      "/usr/sbin/nologin",
      SERVER_USER,
    ]);
  }
}

/**
 * The folder the cluster lives in: `workDir` when the server's user can
 * reach it, else a private folder in /tmp. The runner's temporary folder is
 * mode 0700 and root's, and widening its (or /root's) permissions would be
 * a side effect on a folder this script does not own.
 */
async function clusterDir(workDir: string, asRoot: boolean): Promise<string> {
  Deno.mkdirSync(workDir, { recursive: true });
  if (!asRoot) return workDir;
  await run("chown", [SERVER_USER, workDir]);
  try {
    await run("runuser", ["-u", SERVER_USER, "--", "test", "-w", workDir]);
    return workDir;
  } catch {
    const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "stormlock-pg-" });
    await run("chown", [SERVER_USER, dir]);
    return dir;
  }
}

/** A random password with characters that need escaping in a URL. */
function newPassword(): string {
  const hex = Array.from(
    crypto.getRandomValues(new Uint8Array(12)),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
  return `pw/${hex}@:?#%`;
}

/**
 * Starts the server in `workDir`. Its env: `STORMLOCK_TEST_POSTGRES_URL`
 * (role `stormlock` with a password, over TCP, TLS not required) and
 * `STORMLOCK_TEST_POSTGRES_CA` (the server's self-signed certificate, for
 * `sslmode=verify-full`) and `STORMLOCK_TEST_POSTGRES_SOCKET_DIR` (the unix
 * socket's folder, where any role logs in without a password).
 */
export async function start(workDir: string): Promise<StartedServer> {
  if (!findBinDir()) await ensureApt("pg_ctlcluster", ["postgresql"]);
  await ensureApt("openssl", ["openssl"]);
  const bin = findBinDir();
  if (!bin) throw new Error("postgresql is installed, but initdb is missing");

  const asRoot = Deno.uid() === 0;
  if (asRoot) await ensureServerUser();
  const dir = await clusterDir(workDir, asRoot);
  const asServer = (command: string, args: string[]) =>
    asRoot
      ? {
        command: "runuser",
        args: ["-u", SERVER_USER, "--", command, ...args],
      }
      : { command, args };
  const runAsServer = (command: string, args: string[]) => {
    const { command: cmd, args: all } = asServer(command, args);
    return run(cmd, all);
  };

  const data = join(dir, "data");
  const cert = join(dir, "server.crt");
  const key = join(dir, "server.key");
  // The certificate names both forms of the address, for verify-full.
  await runAsServer("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=localhost",
    "-addext",
    "subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-keyout",
    key,
    "-out",
    cert,
  ]);
  await runAsServer("chmod", ["600", key]);
  // UTF8 so that any resource name round-trips; scram over TCP so that the
  // password in the URL is really checked; trust only on the socket, which
  // sits in a folder only the server's user (and root) can enter.
  await runAsServer(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--no-locale",
    "--no-sync",
    "--no-instructions",
    "--auth-local=trust",
    "--auth-host=scram-sha-256",
  ]);

  const port = freePort();
  const { command, args } = asServer(join(bin, "postgres"), [
    "-D",
    data,
    "-p",
    String(port),
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    `unix_socket_directories=${dir}`,
    "-c",
    "max_connections=200",
    "-c",
    "fsync=off",
    "-c",
    "ssl=on",
    "-c",
    `ssl_cert_file=${cert}`,
    "-c",
    `ssl_key_file=${key}`,
  ]);
  const logFile = join(dir, "postgres.log");
  const daemon = new Daemon("postgres", command, args, logFile);
  daemon.start();

  const stop = async () => {
    // SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for clients.
    try {
      const pid = Number(
        Deno.readTextFileSync(join(data, "postmaster.pid")).split("\n")[0],
      );
      if (pid > 0) Deno.kill(pid, "SIGINT");
    } catch { /* not running */ }
    await daemon.stop(null);
    if (dir !== workDir) Deno.removeSync(dir, { recursive: true });
  };

  const psql = (sql: string) =>
    run(join(bin, "psql"), [
      "-X",
      "-q",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      dir,
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      "postgres",
      "-c",
      sql,
    ]);
  const password = newPassword();
  try {
    await waitUntil("postgres", () => psql("SELECT 1"));
    // The password has no single quote, so this literal is safe.
    await psql(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${password}'`);
    await psql(`CREATE DATABASE ${ROLE} OWNER ${ROLE}`);
  } catch (error) {
    await stop();
    let tail = "";
    try {
      tail = Deno.readTextFileSync(logFile).split("\n").slice(-20).join("\n");
    } catch { /* no log */ }
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
  const url = `postgres://${ROLE}:${
    encodeURIComponent(password)
  }@127.0.0.1:${port}/${ROLE}`;
  log(`postgres listening on 127.0.0.1:${port}`);
  return {
    env: {
      STORMLOCK_TEST_POSTGRES_URL: url,
      STORMLOCK_TEST_POSTGRES_CA: cert,
      STORMLOCK_TEST_POSTGRES_SOCKET_DIR: dir,
    },
    stop,
  };
}

// A dedicated server for the fault suite.

/** Whether the fault tests can run PostgreSQL here. */
export function hasPostgres(): boolean {
  return findBinDir() !== undefined;
}

/** A PostgreSQL cluster run with `pg_ctl`, with `pg_ctl restart` too. */
export interface PostgresServer extends FaultServer {
  /** `pg_ctl restart -m fast`: clients are disconnected, data kept. */
  restartFast(): Promise<void>;
  /** `pg_ctl stop -m fast`. */
  stopFast(): Promise<void>;
}

/**
 * Makes and starts a PostgreSQL cluster with `initdb` and `pg_ctl`, as
 * the unprivileged user `stormlock-pg` when run as root. TCP on loopback
 * is trusted: the URL is `postgres://postgres@127.0.0.1:PORT/postgres`.
 *
 * @param workDir A folder for scratch files (the cluster itself lives
 * under /tmp, where the server's user can reach it).
 * @returns The running server.
 */
export async function startPostgres(workDir: string): Promise<PostgresServer> {
  const bin = findBinDir();
  if (!bin) throw new Error("PostgreSQL is not installed (initdb, pg_ctl)");
  const asRoot = Deno.uid() === 0;
  if (asRoot) await ensureServerUser();
  Deno.mkdirSync(workDir, { recursive: true });
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "stormlock-pgf-" });
  if (asRoot) await run("chown", [SERVER_USER, dir]);
  const asServer = (command: string, args: string[]) =>
    asRoot
      ? run("runuser", ["-u", SERVER_USER, "--", command, ...args], {
        cwd: dir,
      })
      : run(command, args, { cwd: dir });
  const data = join(dir, "data");
  const port = freePort();
  await asServer(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "-E",
    "UTF8",
    "--no-locale",
    "--no-sync",
    "--no-instructions",
    "--auth-local=trust",
    "--auth-host=trust",
  ]);
  const logFile = join(dir, "postgres.log");
  const options = [
    `-p ${port}`,
    "-c listen_addresses=127.0.0.1",
    "-c unix_socket_directories=''",
    "-c max_connections=100",
  ].join(" ");
  const pgCtl = (...args: string[]) =>
    asServer(join(bin, "pg_ctl"), ["-D", data, "-l", logFile, ...args]);
  const postmaster = () => {
    try {
      return Number(
        Deno.readTextFileSync(join(data, "postmaster.pid")).split("\n")[0],
      );
    } catch {
      return 0;
    }
  };
  let pid = 0;
  const ready = async () => {
    await until("postgres answering", () =>
      run(join(bin, "psql"), [
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-c",
        "SELECT 1",
      ]));
    pid = postmaster();
  };
  const killTree = () => {
    if (pid > 0) signalTree(pid, "SIGKILL");
  };
  const logTail = () => {
    try {
      return Deno.readTextFileSync(logFile).split("\n").slice(-20).join("\n");
    } catch {
      return "";
    }
  };
  const start = async () => {
    try {
      await pgCtl("start", "-w", "-t", "30", "-o", options);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${logTail()}`);
    }
    cleanups.add(killTree);
    await ready();
  };
  const kill = async () => {
    if (pid <= 0) return;
    const tree = processTree(pid);
    signalTree(pid, "SIGCONT");
    signalTree(pid, "SIGKILL");
    for (const p of tree) await exited(p);
    pid = 0;
    // The dead postmaster may linger as a zombie until init reaps it, and
    // PostgreSQL would take its pid for a live server: the crash is
    // certain, so drop the stale lock file, as a reboot would.
    try {
      Deno.removeSync(join(data, "postmaster.pid"));
    } catch { /* none */ }
  };
  try {
    await start();
  } catch (error) {
    killTree();
    Deno.removeSync(dir, { recursive: true });
    throw error;
  }
  return {
    backend: "postgres",
    port,
    options: (at = port) => ({
      url: `postgres://postgres@127.0.0.1:${at}/postgres`,
    }),
    pause: () => signalTree(pid, "SIGSTOP"),
    resume: () => signalTree(pid, "SIGCONT"),
    kill,
    start,
    async restartFast() {
      await pgCtl("restart", "-m", "fast", "-w", "-t", "30", "-o", options);
      await ready();
    },
    async stopFast() {
      await pgCtl("stop", "-m", "fast", "-w", "-t", "30");
      pid = 0;
    },
    close: async () => {
      await kill();
      cleanups.delete(killTree);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}
