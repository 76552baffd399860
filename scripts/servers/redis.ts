/**
 * Starts a throwaway Redis for the tests: loopback only, no persistence,
 * a password on the default user, a least-privilege ACL user, and a TLS
 * port whose certificate is signed by a CA made for this run.
 */
import { join } from "node:path";
import { ensureApt, freePort, log, run, waitUntil } from "./_server.ts";
import type { StartedServer } from "./_server.ts";

import { Daemon, type FaultServer, until } from "./_daemon.ts";

/** The server's name in the test log. */
export const name = "redis";

/**
 * What the backend needs and nothing more: the commands it sends (INFO is
 * ioredis's ready check; SUBSCRIBE and UNSUBSCRIBE are the watcher's) and
 * those its scripts call, on its own keys and channels only.
 */
const ACL_RULES =
  "on resetkeys ~stormlock:* resetchannels &stormlock:* -@all +info +select " +
  "+eval +evalsha +subscribe +unsubscribe " +
  "+time +type +hmget +hset +hdel +hincrby +del +pexpireat +pexpire " +
  "+lpush +ltrim +lindex +rpop +lrange " +
  "+zadd +zrem +zrangebyscore +zremrangebyscore +publish";

function secret(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(12)),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
}

/** A CA and a server certificate for 127.0.0.1 and localhost. */
async function makeCertificates(dir: string): Promise<void> {
  await ensureApt("openssl", ["openssl"]);
  const file = (name: string) => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  await run("openssl", [
    "req",
    "-x509",
    ...ec,
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
    ...ec,
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
    "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
  );
  await run("openssl", [
    "x509",
    "-req",
    "-days",
    "2",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.crt"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-extfile",
    file("san.ext"),
    "-out",
    file("server.crt"),
  ]);
}

/** Sends an inline PING; any RESP answer (even NOAUTH) means it is up. */
async function answers(port: number): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode("PING\r\n"));
    const buffer = new Uint8Array(64);
    const count = await conn.read(buffer);
    const reply = new TextDecoder().decode(buffer.subarray(0, count ?? 0));
    if (!/^[+-]/.test(reply)) throw new Error(`odd reply ${reply}`);
  } finally {
    conn.close();
  }
}

/**
 * Starts redis-server in `workDir`, installing it with apt-get if missing.
 *
 * Exports `STORMLOCK_TEST_REDIS_URL` (default user with a password),
 * `STORMLOCK_TEST_REDIS_ACL_URL` (the ACL user `stormlock`),
 * `STORMLOCK_TEST_REDIS_TLS_URL` (`rediss://`) and
 * `STORMLOCK_TEST_REDIS_CA` (the CA file that signed the TLS certificate).
 */
export async function start(workDir: string): Promise<StartedServer> {
  await ensureApt("redis-server", ["redis-server"]);
  Deno.mkdirSync(workDir, { recursive: true });
  await makeCertificates(workDir);
  const port = freePort();
  const tlsPort = freePort();
  const password = secret();
  const aclPassword = secret();
  const config = join(workDir, "redis.conf");
  Deno.writeTextFileSync(
    config,
    [
      "bind 127.0.0.1",
      `port ${port}`,
      `tls-port ${tlsPort}`,
      `tls-cert-file ${join(workDir, "server.crt")}`,
      `tls-key-file ${join(workDir, "server.key")}`,
      `tls-ca-cert-file ${join(workDir, "ca.crt")}`,
      "tls-auth-clients no",
      "save ''",
      "appendonly no",
      `dir ${workDir}`,
      "daemonize no",
      `requirepass ${password}`,
      `user stormlock ${ACL_RULES} >${aclPassword}`,
      "",
    ].join("\n"),
  );
  const logFile = join(workDir, "redis.log");
  const daemon = new Daemon("redis-server", "redis-server", [config], logFile);
  daemon.start();
  try {
    await waitUntil("redis-server", () => answers(port), 50);
  } catch (error) {
    await daemon.stop();
    throw new Error(
      `${(error as Error).message}\n${Deno.readTextFileSync(logFile)}`,
    );
  }
  log(`redis on 127.0.0.1:${port} (TLS ${tlsPort})`);
  return {
    env: {
      STORMLOCK_TEST_REDIS_URL: `redis://:${password}@127.0.0.1:${port}`,
      STORMLOCK_TEST_REDIS_ACL_URL:
        `redis://stormlock:${aclPassword}@127.0.0.1:${port}`,
      STORMLOCK_TEST_REDIS_TLS_URL:
        `rediss://:${password}@localhost:${tlsPort}`,
      STORMLOCK_TEST_REDIS_CA: join(workDir, "ca.crt"),
    },
    stop: () => daemon.stop(),
  };
}

// A dedicated server for the fault suite.

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
      await until("redis answering", () => answers(port), 100);
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
