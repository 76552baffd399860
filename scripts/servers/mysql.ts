/**
 * Starts a throwaway MariaDB (Debian's `mariadb-server`, installed with
 * apt-get when missing) on a free loopback port, with a password-protected
 * user over TCP and TLS available, for the mysql backend's tests.
 *
 * MariaDB won't run as root unless told to, so under root its data folder
 * belongs to the `mysql` system user (made by the Debian package) and the
 * server drops to it with `--user`.
 *
 * @module
 */
import { join } from "node:path";
import {
  ensureApt,
  freePort,
  hasCommand,
  log,
  run,
  waitUntil,
} from "./_server.ts";
import type { StartedServer } from "./_server.ts";
import { Daemon, type FaultServer, until } from "./_daemon.ts";

/** The server's name in the test run. */
export const name = "mysql";

/** The system user Debian's package makes for the server. */
const SERVER_USER = "mysql";
/** The user and database the tests use; the password is random per run. */
const USER = "stormlock";

/** A random password with characters that need care in a URL or a shell. */
function newPassword(): string {
  const hex = Array.from(
    crypto.getRandomValues(new Uint8Array(12)),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
  return `pw/${hex}@:?#%`;
}

/** The server's programs, found after installing the package if needed. */
export async function mariadbPrograms(): Promise<
  { server: string; installDb: string; client: string }
> {
  await ensureApt("mariadbd", ["mariadb-server", "mariadb-client"]);
  return {
    server: "mariadbd",
    installDb: "mariadb-install-db",
    client: "mariadb",
  };
}

/**
 * A folder for the server's files that its user can reach: the runner's
 * temporary folder is root's and mode 0700, so under root it is a private
 * folder in /tmp owned by the server's user.
 */
export async function serverDir(prefix: string): Promise<string> {
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix });
  if (Deno.uid() === 0) await run("chown", [SERVER_USER, dir]);
  return dir;
}

/** Arguments that make `mariadbd` a private server in `dir` on `port`. */
export function serverArgs(dir: string, port: number): string[] {
  return [
    "--no-defaults",
    `--datadir=${join(dir, "data")}`,
    `--socket=${join(dir, "mysqld.sock")}`,
    `--pid-file=${join(dir, "mysqld.pid")}`,
    `--port=${port}`,
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=32M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=2",
    "--max-connections=300",
    ...(Deno.uid() === 0 ? [`--user=${SERVER_USER}`] : []),
  ];
}

/** Makes the system tables in `dir/data`; root logs in by socket only. */
export async function installDb(installDb: string, dir: string) {
  const asRoot = Deno.uid() === 0;
  await run(installDb, [
    "--no-defaults",
    `--datadir=${join(dir, "data")}`,
    "--skip-test-db",
    "--auth-root-authentication-method=socket",
    ...(asRoot ? [`--user=${SERVER_USER}`] : [
      `--auth-root-socket-user=${Deno.env.get("USER") ?? "root"}`,
    ]),
  ]);
}

/** Runs SQL as the server's root over its socket. */
export function rootSql(client: string, dir: string, sql: string) {
  return run(client, [
    "--no-defaults",
    `--socket=${join(dir, "mysqld.sock")}`,
    "-uroot",
    "-e",
    sql,
  ]);
}

/**
 * Starts the server in a folder of its own. Its env:
 * `STORMLOCK_TEST_MYSQL_HOST`, `_PORT`, `_USER`, `_PASSWORD` and
 * `_DATABASE` (a user with every right on that database, over TCP, TLS
 * offered but not required), and `STORMLOCK_TEST_MYSQL_CA` (the CA that
 * signed the server's certificate for 127.0.0.1 and localhost).
 */
