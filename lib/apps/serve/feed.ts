/**
 * The change feed of `stormlock serve`: server-sent event streams. The
 * page's stream of live locks comes from one poller shared by every page,
 * and a waiter's stream of one lock comes from the store's own events
 * where it has them, else from polling that lease.
 *
 * @module
 */
import { leaseJson } from "../output/format.ts";
import type { ListedLease, Stormlock } from "../../composition/stormlock.ts";
import { StormlockError } from "../../kit/errors.ts";
import type { Backend } from "../../kit/types.ts";
import { HttpError, respond } from "./http.ts";

/** The most event streams open at once; each costs a timer, not a poll. */
const MAX_STREAMS = 256;

/** The most event streams one client address may hold of them. */
const MAX_STREAMS_PER_CLIENT = 16;

type Send = (event: string, data: unknown) => void;

/** What the watcher tells each listener: the live locks, or an outage. */
export type WatchState =
  | {
    event: "locks";
    leases: ListedLease[];
    /** Backends that were down: their locks are missing from `leases`. */
    missing?: { backend: string; error: string }[];
  }
  | { event: "unavailable"; error: string };

/**
 * Polls the store while anyone listens, and tells every listener when the
 * set of locks changes, or the store fails or recovers. Each listener
 * formats what it may see itself (lease ids are shown to their holders).
 */
class Watcher {
  readonly #listeners = new Set<(state: WatchState) => void>();
  #last: string | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(
    readonly store: Pick<Stormlock, "list">,
    readonly pollMs: number,
  ) {}

  /** Adds a listener, sending it the current state first. */
  async add(listener: (state: WatchState) => void): Promise<void> {
    const { state, key } = await this.#read();
    if (this.#closed) return;
    this.#last ??= key;
    listener(state);
    this.#listeners.add(listener);
    this.#schedule();
  }

  remove(listener: (state: WatchState) => void): void {
    this.#listeners.delete(listener);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#listeners.clear();
  }

  async #read(): Promise<{ state: WatchState; key: string }> {
    try {
      // A backend that is down leaves the others' locks shown, with a
      // "partial" event naming it after the "locks" one.
      const missing: { backend: string; error: string }[] = [];
      const leases = await this.store.list("", {
        onUnavailable: (backend, error) =>
          missing.push({ backend, error: errorText(error) }),
      });
      return {
        state: {
          event: "locks",
          leases,
          ...(missing.length > 0 ? { missing } : {}),
        },
        key: JSON.stringify([leases.map(leaseJson), missing]),
      };
    } catch (error) {
      const text = errorText(error);
      return { state: { event: "unavailable", error: text }, key: `!${text}` };
    }
  }

  #schedule(): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(async () => {
      try {
        if (this.#listeners.size === 0) {
          this.#last = undefined;
          return;
        }
        const { state, key } = await this.#read();
        if (key !== this.#last) {
          this.#last = key;
          for (const listener of [...this.#listeners]) listener(state);
        }
      } finally {
        this.#timer = undefined;
        if (this.#listeners.size > 0) this.#schedule();
      }
    }, this.pollMs);
  }
}

function errorText(error: unknown): string {
  if (error instanceof StormlockError) return error.message;
  return "Internal error; see the server's log";
}

/**
 * The live event streams of one server: at most {@linkcode MAX_STREAMS},
 * and {@linkcode MAX_STREAMS_PER_CLIENT} pages per client address.
 */
export class ChangeFeed {
  readonly #watcher: Watcher;
  // Each live event stream, and the client address that opened it.
  readonly #streams = new Map<
    ReadableStreamDefaultController<Uint8Array>,
    string
  >();

  constructor(store: Pick<Stormlock, "list">, readonly pollMs: number) {
    this.#watcher = new Watcher(store, pollMs);
  }

