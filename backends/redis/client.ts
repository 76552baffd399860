/**
 * A lean Redis client for the few commands the redis backend sends: AUTH,
 * SELECT, EVALSHA/EVAL, SUBSCRIBE and UNSUBSCRIBE, over one TCP or TLS
 * socket, speaking RESP2. It has no reconnecting, no offline queue and no
 * timers of its own: the kit's deadline bounds every operation, and the
 * backend drops a connection whose state is unknown.
 *
 * Why not ioredis: loading it (and the Node compatibility modules it
 * needs) cost about 150 ms at every start, 2.7× an empty `deno run` and
 * most of a CLI `acquire`; a bundle of it still cost 125 ms. This file and
 * `Deno.connect` cost about 5 ms. See docs/performance.md.
 *
 * @module
 */

/** An error reply from the server (`-ERR …`); its message is the server's. */
export class ReplyError extends Error {
  /** Names the error for callers that tell replies from socket failures. */
  override name = "ReplyError";
}

/** A decoded reply: bulk and simple strings, integers, nil, arrays, errors. */
export type Reply = string | number | null | ReplyError | Reply[];

/** Where and how to connect. */
export interface RedisTarget {
  /** A host name or a bare IP address. */
  host: string;
  /** The TCP port. */
  port: number;
  /** Whether to speak TLS. */
  tls: boolean;
  /** A PEM bundle of CAs to trust instead of the system's. */
  ca?: string;
  /** The limit on connecting, TLS included, in ms. */
  connectMs: number;
}

const CRLF = new Uint8Array([13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A Lua script and its SHA-1, for EVALSHA. */
export interface Script {
  /** The script's source. */
  lua: string;
  /** The number of its arguments that are keys. */
  keys: number;
  /** Its SHA-1 in hex, once computed. */
  sha?: string;
}

/** The SHA-1 of `text` in lower-case hex, as Redis names a script. */
async function sha1(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", encoder.encode(text));
  return Array.from(
    new Uint8Array(digest),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
}

/** Opens the socket, TLS included, within `target.connectMs`. */
async function connectSocket(target: RedisTarget): Promise<Deno.Conn> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), target.connectMs);
  const timedOut = () =>
    new Error(
      `connect ETIMEDOUT: no connection within ${target.connectMs} ms`,
    );
  try {
    let conn: Deno.Conn = await Deno.connect({
      hostname: target.host,
      port: target.port,
      signal: abort.signal,
    }).catch((error) => {
      throw abort.signal.aborted ? timedOut() : error;
    });
    if (target.tls) {
      const tcp = conn;
      abort.signal.addEventListener("abort", () => tcp.close(), { once: true });
      conn = await Deno.startTls(tcp as Deno.TcpConn, {
        hostname: target.host,
        caCerts: target.ca ? [target.ca] : undefined,
      }).catch((error) => {
        throw abort.signal.aborted ? timedOut() : error;
      });
      await (conn as Deno.TlsConn).handshake().catch((error) => {
        conn.close();
        throw abort.signal.aborted ? timedOut() : error;
      });
    }
    return conn;
  } finally {
    clearTimeout(timer);
  }
}

/** Thrown by the parser when the buffer ends inside a reply. */
const INCOMPLETE = Symbol("incomplete");

/**
 * One connection to a Redis server. Commands are pipelined: replies come
 * back in order. Once it has subscribed, `message` pushes go to
 * {@linkcode RedisConnection.onMessage} instead.
 *
 * @example
 * ```ts ignore
 * const redis = await RedisConnection.open({ host: "127.0.0.1", port: 6379, tls: false, connectMs: 3000 });
 * await redis.send(["SET", "k", "v"]);
 * redis.close();
 * ```
 */
