/**
 * Dedicated servers for the fault tests: a Redis with AOF, etcd (one
 * member, or a three-member cluster), a PostgreSQL cluster run with
 * `pg_ctl`, dynalite on disk, and MariaDB. Each runs in its own process group on
 * free loopback ports, so pausing, killing and restarting them never
 * touches the servers other test files share. Every process started here
 * is killed when the test process unloads, even after a failure.
 *
 * @module
 */
import { dynalite as dynaliteCommand } from "../../scripts/servers/dynamodb.ts";
import { join } from "node:path";
import { freePort, hasCommand, run } from "../../scripts/servers/_server.ts";
import {
  installDb,
  mariadbPrograms,
  rootSql,
  serverArgs,
  serverDir as mysqlServerDir,
} from "../../scripts/servers/mysql.ts";

/** Kills left behind by a failed test, run when the process unloads. */
const cleanups = new Set<() => void>();
globalThis.addEventListener("unload", () => {
  for (const cleanup of cleanups) {
    try {
      cleanup();
    } catch { /* best effort */ }
  }
});

/** Waits `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `probe` until it resolves, every 100 ms, up to `attempts` times.
 *
 * @param what Names the awaited state in the error.
 * @param probe Rejects until the state is reached.
 * @param attempts How many tries before giving up.
 * @returns What `probe` resolved with.
 * @throws {Error} naming `what` and the last failure.
 */
export async function until<T>(
  what: string,
  probe: () => Promise<T> | T,
  attempts = 200,
): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      return await probe();
    } catch (error) {
      last = error;
      await delay(100);
    }
  }
  throw new Error(
    `${what} did not happen: ${(last as Error)?.message ?? last}`,
  );
}

/** The parent of each live process, from /proc, with zombies left out. */
function processTable(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" || fields[0] === "X") continue;
      parents.set(Number(entry.name), Number(fields[1]));
    } catch { /* gone meanwhile */ }
  }
  return parents;
}

/** Whether `pid` is a live (not zombie) process. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** `pid` and all its live descendants. */
export function processTree(pid: number): number[] {
  const table = processTable();
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of table) {
      if (parent === tree[i] && !tree.includes(child)) tree.push(child);
    }
  }
  return tree.filter((p) => p === pid ? alive(p) : true);
}

/**
 * Sends `signal` to `pid`'s process group and to every process in its
 * tree. A stop signal goes to the root first, so that it forks nothing
 * new, then again to the whole tree.
 *
 * @param pid The root process (a group leader when we spawned it).
 * @param signal The signal.
 */
export function signalTree(pid: number, signal: Deno.Signal): void {
  const send = (target: number) => {
    try {
      Deno.kill(target, signal);
    } catch { /* gone */ }
  };
  const tree = processTree(pid);
  send(-pid);
  for (const target of tree) send(target);
}

/** Waits until `pid` has exited (polling /proc), for processes not ours. */
async function exited(pid: number): Promise<void> {
  await until(`process ${pid} exiting`, () => {
    if (alive(pid)) throw new Error("still running");
  }, 300);
}

/**
 * One server process we spawn in a process group of its own, with its
 * output appended to a log file. It can be paused, resumed, killed and
 * started again with the same arguments (so on the same ports and data).
 */
export class Daemon {
  #child?: Deno.ChildProcess;
  #cleanup?: () => void;
  #ended: () => boolean = () => true;

  /**
   * Describes the daemon; {@linkcode Daemon.start} runs it.
   *
   * @param name Names it in errors.
   * @param command The program.
   * @param args Its arguments.
   * @param logFile Where its output goes.
   * @param env Extra environment variables.
   */
  constructor(
    readonly name: string,
    readonly command: string,
    readonly args: string[],
    readonly logFile: string,
    readonly env: Record<string, string> = {},
  ) {}

