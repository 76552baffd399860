/**
 * The etcd backend's failures, and how `classify` words them for people.
 *
 * @module
 */
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";

/** gRPC status codes the gateway reports in `code`. */
export const CODE = {
  permissionDenied: 7,
  unavailable: 14,
  unauthenticated: 16,
};

// Errors the store throws; `classify` words them.

/** etcd answered with a gRPC error. */
export class EtcdReplyError extends Error {
  constructor(
    readonly code: number,
    readonly text: string,
    readonly member: string,
    /** Who asked, and for which prefix, for the remedy. */
    readonly about: { user?: string; prefix: string },
  ) {
    super(`${text} (gRPC code ${code})`);
    this.name = "EtcdReplyError";
  }
}

/** No member could be reached, or none had a leader, within the deadline. */
export class UnreachableError extends Error {
  constructor(readonly failures: Map<string, string>, cause?: unknown) {
    super(
      [...failures].map(([member, why]) => `${member}: ${why}`).join("; "),
      { cause },
    );
    this.name = "UnreachableError";
  }
}

/** Something answered that is not etcd's JSON gateway. */
export class NotEtcdError extends Error {
  constructor(member: string, status: number, path: string) {
    super(
      `${member} answered HTTP ${status} to ${path}, not etcd's v3 JSON gateway`,
    );
    this.name = "NotEtcdError";
  }
}

/**
 * etcd refuses, through its gateway, client certificates that carry a
 * CommonName once authentication is on: the gateway can't pass the CN on.
 */
export class CommonNameError extends Error {
  constructor(readonly member: string) {
    super(`${member} refused a client certificate with a CommonName`);
    this.name = "CommonNameError";
  }
}

/** `fetch` refuses the port outright (a "bad port" in the Fetch standard). */
export class BlockedPortError extends Error {
  constructor(readonly member: string, cause: unknown) {
    super(`fetch refuses port ${member.replace(/^.*:/, "")}`, { cause });
    this.name = "BlockedPortError";
  }
}

/** What to do about a gRPC error from etcd, by its text and code. */
function replyRemedy(
  error: EtcdReplyError,
  failed: { action: string },
): string {
  const { text, code } = error;
  const { user, prefix } = error.about;
  const who = user === undefined ? "this client" : `user "${user}"`;
  if (/authentication failed|invalid user ID or password/.test(text)) {
    return `rejected ${who}: wrong user name or password; fix user and password in [backend.etcd]`;
  }
  if (code === CODE.permissionDenied) {
    return `denied ${who} access to keys under "${prefix}"; grant it a role with readwrite on that prefix (or change prefix in [backend.etcd])`;
  }
  if (/user name is empty/.test(text)) {
    return "requires authentication; set user and password in [backend.etcd]";
  }
  if (/authentication is not enabled/.test(text)) {
    return `failed to ${failed.action}: ${text}; remove user and password from [backend.etcd], or enable auth on the server`;
  }
  if (code === CODE.unauthenticated) {
    return `did not accept the credentials of ${who}: ${text}; check user and password in [backend.etcd]`;
  }
  return `failed to ${failed.action}: ${text} (gRPC code ${code}); fix what the server names, or retry if it was transient`;
}

/**
 * Words the etcd client's own failures; the kit handles the rest.
 *
 * @example
 * ```ts
 * import { classifyEtcdError, NotEtcdError } from "./errors.ts";
 * classifyEtcdError(new NotEtcdError("h:1", 404, "/v3/kv/range"), { action: "read", label: "etcd" });
 * ```
 */
export function classifyEtcdError(
  error: unknown,
  failed: FailedOperation,
): Classified | undefined {
  if (error instanceof BlockedPortError) {
    return {
      config: `can't be reached: Deno's fetch refuses port ${
        error.member.replace(/^.*:/, "")
      } ("bad port" in the Fetch standard); run etcd on another port and fix hosts (or port) in [backend.etcd]`,
    };
  }
  if (error instanceof CommonNameError) {
    return {
      config:
        `refused the client certificate: with authentication on, etcd's JSON gateway refuses certificates that have a CommonName; issue cert_cert without a CN (names in subjectAltName only) and sign in with user and password`,
    };
  }
  if (error instanceof UnreachableError) {
    const why = error.failures.size === 1
      ? [...error.failures.values()][0]
      : error.message;
    return {
      unavailable:
        `is unavailable (${why}); check that the server is up and that hosts (or host and port) in [backend.etcd] are right`,
    };
  }
  if (error instanceof NotEtcdError) {
    return {
      unavailable:
        `is not etcd: ${error.message}; check that hosts names etcd's client port (etcd 3.4 or later)`,
    };
  }
  if (error instanceof EtcdReplyError) {
    return { unavailable: replyRemedy(error, failed) };
  }
  const name = (error as Error)?.name;
  if (name === "AbortError" || name === "TimeoutError") return "timeout";
  return undefined;
}
