/**
 * The etcd backend's options, and the cluster members they name.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSchema, OptionSpec } from "../../lib/kit/options.ts";
import type { Member } from "./client.ts";

/** The host used when neither `hosts` nor `host` is set. */
export const DEFAULT_HOST = "127.0.0.1";
/** The port used when a host names none. */
export const DEFAULT_PORT = 2379;
/** The key prefix used when `prefix` is not set. */
export const DEFAULT_PREFIX = "/stormlock/";

/** The `[backend.etcd]` options. */
export const options = {
  hosts: {
    kind: "text",
    doc:
      "Comma-separated cluster members: `host`, `host:port`, `http://host:port` or `https://host:port` (port 2379 by default). Use this or `host`/`port`, not both.",
  },
  host: {
    kind: "text",
    doc:
      "One member's host name or address, when `hosts` is not set. Default: `127.0.0.1`.",
  },
  port: {
    kind: "port",
    doc: "That member's port. Default: `2379`.",
  },
  prefix: {
    kind: "text",
    default: DEFAULT_PREFIX,
    doc: "Prepended to the resource name to make the etcd key.",
  },
  ca_cert: {
    kind: "pem",
    doc:
      "PEM file of the CA that signed the servers' certificates (default: the system's CAs). Setting it turns TLS on.",
  },
  cert_cert: {
    kind: "pem",
    doc:
      "PEM client certificate, for servers started with `--client-cert-auth`. Setting it turns TLS on.",
  },
  cert_key: {
    kind: "pem",
    doc: "PEM private key of `cert_cert`.",
  },
  user: {
    kind: "text",
    doc: "etcd user, for servers with authentication on.",
  },
  password: {
    kind: "text",
    secret: true,
    doc: "That user's password. Never printed.",
  },
  timeout: {
    kind: "duration",
    default: "3s",
    doc:
      "Bound on each command's whole exchange with etcd (connecting, signing in, failover and every request).",
  },
} satisfies Record<string, OptionSpec>;

/** Pairs of `[backend.etcd]` options set together. */
export const together = [["cert_cert", "cert_key"], [
  "user",
  "password",
]] as const satisfies OptionSchema["together"];

/** Parses one entry of `hosts`: `host`, `host:port` or a URL of either. */
function parseHost(
  entry: string,
  fail: (why: string) => Error,
): { name: string; tls?: boolean } {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(entry)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") {
    throw fail(`"${scheme}://" is not supported; use http:// or https://`);
  }
  let url: URL;
  try {
    url = new URL(scheme ? entry : `http://${entry}`);
  } catch {
    throw fail("a host is not host:port or a URL");
  }
  // Never echo the entry here: it may hold a password.
  if (url.username || url.password) {
    throw fail("put credentials in user and password, not in the host");
  }
  if ((url.pathname !== "/" && url.pathname !== "") || url.search) {
    throw fail("a host must not have a path");
  }
  const port = url.port === "" ? DEFAULT_PORT : Number(url.port);
  return {
    name: `${url.hostname}:${port}`,
    tls: scheme === undefined ? undefined : scheme === "https",
  };
}

/** Whether `host` is an IPv6 address (unbracketed). */
function isIPv6(host: string): boolean {
  if (!host.includes(":")) return false;
  try {
    new URL(`http://[${host}]/`);
    return true;
  } catch {
    return false;
  }
}

/** The members and scheme named by `hosts`, or else `host` and `port`. */
export function parseMembers(
  settings: {
    hosts?: string;
    host?: string;
    port?: number;
    ca_cert?: string;
    cert_cert?: string;
  },
  context: KitContext,
): { members: Member[]; tls: boolean } {
  const fail = (key: string) => (why: string) => context.optionError(key, why);
  if (
    settings.hosts !== undefined &&
    (settings.host !== undefined || settings.port !== undefined)
  ) {
    throw fail("hosts")("set either hosts or host and port, not both");
  }
  let entries: string[];
  const key = settings.hosts !== undefined ? "hosts" : "host";
  if (settings.hosts !== undefined) {
    entries = settings.hosts.split(",").map((entry) => entry.trim()).filter(
      (entry) => entry !== "",
    );
    if (entries.length === 0) throw fail("hosts")("it is empty");
  } else {
    const host = settings.host ?? DEFAULT_HOST;
    const port = settings.port ?? DEFAULT_PORT;
    if (host.includes("/") || (host.includes(":") && !isIPv6(host))) {
      throw fail("host")(`"${host}" is not a host name; use hosts for URLs`);
    }
    entries = [isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`];
  }
  const parsed = entries.map((entry) => parseHost(entry, fail(key)));
  const schemes = new Set(parsed.map((member) => member.tls));
  if (schemes.has(true) && schemes.has(false)) {
    throw fail(key)("mixes http:// and https://; use one for all hosts");
  }
  const certificates = settings.ca_cert !== undefined ||
    settings.cert_cert !== undefined;
  if (schemes.has(false) && certificates) {
    throw fail(key)("uses http:// but certificates are set; use https://");
  }
  const tls = schemes.has(true) || certificates;
  const scheme = tls ? "https" : "http";
  return {
    members: parsed.map(({ name }) => ({ name, url: `${scheme}://${name}` })),
    tls,
  };
}