export async function start(_workDir: string): Promise<StartedServer> {
  const programs = await mariadbPrograms();
  await ensureApt("openssl", ["openssl"]);
  const dir = await serverDir("stormlock-mysql-");
  const file = (name: string) => join(dir, name);
  // A CA and a server certificate it signs, so verify-identity can pass.
  await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=stormlock test CA",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.crt"),
  ]);
  await run("openssl", [
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    file("server.key"),
    "-out",
    file("server.csr"),
  ]);
  Deno.writeTextFileSync(
    file("san.ext"),
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.crt"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    file("san.ext"),
    "-out",
    file("server.crt"),
  ]);
  if (Deno.uid() === 0) {
    await run("chown", ["-R", SERVER_USER, dir]);
  }
  await installDb(programs.installDb, dir);

  const port = freePort();
  const logFile = file("mariadb.log");
  const daemon = new Daemon("mariadb", programs.server, [
    ...serverArgs(dir, port),
    `--ssl-ca=${file("ca.crt")}`,
    `--ssl-cert=${file("server.crt")}`,
    `--ssl-key=${file("server.key")}`,
  ], logFile);
  daemon.start();
  const stop = async () => {
    await daemon.stop();
    Deno.removeSync(dir, { recursive: true });
  };
  const password = newPassword();
  try {
    await waitUntil("mariadb", () => rootSql(programs.client, dir, "SELECT 1"));
    // The password has no quote or backslash, so this literal is safe.
    await rootSql(
      programs.client,
      dir,
      `CREATE DATABASE ${USER} CHARACTER SET utf8mb4;
       CREATE USER '${USER}'@'127.0.0.1' IDENTIFIED BY '${password}';
       GRANT ALL ON ${USER}.* TO '${USER}'@'127.0.0.1';`,
    );
  } catch (error) {
    let tail = "";
    try {
      tail = Deno.readTextFileSync(logFile).split("\n").slice(-20).join("\n");
    } catch { /* no log */ }
    await stop();
    throw new Error(`${(error as Error).message}\n${tail}`);
  }
  log(`mariadb listening on 127.0.0.1:${port}`);
  return {
    env: {
      STORMLOCK_TEST_MYSQL_HOST: "127.0.0.1",
      STORMLOCK_TEST_MYSQL_PORT: String(port),
      STORMLOCK_TEST_MYSQL_USER: USER,
      STORMLOCK_TEST_MYSQL_PASSWORD: password,
      STORMLOCK_TEST_MYSQL_DATABASE: USER,
      STORMLOCK_TEST_MYSQL_CA: file("ca.crt"),
    },
    stop,
  };
}

// A dedicated server for the fault suite.

/** Whether the fault tests can run MariaDB here. */
export function hasMysql(): boolean {
  return hasCommand("mariadbd") || hasCommand("/usr/sbin/mariadbd");
}

/**
 * Starts a MariaDB of its own on loopback, with the account the original Stormlock's CI
 * used: user `root` with password `test` over TCP, and a database `test`.
 *
 * @param workDir A folder for scratch files (the server's own files live
 * under /tmp, where its user can reach them).
 * @returns The running server.
 */
export async function startMysql(workDir: string): Promise<FaultServer> {
  Deno.mkdirSync(workDir, { recursive: true });
  const programs = await mariadbPrograms();
  const dir = await serverDir("stormlock-myf-");
  await installDb(programs.installDb, dir);
  const port = freePort();
  const server = hasCommand(programs.server)
    ? programs.server
    : `/usr/sbin/${programs.server}`;
  const daemon = new Daemon(
    "mariadb",
    server,
    serverArgs(dir, port),
    join(dir, "mariadb.log"),
  );
  const start = async () => {
    daemon.start();
    try {
      await until(
        "mariadb answering",
        () => rootSql(programs.client, dir, "SELECT 1"),
        300,
      );
    } catch (error) {
      await daemon.kill();
      throw new Error(`${(error as Error).message}\n${daemon.logTail()}`);
    }
  };
  try {
    await start();
    await rootSql(
      programs.client,
      dir,
      `CREATE DATABASE test CHARACTER SET utf8mb4;
       CREATE USER 'root'@'127.0.0.1' IDENTIFIED BY 'test';
       GRANT ALL ON *.* TO 'root'@'127.0.0.1';`,
    );
  } catch (error) {
    await daemon.kill();
    Deno.removeSync(dir, { recursive: true });
    throw error;
  }
  return {
    backend: "mysql",
    port,
    options: (at = port) => ({
      host: "127.0.0.1",
      port: String(at),
      user: "root",
      password: "test",
      database: "test",
    }),
    pause: () => daemon.pause(),
    resume: () => daemon.resume(),
    kill: () => daemon.kill(),
    start,
    close: async () => {
      await daemon.kill();
      Deno.removeSync(dir, { recursive: true });
    },
  };
}
