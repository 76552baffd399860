/**
 * The redis backend's options, and the connection target its `url` names.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSpec } from "../../lib/kit/options.ts";

/** The `[backend.redis]` options. */
export const options = {
  url: {
    kind: "url",
    schemes: ["redis:", "rediss:"],
    default: "redis://127.0.0.1:6379",
    doc:
      "`redis://[user:password@]host[:port][/db]`, or `rediss://…` for TLS. Percent-encode special characters in the user and password. Use `redis://:password@host` for the default user (`requirepass`), and `redis://user:password@host` for an ACL user. Query parameters are refused.",
  },
  prefix: {
    kind: "text",
    default: "stormlock:",
    doc: "Goes in front of each resource name to make its keys.",
  },
  timeout: {
    kind: "duration",
    default: "3s",
    doc:
      "The limit on each operation, including connecting and authenticating.",
  },
  ca_cert: {
    kind: "pem",
    doc:
      "A PEM file of CAs to trust for `rediss://`, for a server with a private CA. Only allowed with `rediss://`.",
  },
} satisfies Record<string, OptionSpec>;

/** Where and how to connect, from `url` and `ca_cert`. */
export interface Target {
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
  tls: boolean;
  ca?: string;
}

/**
 * The target `url` names, checked beyond its scheme. Messages never repeat
 * the URL, which may hold a password.
 */
export function parseTarget(url: URL, context: KitContext): Target {
  const fail = (why: string) => context.optionError("url", why);
  if (!url.hostname) throw fail("the URL names no host");
  if (url.port === "0") {
    throw fail("port 0 is not a port; use 1 to 65535 (6379 if left out)");
  }
  if (url.search || url.hash) {
    throw fail("query parameters and fragments are not supported");
  }
  const path = url.pathname.replace(/^\//, "");
  // SELECT takes a C int; whether the server has that many is its call.
  if (!/^\d{0,10}$/.test(path) || Number(path) > 2 ** 31 - 1) {
    throw fail("the path must be a database number, e.g. /0");
  }
  if (url.username && !url.password) {
    throw fail(
      "a user needs a password; use redis://user:password@host, or redis://:password@host for the default user",
    );
  }
  const decode = (part: string) => {
    try {
      return part === "" ? undefined : decodeURIComponent(part);
    } catch {
      throw fail("the user or password is badly encoded");
    }
  };
  return {
    // URL keeps the brackets of an IPv6 address; sockets want it bare.
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port ? Number(url.port) : 6379,
    username: decode(url.username),
    password: decode(url.password),
    db: path === "" ? 0 : Number(path),
    tls: url.protocol === "rediss:",
  };
}
