/**
 * etcd's watch stream, as the JSON gateway sends it (`POST /v3/watch`,
 * one JSON result per line).
 *
 * @module
 */
import type { Operation } from "../../lib/kit/contract.ts";
import { within } from "../../lib/kit/deadline.ts";
import { EtcdReplyError } from "./errors.ts";

/** One response of a watch stream, as the gateway words it. */
export interface WatchResult {
  header?: { revision?: string };
  created?: boolean;
  canceled?: boolean;
  cancel_reason?: string;
  compact_revision?: string;
  events?: { type?: "PUT" | "DELETE"; kv?: { mod_revision?: string } }[];
}

/**
 * A watch stream's line as a result, or `undefined` if it is not one.
 * @throws {EtcdReplyError} when the line is an error.
 */
export function watchResult(
  line: unknown,
  member: { name: string },
  about: { user?: string; prefix: string },
): WatchResult | undefined {
  if (typeof line !== "object" || line === null) return undefined;
  const { result, error } = line as { result?: unknown; error?: unknown };
  if (typeof error === "object" && error !== null) {
    // grpc-gateway words a stream's error { grpc_code, message } (v1) or
    // { code, message } (v2).
    const { grpc_code, code, message } = error as Record<string, unknown>;
    throw new EtcdReplyError(
      Number(grpc_code ?? code ?? 2),
      String(message ?? "watch failed").replace(/^etcdserver: /, ""),
      member.name,
      about,
    );
  }
  return typeof result === "object" && result !== null
    ? result as WatchResult
    : undefined;
}

/**
 * A watch's response body, read as JSON lines. Its `revision` is the
 * newest the watch has seen, so a reconnect can go on after it.
 */
export class WatchStream {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = "";
  readonly #stop: AbortSignal;
  readonly #onStop: () => void;
  #cancelled?: Promise<void>;
  /** The newest revision seen. */
  revision = "0";

  constructor(
    body: ReadableStream<Uint8Array>,
    /** The member's index. */
    readonly member: number,
    stop: AbortSignal,
  ) {
    this.#reader = body.getReader();
    // An aborted fetch does not always end a body already being read:
    // cancel it outright, which also ends a pending read.
    this.#stop = stop;
    this.#onStop = () => void this.cancel();
    if (stop.aborted) this.cancel();
    else stop.addEventListener("abort", this.#onStop, { once: true });
  }

  /**
   * The next line, parsed; `undefined` once the stream ends.
   * @throws {SyntaxError} when a line is not JSON.
   */
  async next(): Promise<unknown> {
    for (;;) {
      const end = this.#buffer.indexOf("\n");
      if (end >= 0) {
        const line = this.#buffer.slice(0, end).trim();
        this.#buffer = this.#buffer.slice(end + 1);
        if (line !== "") return JSON.parse(line);
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) {
        const rest = this.#buffer.trim();
        this.#buffer = "";
        return rest === "" ? undefined : JSON.parse(rest);
      }
      this.#buffer += this.#decoder.decode(value, { stream: true });
    }
  }

  /** Cancels the body, so nothing stays open. Never throws. */
  cancel(): Promise<void> {
    if (!this.#cancelled) {
      this.#stop.removeEventListener("abort", this.#onStop);
      this.#cancelled = this.#reader.cancel().catch(() => {
        // Aborted or closed already.
      });
    }
    return this.#cancelled;
  }
}

/** The later of two revisions (decimal text). */
export function later(revision: string, other: string | undefined): string {
  if (other === undefined || !/^\d+$/.test(other)) return revision;
  return BigInt(other) > BigInt(revision) ? other : revision;
}

/** Opens a watch stream on `key` from `startRevision`, on member `after` first. */
export type OpenWatch = (
  key: string,
  startRevision: string | undefined,
  op: Operation,
  stop: AbortSignal,
  after?: number,
) => Promise<WatchStream>;

/** A store's open watches on lease keys, each reconnected once. */
export class Watches {
  readonly #open: OpenWatch;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  /** Open watches: aborting `stop` ends one; `done` when all is closed. */
  readonly #watches = new Set<{ stop: AbortController; done: Promise<void> }>();

  constructor(
    open: OpenWatch,
    settings: { prefix: string; timeoutMs: number },
  ) {
    this.#open = open;
    this.#prefix = settings.prefix;
    this.#timeoutMs = settings.timeoutMs;
  }

  /**
   * Watches the lease key with `POST /v3/watch`: every PUT or DELETE of
   * it (acquire, renew, release, break, and expiry, since etcd deletes an
   * expired lease's key) calls `onChange`. Resolves once etcd reports the
   * watch created. If the stream ends or fails, it is opened once more on
   * the next member, from the revision after the last one seen; after
   * that, the watch stops quietly and waiters poll.
   */
  watch(
    key: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    const stop = new AbortController();
    const end = () => stop.abort();
    signal.addEventListener("abort", end, { once: true });
    // The deadline bounds the setup only.
    const expire = () => stop.abort(op.signal.reason);
    op.signal.addEventListener("abort", expire, { once: true });
    let ready!: { resolve(): void; reject(error: unknown): void };
    const created = new Promise<void>((resolve, reject) => {
      ready = { resolve, reject };
    });
    const run = async () => {
      let stream: WatchStream;
      try {
        stream = await this.#open(key, undefined, op, stop.signal);
      } catch (error) {
        // Stopped by its owner while starting: nothing to report.
        if (signal.aborted) ready.resolve();
        else ready.reject(error);
        return;
      } finally {
        op.signal.removeEventListener("abort", expire);
      }
      ready.resolve();
      await this.#follow(key, stream, onChange, stop);
    };
    const watch = {
      stop,
      done: run().finally(() => {
        signal.removeEventListener("abort", end);
        this.#watches.delete(watch);
      }),
    };
    this.#watches.add(watch);
    return created;
  }

  /** Reads a watch's events until it is stopped or has failed twice. */
  async #follow(
    key: string,
    first: WatchStream,
    onChange: () => void,
    stop: AbortController,
  ): Promise<void> {
    const notify = () => {
      try {
        onChange();
      } catch {
        // The subscriber's trouble, not the watch's.
      }
    };
    let stream = first;
    for (let reconnects = 0;; reconnects++) {
      try {
        for (;;) {
          const line = await stream.next();
          if (line === undefined) break;
          const result = watchResult(line, { name: "" }, {
            prefix: this.#prefix,
          });
          if (!result) break;
          for (const event of result.events ?? []) {
            stream.revision = later(stream.revision, event.kv?.mod_revision);
            notify();
          }
          stream.revision = later(stream.revision, result.header?.revision);
          if (result.canceled) {
            // Compacted past what it had not sent: something may be missed.
            if (result.compact_revision) notify();
            break;
          }
        }
      } catch {
        // Aborted, or the stream failed.
      } finally {
        await stream.cancel();
      }
      if (stop.signal.aborted || reconnects >= 1) return;
      const from = stream.revision === "0"
        ? undefined
        : String(BigInt(stream.revision) + 1n);
      const member = stream.member;
      try {
        // The deadline bounds the setup; passing it ends the watch.
        stream = await within(this.#timeoutMs, (bound) => {
          bound.onExpire(() => stop.abort());
          return this.#open(key, from, bound, stop.signal, member);
        });
      } catch {
        return; // Waiters poll.
      }
    }
  }

  /** Stops every watch and waits until each is closed. */
  async close(): Promise<void> {
    const watches = [...this.#watches];
    for (const watch of watches) watch.stop.abort();
    await Promise.all(watches.map((watch) => watch.done));
  }
}
