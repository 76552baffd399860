/**
 * A client for etcd's v3 JSON gateway (`POST /v3/...` on every member's
 * client port) with `fetch`: no gRPC client to load. It shares one HTTP
 * client, signs in, fails over between members, and opens watch streams.
 *
 * @module
 */
import type { Operation } from "../../lib/kit/contract.ts";
import { sleep } from "../../lib/kit/deadline.ts";
import {
  BlockedPortError,
  CODE,
  CommonNameError,
  EtcdReplyError,
  NotEtcdError,
  UnreachableError,
} from "./errors.ts";
import { watchResult, WatchStream } from "./watch.ts";

// Bytes and base64: the gateway's JSON carries keys and values as base64.

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

export function bytes(
  ...parts: (string | number[] | Uint8Array)[]
): Uint8Array {
  const chunks = parts.map((part) =>
    typeof part === "string"
      ? encoder.encode(part)
      : part instanceof Uint8Array
      ? part
      : Uint8Array.from(part)
  );
  const out = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

export function b64(data: Uint8Array | string): string {
  const raw = typeof data === "string" ? encoder.encode(data) : data;
  let binary = "";
  for (let i = 0; i < raw.length; i += 0x8000) {
    binary += String.fromCharCode(...raw.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function unb64(text = ""): Uint8Array {
  return Uint8Array.from(atob(text), (char) => char.charCodeAt(0));
}

/** The first key after every key that starts with `key`. */
export function prefixEnd(key: Uint8Array): Uint8Array {
  const end = key.slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.slice(0, i + 1);
    }
  }
  return new Uint8Array([0]); // All keys.
}

// The gateway's JSON.

export interface Kv {
  key: string;
  value?: string;
  create_revision: string;
  mod_revision: string;
  lease?: string;
}
export interface RangeReply {
  header: { revision: string };
  kvs?: Kv[];
  more?: boolean;
  count?: string;
}
export interface TxnReply {
  header: { revision: string };
  succeeded?: boolean;
  responses?: { response_range?: RangeReply }[];
}
export type RequestOp =
  | { request_range: Record<string, unknown> }
  | { request_put: { key: string; value: string; lease?: string } }
  | { request_delete_range: { key: string; range_end?: string } };
export interface Compare {
  key: string;
  target: "CREATE" | "MOD";
  result: "EQUAL";
  create_revision?: string;
  mod_revision?: string;
  /** Compares every key in [key, range_end) (none: the empty key's). */
  range_end?: string;
}

/** One cluster member. */
export interface Member {
  /** `host:port`, for messages. */
  name: string;
  /** `http://host:port` or `https://host:port`. */
  url: string;
}

/** What a connection failure says, without the URL Deno prefixes. */
function connectionReason(error: unknown): string {
  const inner = (error as Error)?.cause ?? error;
  const text = String((inner as Error)?.message ?? inner);
  return text
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \((\w+)\): /, "")
    .replace(/ \(os error \d+\)/, "")
    .split("\n")[0];
}

/**
 * Whether a connection failure may pass: an established connection was
 * lost (the member restarted, or a proxy dropped it). A refusal, a name
 * that does not resolve, or a TLS failure will not pass within a command.
 */
function isLostConnection(reason: string): boolean {
  return /reset|closed|broken pipe|incomplete|unexpected eof/i.test(reason) &&
    !/certificate|tls|handshake|alert/i.test(reason);
}

/**
 * A client for the members' JSON gateways: one shared HTTP client (with
 * the TLS material), the auth token, and failover between members.
 */
export class Gateway {
  readonly members: Member[];
  readonly #client: Deno.HttpClient;
  readonly #user?: string;
  readonly #password?: string;
  readonly #about: { user?: string; prefix: string };
  /** The member that answered last; calls start there. */
  #preferred = 0;
  #token?: Promise<string>;

  constructor(
    members: Member[],
    tls: { caCerts?: string[]; cert?: string; key?: string },
    auth: { user?: string; password?: string; prefix: string },
  ) {
    this.members = members;
    this.#client = Deno.createHttpClient(
      tls.cert && tls.key
        ? { caCerts: tls.caCerts, cert: tls.cert, key: tls.key }
        : { caCerts: tls.caCerts },
    );
    this.#user = auth.user;
    this.#password = auth.password;
    this.#about = { user: auth.user, prefix: auth.prefix };
  }

  /**
   * Calls `path` on the preferred member, moving on to the next when one
   * can't be reached or answers that it has no leader. Once every member
   * failed, it fails at once if none can be reached at all (refused, no
   * such host, TLS refused); after a "no leader" or a lost connection it
   * pauses and goes round again until the deadline. A request is thus sent again
   * after a lost answer: callers re-read and recognize their own writes.
   */
  call<T>(path: string, body: unknown, op: Operation): Promise<T> {
    return this.#failover(op, (member) =>
      this.#authorized(
        member,
        op,
        (headers) => this.#post<T>(member, path, body, op, headers),
      ));
  }

  /**
   * Opens a watch on `key` (base64) with `POST /v3/watch`, failing over
   * like {@linkcode Gateway.call}, and resolves once etcd reports it
   * created. The stream lives until `stop` aborts or it ends; `op` bounds
   * only the setup. `after` (a member's index) starts the round past that
   * member, for a reconnect.
   */
  watch(
    key: string,
    startRevision: string | undefined,
    op: Operation,
    stop: AbortSignal,
    after?: number,
  ): Promise<WatchStream> {
    const body = {
      create_request: startRevision === undefined
        ? { key }
        : { key, start_revision: startRevision },
    };
    return this.#failover(
      op,
      (member, index) =>
        this.#authorized(
          member,
          op,
          (headers) => this.#openWatch(member, index, body, stop, headers),
        ),
      after === undefined ? undefined : after + 1,
    );
  }

  /** Runs `attempt` on each member in turn, as `call` describes. */
  async #failover<T>(
    op: Operation,
    attempt: (member: Member, index: number) => Promise<T>,
    start?: number,
  ): Promise<T> {
    const failures = new Map<string, string>();
    let first = start ?? this.#preferred;
    for (;;) {
      let transient = false;
      let lastError: unknown;
      for (let i = 0; i < this.members.length; i++) {
        const index = (first + i) % this.members.length;
        const member = this.members[index];
        try {
          const reply = await attempt(member, index);
          this.#preferred = index;
          return reply;
        } catch (error) {
          if (op.signal.aborted) throw op.signal.reason ?? error;
          lastError = error;
          if (
            error instanceof EtcdReplyError &&
            error.code === CODE.unavailable
          ) {
            transient = true;
            failures.set(member.name, `answered "${error.text}"`);
          } else if (error instanceof TypeError) {
            // fetch could not connect, or lost the connection.
            const reason = connectionReason(error);
            transient ||= isLostConnection(reason);
            failures.set(member.name, reason);
          } else {
            throw error;
          }
        }
      }
      const left = op.deadline - Date.now();
      if (!transient || left < 250) {
        throw new UnreachableError(failures, lastError);
      }
      await sleep(Math.min(100, left - 200));
      first = this.#preferred;
    }
  }

  /**
   * Runs `send` with the auth header, signing in first when `user` is
   * set, and once more with a fresh token if etcd calls it invalid.
   */
  async #authorized<T>(
    member: Member,
    op: Operation,
    send: (headers: Record<string, string>) => Promise<T>,
    fresh = false,
  ): Promise<T> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
    };
    if (this.#user !== undefined) {
      headers.authorization = await this.#authToken(member, op, fresh);
    }
    try {
      return await send(headers);
    } catch (error) {
      // Tokens lapse after some idle minutes, or when the member restarts.
      if (
        !fresh && this.#user !== undefined &&
        error instanceof EtcdReplyError &&
        /invalid auth token/.test(error.text)
      ) {
        return await this.#authorized(member, op, send, true);
      }
      throw error;
    }
  }

  /** One member's watch stream, once its first line says it is created. */
  async #openWatch(
    member: Member,
    index: number,
    body: unknown,
    stop: AbortSignal,
    headers: Record<string, string>,
  ): Promise<WatchStream> {
    const path = "/v3/watch";
    const response = await this.#fetch(member, path, body, stop, headers);
    if (!response.ok || !response.body) {
      this.#check(member, path, response, await response.text());
      throw new NotEtcdError(member.name, response.status, path);
    }
    const stream = new WatchStream(response.body, index, stop);
    try {
      let line: unknown;
      try {
        line = await stream.next();
      } catch (error) {
        if (error instanceof SyntaxError) {
          throw new NotEtcdError(member.name, response.status, path);
        }
        throw error;
      }
      if (line === undefined) {
        // The member closed the stream unanswered: as if the connection
        // was lost, so the next member is tried.
        throw new TypeError("connection closed before the watch was created");
      }
      const result = watchResult(line, member, this.#about);
      if (!result) throw new NotEtcdError(member.name, response.status, path);
      if (result.canceled) {
        const reason = String(result.cancel_reason ?? "watch canceled")
          .replace(/^etcdserver: /, "");
        throw new EtcdReplyError(
          /permission denied/.test(reason) ? CODE.permissionDenied : 2,
          reason,
          member.name,
          this.#about,
        );
      }
      if (result.created !== true) {
        throw new NotEtcdError(member.name, response.status, path);
      }
      stream.revision = result.header?.revision ?? "0";
      return stream;
    } catch (error) {
      await stream.cancel();
      throw error;
    }
  }

  #authToken(member: Member, op: Operation, fresh: boolean): Promise<string> {
    if (fresh || !this.#token) {
      const token = this.#post<{ token: string }>(
        member,
        "/v3/auth/authenticate",
        { name: this.#user, password: this.#password },
        op,
        { "content-type": "application/json" },
      ).then((reply) => reply.token);
      // A failed sign-in is not kept: the next call tries again.
      token.catch(() => {
        if (this.#token === token) this.#token = undefined;
      });
      this.#token = token;
    }
    return this.#token;
  }

  async #post<T>(
    member: Member,
    path: string,
    body: unknown,
    op: Operation,
    headers: Record<string, string>,
  ): Promise<T> {
    const response = await this.#fetch(member, path, body, op.signal, headers);
    return this.#check<T>(member, path, response, await response.text());
  }

  async #fetch(
    member: Member,
    path: string,
    body: unknown,
    signal: AbortSignal,
    headers: Record<string, string>,
  ): Promise<Response> {
    try {
      return await fetch(member.url + path, {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        client: this.#client,
        signal,
      });
    } catch (error) {
      if (/are blocked|bad port/i.test(String((error as Error)?.message))) {
        throw new BlockedPortError(member.name, error);
      }
      throw error;
    }
  }

  /** The reply in `text`, or the error etcd (or something else) gave. */
  #check<T>(member: Member, path: string, response: Response, text: string): T {
    if (response.status === 400 && /^CommonName of client/.test(text)) {
      throw new CommonNameError(member.name);
    }
    let reply: { error?: string; message?: string; code?: number };
    try {
      reply = JSON.parse(text);
    } catch {
      throw new NotEtcdError(member.name, response.status, path);
    }
    if (typeof reply !== "object" || reply === null) {
      throw new NotEtcdError(member.name, response.status, path);
    }
    if (typeof reply.error === "object" && reply.error !== null) {
      watchResult(reply, member, this.#about); // Throws the stream's error.
    }
    if (!response.ok || reply.code !== undefined && reply.code !== 0) {
      const message = reply.message ?? reply.error;
      if (typeof message !== "string") {
        throw new NotEtcdError(member.name, response.status, path);
      }
      throw new EtcdReplyError(
        Number(reply.code ?? 2),
        message.replace(/^etcdserver: /, ""),
        member.name,
        this.#about,
      );
    }
    return reply as T;
  }

  close(): void {
    try {
      this.#client.close();
    } catch {
      // Closed already.
    }
  }
}