export class RedisConnection {
  readonly #conn: Deno.Conn;
  readonly #pending: {
    resolve(reply: Reply): void;
    reject(error: unknown): void;
  }[] = [];
  #buffer: Uint8Array = new Uint8Array(0);
  #subscribed = false;
  #closed = false;
  /** The socket's own failure, which names the cause of a closed one. */
  lastError?: unknown;
  /** Hears each `message` push: its channel and payload. */
  onMessage?: (channel: string, message: string) => void;
  /** Hears the connection's end, once, whoever ended it. */
  onClose?: () => void;

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#readLoop();
  }

  /** Connects, without sending anything. */
  static async open(target: RedisTarget): Promise<RedisConnection> {
    return new RedisConnection(await connectSocket(target));
  }

  /** Whether the connection has ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one command and resolves with its reply.
   * @throws {ReplyError} on an error reply.
   * @throws {Error} "Connection is closed." once it has ended.
   */
  send(args: readonly (string | number)[]): Promise<Reply> {
    if (this.#closed) {
      return Promise.reject(this.lastError ?? closedError());
    }
    const parts: Uint8Array[] = [encoder.encode(`*${args.length}\r\n`)];
    for (const arg of args) {
      const bytes = encoder.encode(String(arg));
      parts.push(encoder.encode(`$${bytes.length}\r\n`), bytes, CRLF);
    }
    if (/^(P?SUBSCRIBE)$/i.test(String(args[0]))) this.#subscribed = true;
    const reply = new Promise<Reply>((resolve, reject) => {
      this.#pending.push({ resolve, reject });
    });
    this.#write(concat(parts)).catch((error) => this.#fail(error));
    return reply;
  }

  /**
   * Runs a script by its SHA-1, loading it with EVAL when the server has
   * not seen it.
   */
  async evalScript(
    script: Script,
    args: readonly (string | number)[],
  ): Promise<Reply> {
    script.sha ??= await sha1(script.lua);
    try {
      return await this.send(["EVALSHA", script.sha, script.keys, ...args]);
    } catch (error) {
      if (!(error instanceof ReplyError && /^NOSCRIPT/.test(error.message))) {
        throw error;
      }
      return await this.send(["EVAL", script.lua, script.keys, ...args]);
    }
  }

  /** Ends the connection at once; pending commands fail. */
  close(): void {
    this.#fail(undefined);
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) {
      at += await this.#conn.write(bytes.subarray(at));
    }
  }

  async #readLoop(): Promise<void> {
    const chunk = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        this.#buffer = this.#buffer.length === 0
          ? chunk.slice(0, n)
          : concat([this.#buffer, chunk.subarray(0, n)]);
        this.#drain();
      }
      this.#fail(undefined);
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Hands every complete reply in the buffer to its command. */
  #drain(): void {
    while (this.#buffer.length > 0) {
      let parsed: [Reply, number];
      try {
        parsed = parse(this.#buffer, 0);
      } catch (error) {
        if (error === INCOMPLETE) return;
        throw error;
      }
      const [reply, end] = parsed;
      this.#buffer = this.#buffer.subarray(end);
      if (this.#subscribed && isPush(reply)) {
        try {
          this.onMessage?.(reply[1] as string, reply[2] as string);
        } catch { /* a listener's failure is its own */ }
        continue;
      }
      const waiter = this.#pending.shift();
      if (!waiter) throw protocolError("a reply nobody asked for");
      if (reply instanceof ReplyError) waiter.reject(reply);
      else waiter.resolve(reply);
    }
  }

  #fail(error: unknown): void {
    if (error !== undefined && this.lastError === undefined && !this.#closed) {
      this.lastError = error;
    }
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const failure = this.lastError ?? closedError();
    for (const waiter of this.#pending.splice(0)) waiter.reject(failure);
    this.onClose?.();
  }
}

function closedError(): Error {
  return new Error("Connection is closed.");
}

function protocolError(what: string): Error {
  return new Error(`Protocol error: ${what}`);
}

function isPush(reply: Reply): reply is Reply[] {
  return Array.isArray(reply) && reply.length === 3 &&
    (reply[0] === "message");
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** The end of the line starting at `at` (the index of its CR). */
function lineEnd(buffer: Uint8Array, at: number): number {
  const end = buffer.indexOf(13, at);
  if (end === -1 || end + 1 >= buffer.length) throw INCOMPLETE;
  return end;
}

/** One reply starting at `at`: the reply and where the next one starts. */
function parse(buffer: Uint8Array, at: number): [Reply, number] {
  const end = lineEnd(buffer, at);
  const line = decoder.decode(buffer.subarray(at + 1, end));
  const next = end + 2;
  switch (buffer[at]) {
    case 43: // +
      return [line, next];
    case 45: // -
      return [new ReplyError(line), next];
    case 58: // :
      return [Number(line), next];
    case 36: { // $
      const length = Number(line);
      if (length < 0) return [null, next];
      if (next + length + 2 > buffer.length) throw INCOMPLETE;
      return [
        decoder.decode(buffer.subarray(next, next + length)),
        next + length + 2,
      ];
    }
    case 42: { // *
      const count = Number(line);
      if (count < 0) return [null, next];
      const items: Reply[] = [];
      let position = next;
      for (let i = 0; i < count; i++) {
        const [item, after] = parse(buffer, position);
        items.push(item);
        position = after;
      }
      return [items, position];
    }
    default:
      throw protocolError(
        `the server's reply starts with ${
          JSON.stringify(String.fromCharCode(buffer[at]))
        }, which is not Redis`,
      );
  }
}