  #stream(
    client: string,
    /** Whether the per-client limit applies (pages, not waiters). */
    limited: boolean,
    start: (
      send: Send,
      stop: () => void,
    ) => void | Promise<void>,
    onStop: () => void,
  ): Response {
    const streams = this.#streams;
    if (streams.size >= MAX_STREAMS) {
      throw new HttpError(
        503,
        `Too many live streams (${MAX_STREAMS}); close some, or poll /api/locks`,
        { "retry-after": "10" },
      );
    }
    if (limited) {
      let mine = 0;
      for (const owner of streams.values()) if (owner === client) mine++;
      if (mine >= MAX_STREAMS_PER_CLIENT) {
        throw new HttpError(
          429,
          `This client has ${mine} live pages open, the most one client may; close some, or poll /api/locks`,
          { "retry-after": "10" },
        );
      }
    }
    let ping: ReturnType<typeof setInterval> | undefined;
    let control: ReadableStreamDefaultController<Uint8Array>;
    let stopped = false;
    const stop = () => {
      if (stopped) return;
      stopped = true;
      clearInterval(ping);
      streams.delete(control);
      onStop();
      try {
        control.close();
      } catch { /* already closed */ }
    };
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        control = controller;
        streams.set(controller, client);
        const send: Send = (event, data) => {
          try {
            controller.enqueue(
              encoder.encode(
                `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`,
              ),
            );
          } catch {
            stop();
          }
        };
        controller.enqueue(encoder.encode(": stormlock events\n\n"));
        // A comment now and then keeps proxies from closing an idle stream.
        ping = setInterval(() => {
          try {
            controller.enqueue(encoder.encode(": ping\n\n"));
          } catch {
            stop();
          }
        }, 15_000);
        Promise.resolve(start(send, stop)).catch(stop);
      },
      cancel: stop,
    });
    return respond(body, 200, "text/event-stream; charset=utf-8", {
      "x-accel-buffering": "no",
    });
  }

  /**
   * The page's stream: `locks` whenever the set of live locks changes,
   * `partial` naming backends that were down, `unavailable` while the
   * store is. `show` turns the locks into what this caller may see.
   */
  locks(client: string, show: (leases: ListedLease[]) => unknown[]): Response {
    let listener: ((state: WatchState) => void) | undefined;
    return this.#stream(
      client,
      true,
      (send) => {
        listener = (state) => {
          if (state.event === "unavailable") {
            send("unavailable", { error: state.error });
            return;
          }
          send("locks", show(state.leases));
          if (state.missing) send("partial", { missing: state.missing });
        };
        return this.#watcher.add(listener);
      },
      () => listener && this.#watcher.remove(listener),
    );
  }

  /**
   * Change events of one lock, for waiters: from the store's own events
   * where it has them, else by polling the lease.
   */
  watchLock(
    resource: string,
    client: string,
    backendOf: (resource: string) => Promise<Backend>,
  ): Response {
    const abort = new AbortController();
    return this.#stream(client, false, async (send, stop) => {
      const backend = await backendOf(resource);
      const changed = () => send("change", { resource });
      if (backend.capabilities.events) {
        await backend.watch(resource, changed, abort.signal);
        send("ready", { resource });
        return;
      }
      // A quick take-and-release leaves the lease as it was, but not the
      // history, so the latest event is part of what is compared.
      const look = async () => {
        const [lease, latest] = await Promise.all([
          backend.current(resource),
          backend.capabilities.history
            ? backend.history(resource, 1).then((events) => events[0])
            : undefined,
        ]);
        return JSON.stringify([
          lease?.id,
          latest?.kind,
          latest?.id,
          latest?.at.getTime(),
        ]);
      };
      let last = await look();
      send("ready", { resource });
      const poll = async () => {
        while (!abort.signal.aborted) {
          await new Promise((done) =>
            setTimeout(done, Math.min(this.pollMs, 1000))
          );
          if (abort.signal.aborted) return;
          try {
            const now = await look();
            if (now !== last) {
              last = now;
              changed();
            }
          } catch {
            stop(); // The client polls on; its next watch starts afresh.
            return;
          }
        }
      };
      poll();
    }, () => abort.abort());
  }

  /** Ends every event stream and stops polling. */
  close(): void {
    this.#watcher.close();
    for (const stream of [...this.#streams.keys()]) {
      try {
        stream.close();
      } catch { /* already closed */ }
    }
    this.#streams.clear();
  }
}

const encoder = new TextEncoder();
