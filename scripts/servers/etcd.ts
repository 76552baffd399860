/**
 * Starts two etcd servers on loopback for the etcd backend's tests: a
 * plain one for the shared contract, and one that needs TLS, a client
 * certificate and a password, for the credential tests.
 */
import { join } from "node:path";
import {
  ensureApt,
  freePort,
  log,
  run,
  tcpOpen,
  waitUntil,
} from "./_server.ts";
import type { StartedServer } from "./_server.ts";

import { Daemon, type FaultServer, until } from "./_daemon.ts";

/** The name the test runner logs. */
export const name = "etcd";

/** The user and role the secure server grants `/stormlock/` to. */
const USER = "locker";

interface Etcd {
  daemon: Daemon;
  port: number;
}

/** Starts one etcd member on free loopback ports, storing data in `dir`. */
async function startOne(
  dir: string,
  scheme: "http" | "https",
  tlsArgs: string[] = [],
): Promise<Etcd> {
  Deno.mkdirSync(dir, { recursive: true });
  const port = freePort();
  const peerPort = freePort();
  const client = `${scheme}://127.0.0.1:${port}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const env: Record<string, string> = {};
  // etcd 3.4 refuses to start on arm64 unless told to.
  if (Deno.build.arch === "aarch64") env.ETCD_UNSUPPORTED_ARCH = "arm64";
  const daemon = new Daemon(
    "etcd",
    "etcd",
    [
      "--name",
      "default",
      "--data-dir",
      join(dir, "data"),
      "--listen-client-urls",
      client,
      "--advertise-client-urls",
      client,
      "--listen-peer-urls",
      peer,
      "--initial-advertise-peer-urls",
      peer,
      "--initial-cluster",
      `default=${peer}`,
      "--log-level",
      "warn",
      ...tlsArgs,
    ],
    join(dir, "etcd.log"),
    env,
  );
  daemon.start();
  try {
    await waitUntil(`etcd on port ${port}`, () => tcpOpen(port));
  } catch (error) {
    await daemon.stop();
    throw error;
  }
  return { daemon, port };
}

/** Resolves when etcd reports itself healthy: it has elected a leader. */
async function healthy(
  port: number,
  scheme: "http" | "https",
  client?: Deno.HttpClient,
): Promise<void> {
  const host = scheme === "https" ? "localhost" : "127.0.0.1";
  const response = await fetch(`${scheme}://${host}:${port}/health`, {
    client,
  });
  const body = await response.json();
  if (body.health !== "true") throw new Error(JSON.stringify(body));
}

/** Makes a CA, a server certificate for localhost and a client certificate. */
async function makeCertificates(dir: string): Promise<void> {
  Deno.mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]) => run("openssl", args, { cwd: dir });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  await openssl(
    "req",
    "-x509",
    ...key,
    "-nodes",
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "2",
    "-subj",
    "/CN=stormlock-test-ca",
  );
  for (
    const [file, subject, names] of [
      ["server", "/CN=localhost", "DNS:localhost,IP:127.0.0.1"],
      // No CN: with auth on, etcd's JSON gateway refuses a client
      // certificate that has one, since it can't pass the CN on as a user.
      ["client", "/O=stormlock-test-client", `DNS:${USER}`],
    ]
  ) {
    // etcd's own gateway dials the server with the server's certificate,
    // so both certificates serve as client and server.
    Deno.writeTextFileSync(
      join(dir, `${file}.ext`),
      `subjectAltName=${names}\nextendedKeyUsage=serverAuth,clientAuth\n`,
    );
    await openssl(
      "req",
      ...key,
      "-nodes",
      "-keyout",
      `${file}.key`,
      "-out",
      `${file}.csr`,
      "-subj",
      subject,
    );
    await openssl(
      "x509",
      "-req",
      "-in",
      `${file}.csr`,
      "-CA",
      "ca.crt",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${file}.crt`,
      "-days",
      "2",
      "-extfile",
      `${file}.ext`,
    );
  }
}

/**
 * Enables authentication through etcd's JSON gateway: a root user (etcd
 * requires one) and a user allowed only keys under `/stormlock/`.
 */
async function enableAuth(
  port: number,
  certs: string,
  password: string,
): Promise<void> {
  const read = (file: string) => Deno.readTextFileSync(join(certs, file));
  const client = Deno.createHttpClient({
    caCerts: [read("ca.crt")],
    cert: read("client.crt"),
    key: read("client.key"),
  });
  const call = async (path: string, body: unknown) => {
    const response = await fetch(`https://localhost:${port}/v3/auth/${path}`, {
      method: "POST",
      body: JSON.stringify(body),
      client,
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`etcd ${path}: ${text}`);
  };
  const b64 = (text: string) => btoa(text);
  try {
    await waitUntil("the TLS etcd", () => healthy(port, "https", client));
    await call("role/add", { name: "root" });
    await call("user/add", { name: "root", password: crypto.randomUUID() });
    await call("user/grant", { user: "root", role: "root" });
    await call("role/add", { name: USER });
    await call("role/grant", {
      name: USER,
      perm: {
        permType: "READWRITE",
        key: b64("/stormlock/"),
        range_end: b64("/stormlock0"),
      },
    });
    await call("user/add", { name: USER, password });
    await call("user/grant", { user: USER, role: USER });
    await call("enable", {});
  } finally {
    client.close();
  }
}

/**
 * Starts both servers. The environment names the plain server's URL, and
 * the secure server's URL, certificate folder, user and password.
 */
export async function start(workDir: string): Promise<StartedServer> {
  await ensureApt("etcd", ["etcd-server"]);
  await ensureApt("openssl", ["openssl"]);
  const certs = join(workDir, "certs");
  await makeCertificates(certs);
  const plain = await startOne(join(workDir, "plain"), "http");
  try {
    await waitUntil("etcd", () => healthy(plain.port, "http"));
  } catch (error) {
    await plain.daemon.stop();
    throw error;
  }
  let secure: Etcd;
  const password = `pw-${crypto.randomUUID()}`;
  try {
    secure = await startOne(join(workDir, "secure"), "https", [
      "--cert-file",
      join(certs, "server.crt"),
      "--key-file",
      join(certs, "server.key"),
      "--client-cert-auth",
      "--trusted-ca-file",
      join(certs, "ca.crt"),
    ]);
  } catch (error) {
    await plain.daemon.stop();
    throw error;
  }
  try {
    await enableAuth(secure.port, certs, password);
  } catch (error) {
    await Promise.all([plain.daemon.stop(), secure.daemon.stop()]);
    throw error;
  }
  log(`etcd on ports ${plain.port} (plain) and ${secure.port} (TLS, auth)`);
  return {
    env: {
      STORMLOCK_TEST_ETCD_URL: `http://127.0.0.1:${plain.port}`,
      STORMLOCK_TEST_ETCD_TLS_URL: `https://localhost:${secure.port}`,
      STORMLOCK_TEST_ETCD_TLS_DIR: certs,
      STORMLOCK_TEST_ETCD_USER: USER,
      STORMLOCK_TEST_ETCD_PASSWORD: password,
    },
    stop: async () => {
      await Promise.all([plain.daemon.stop(), secure.daemon.stop()]);
    },
  };
}

// A dedicated server for the fault suite.

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