  /** Spawns the process (again, after a kill). */
  start(): void {
    if (this.#child) throw new Error(`${this.name} is already running`);
    const file = Deno.openSync(this.logFile, {
      write: true,
      create: true,
      append: true,
    });
    const child = new Deno.Command(this.command, {
      args: this.args,
      env: this.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
    const pipe = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) file.writeSync(chunk);
    };
    Promise.all([pipe(child.stdout), pipe(child.stderr)]).catch(() => {})
      .finally(() => file.close());
    this.#child = child;
    const pid = child.pid;
    // A pid that ended may be reused by another test's process, which must
    // never be signalled: only a child still running is ours.
    let ended = false;
    child.status.finally(() => ended = true);
    this.#ended = () => ended;
    this.#cleanup = () => {
      if (!ended) signalTree(pid, "SIGKILL");
    };
    cleanups.add(this.#cleanup);
  }

  /** The running process's id. */
  get pid(): number {
    if (!this.#child) throw new Error(`${this.name} is not running`);
    return this.#child.pid;
  }

  /** Whether it runs. */
  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing answers. */
  pause(): void {
    if (!this.#ended()) signalTree(this.pid, "SIGSTOP");
  }

  /** Lets a paused server go on (SIGCONT). */
  resume(): void {
    if (!this.#ended()) signalTree(this.pid, "SIGCONT");
  }

  /** Kills the server outright (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const tree = processTree(child.pid);
    signalTree(child.pid, "SIGKILL");
    signalTree(child.pid, "SIGCONT");
    await child.status;
    for (const pid of tree) await exited(pid);
    this.#forget();
  }

  /** Stops the server politely (SIGTERM), killing it after 5 s. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    signalTree(child.pid, "SIGCONT");
    signalTree(child.pid, "SIGTERM");
    const timer = setTimeout(() => {
      if (!this.#ended()) signalTree(child.pid, "SIGKILL");
    }, 5000);
    await child.status;
    clearTimeout(timer);
    this.#forget();
  }

  #forget(): void {
    if (this.#cleanup) cleanups.delete(this.#cleanup);
    this.#cleanup = undefined;
    this.#child = undefined;
  }

  /** The tail of the log, for failure messages. */
  logTail(lines = 20): string {
    try {
      return Deno.readTextFileSync(this.logFile).split("\n").slice(-lines)
        .join("\n");
    } catch {
      return "";
    }
  }
}

/** A server the fault tests can pause, kill and restart. */
export interface FaultServer {
  /** The backend's name in a config: `redis`, `etcd`, `postgres`, `dynamodb`, `mysql`. */
  readonly backend: string;
  /** The port clients connect to. */
  readonly port: number;
  /** `[backend.NAME]` options reaching the server at `port`. */
  options(port?: number): Record<string, string>;
  /** Freezes every process of the server (SIGSTOP). */
  pause(): void;
  /** Thaws it (SIGCONT). */
  resume(): void;
  /** Kills it (SIGKILL), keeping its data. */
  kill(): Promise<void>;
  /** Starts it again after a kill, on the same port and data; resolves once it answers. */
  start(): Promise<void>;
  /** Stops it for good and removes its files. */
  close(): Promise<void>;
}

/** Sends an inline PING; any RESP answer means Redis is up. */
async function redisAnswers(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    const count = await conn.read(buffer);
    const reply = new TextDecoder().decode(buffer.subarray(0, count ?? 0));
    if (!reply.startsWith("+PONG")) throw new Error(`odd reply ${reply}`);
  } finally {
    conn.close();
  }
}

/**
 * Starts a redis-server of its own on loopback, without a password. With
 * `appendonly`, every write is in the AOF (`appendfsync always`) before it
 * is answered, so leases survive a kill.
 *
 * @param dir An empty folder for its config, AOF and log.
 * @param appendonly Whether to persist with an append-only file.
 * @returns The running server.
 */
export async function startRedis(
  dir: string,
  appendonly = true,
): Promise<FaultServer> {
  Deno.mkdirSync(dir, { recursive: true });
  const port = freePort();
  const config = join(dir, "redis.conf");
  Deno.writeTextFileSync(
    config,
    [
      "bind 127.0.0.1",
      `port ${port}`,
      "save ''",
      `appendonly ${appendonly ? "yes" : "no"}`,
      "appendfsync always",
      `dir ${dir}`,
      "daemonize no",
      "",
    ].join("\n"),
  );
  const daemon = new Daemon(
    "redis-server",
    "redis-server",
    [config],
    join(dir, "redis.log"),
  );
  const start = async () => {
    daemon.start();
    try {
      await until("redis answering", () => redisAnswers(port), 100);
    } catch (error) {
      await daemon.kill();
      throw new Error(`${(error as Error).message}\n${daemon.logTail()}`);
    }
  };
  await start();
  return {
    backend: "redis",
    port,
    options: (at = port) => ({ url: `redis://127.0.0.1:${at}` }),
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

/** Calls etcd's JSON gateway on `port` with a short timeout. */
export async function etcdCall(
  port: number,
  path: string,
  body: unknown = {},
  timeoutMs = 1000,
): Promise<Record<string, unknown>> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`etcd ${path}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** One member of an etcd cluster. */
export interface EtcdMember {
  /** Its name in the cluster. */
  readonly name: string;
  /** Its client port. */
  readonly port: number;
  /** Its process. */
  readonly daemon: Daemon;
}

/** An etcd cluster of one or more members on loopback. */
export interface EtcdCluster extends FaultServer {
  /** The members, in order. */
  readonly members: readonly EtcdMember[];
  /** The member that leads now, asked of the members that answer. */
  leader(): Promise<EtcdMember>;
  /** Resolves once every running member answers and agrees on a leader. */
  healthy(): Promise<void>;
  /** Starts a killed member again with its data. */
  startMember(member: EtcdMember): Promise<void>;
}

/**
 * Starts an etcd cluster of `size` members on free loopback ports, each
 * with its data folder under `dir`.
 *
 * @param dir An empty folder.
 * @param size How many members: 1 or 3.
 * @returns The cluster, once it has elected a leader.
 */
export async function startEtcd(dir: string, size = 1): Promise<EtcdCluster> {
  Deno.mkdirSync(dir, { recursive: true });
  const token = `faults-${crypto.randomUUID()}`;
  const ports = Array.from({ length: size }, () => ({
    client: freePort(),
    peer: freePort(),
  }));
  const initial = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`)
    .join(",");
  const env: Record<string, string> = {};
  if (Deno.build.arch === "aarch64") env.ETCD_UNSUPPORTED_ARCH = "arm64";
  const members: EtcdMember[] = ports.map((p, i) => {
    const client = `http://127.0.0.1:${p.client}`;
    const peer = `http://127.0.0.1:${p.peer}`;
    const args = [
      "--name",
      `m${i}`,
      "--data-dir",
      join(dir, `m${i}`),
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      initial,
      "--initial-cluster-state",
      "new",
      "--initial-cluster-token",
      token,
      "--log-level",
      "warn",
    ];
    return {
      name: `m${i}`,
      port: p.client,
      daemon: new Daemon(
        `etcd m${i}`,
        "etcd",
        args,
        join(dir, `m${i}.log`),
        env,
      ),
    };
  });
  const status = async (member: EtcdMember) => {
    const reply = await etcdCall(member.port, "/v3/maintenance/status");
    const header = reply.header as Record<string, unknown>;
    return { member: String(header.member_id), leader: String(reply.leader) };
  };
  const cluster: EtcdCluster = {
    backend: "etcd",
    port: members[0].port,
    members,
    options: (at?: number) => ({
      hosts: at === undefined
        ? members.map((m) => `http://127.0.0.1:${m.port}`).join(",")
        : `http://127.0.0.1:${at}`,
    }),
    async leader() {
      return await until("an etcd leader", async () => {
        for (const member of members) {
          if (!member.daemon.running) continue;
          try {
            const { leader } = await status(member);
            for (const candidate of members) {
              if (!candidate.daemon.running) continue;
              const seen = await status(candidate);
              if (seen.member === leader) return candidate;
            }
          } catch { /* ask the next */ }
        }
        throw new Error("no member names a running leader");
      });
    },
    async healthy() {
      await until("etcd healthy", async () => {
        const leaders = new Set<string>();
        for (const member of members) {
          if (!member.daemon.running) continue;
          const { leader } = await status(member);
          if (leader === "0" || leader === "undefined") {
            throw new Error(`${member.name} has no leader`);
          }
          leaders.add(leader);
          // A write that commits proves a quorum.
          await etcdCall(member.port, "/v3/kv/range", { key: btoa("probe") });
        }
        if (leaders.size !== 1) {
          throw new Error("members disagree on the leader");
        }
      });
    },
    async startMember(member) {
      member.daemon.start();
      await until(`etcd ${member.name} answering`, () => status(member));
    },
    pause: () => members.forEach((m) => m.daemon.running && m.daemon.pause()),
    resume: () => members.forEach((m) => m.daemon.running && m.daemon.resume()),
    kill: async () => {
      await Promise.all(members.map((m) => m.daemon.kill()));
    },
    async start() {
      for (const member of members) member.daemon.start();
      await cluster.healthy();
    },
    close: async () => {
      await Promise.all(members.map((m) => m.daemon.kill()));
      Deno.removeSync(dir, { recursive: true });
    },
  };
  try {
    await cluster.start();
  } catch (error) {
    const logs = members.map((m) => m.daemon.logTail(5)).join("\n");
    await cluster.close();
    throw new Error(`${(error as Error).message}\n${logs}`);
  }
  return cluster;
}

/** The user that owns the cluster when the tests run as root (as in scripts/servers/postgres.ts). */
const PG_USER = "stormlock-pg";

/** Debian keeps each major version's programs in its own folder. */
function postgresBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  let versions: number[] = [];
  try {
    versions = [...Deno.readDirSync(root)].map((entry) => Number(entry.name))
      .filter(Number.isInteger).sort((a, b) => b - a);
  } catch {
    return undefined;
  }
  for (const version of versions) {
    const bin = join(root, String(version), "bin");
    if (hasCommand(join(bin, "pg_ctl"))) return bin;
  }
  return undefined;
}

/** Whether the fault tests can run PostgreSQL here. */
export function hasPostgres(): boolean {
  return postgresBin() !== undefined;
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
  const bin = postgresBin();
  if (!bin) throw new Error("PostgreSQL is not installed (initdb, pg_ctl)");
  const asRoot = Deno.uid() === 0;
  if (asRoot) {
    try {
      await run("id", ["-u", PG_USER]);
    } catch {
      await run("useradd", [
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        PG_USER,
      ]);
    }
  }
  Deno.mkdirSync(workDir, { recursive: true });
  const dir = Deno.makeTempDirSync({ dir: "/tmp", prefix: "stormlock-pgf-" });
  if (asRoot) await run("chown", [PG_USER, dir]);
  const asServer = (command: string, args: string[]) =>
    asRoot
      ? run("runuser", ["-u", PG_USER, "--", command, ...args], { cwd: dir })
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

const dynaliteBin = dynaliteCommand;

/** Whether dynalite is installed in scripts/servers/dynalite. */
export function hasDynalite(): boolean {
  return hasCommand(dynaliteBin);
}

/**
 * Starts dynalite on loopback with its LevelDB store on disk (`--path`),
 * so that tables and items survive a kill.
 *
 * @param dir An empty folder for the store and the log.
 * @returns The running server.
 */
export async function startDynalite(dir: string): Promise<FaultServer> {
  Deno.mkdirSync(dir, { recursive: true });
  const port = freePort();
  const daemon = new Daemon("dynalite", "node", [
    dynaliteBin,
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--path",
    join(dir, "store"),
    "--createTableMs",
    "0",
  ], join(dir, "dynalite.log"));
  const start = async () => {
    daemon.start();
    await until("dynalite answering", async () => {
      const response = await fetch(`http://127.0.0.1:${port}`, {
        signal: AbortSignal.timeout(1000),
      });
      const body = await response.text();
      if (!body.startsWith("healthy")) throw new Error(body);
    });
  };
  await start();
  return {
    backend: "dynamodb",
    port,
    options: (at = port) => ({
      endpoint: `http://127.0.0.1:${at}`,
      region: "us-east-1",
      table: "stormlock_faults",
      access_key_id: "AKIAFAULTTESTS000000",
      secret_access_key: "fault-tests-secret",
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

/** Whether the fault tests can run MariaDB here. */
export function hasMysql(): boolean {
  return hasCommand("mariadbd") || hasCommand("/usr/sbin/mariadbd");
}

/**
 * Starts a MariaDB of its own on loopback (scripts/servers/mysql.ts makes
 * its folder and arguments), with the account the original Stormlock's CI
 * used: user `root` with password `test` over TCP, and a database `test`.
 *
 * @param workDir A folder for scratch files (the server's own files live
 * under /tmp, where its user can reach them).
 * @returns The running server.
 */
export async function startMysql(workDir: string): Promise<FaultServer> {
  Deno.mkdirSync(workDir, { recursive: true });
  const programs = await mariadbPrograms();
  const dir = await mysqlServerDir("stormlock-myf-");
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
