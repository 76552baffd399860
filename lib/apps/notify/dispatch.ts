/**
 * The hook dispatcher: watches the store and delivers events to the
 * config's hooks. Several may run (one per `serve` instance); one is
 * active at a time, holding a Stormlock lease on the store itself, and
 * the others stand by and take over when its lease lapses. The active
 * one keeps a checkpoint (the time of the oldest event not yet delivered)
 * in its lease's reason, so the next one resumes there: delivery is at
 * least once, and each event is normally delivered once.
 *
 * @module
 */
import { bookkeeping } from "../../kit/views.ts";
import { INTERNAL_MARK } from "../../kit/reserved.ts";
import { LeaseNotHeldError, LockHeldError } from "../../kit/errors.ts";
import type { Backend, Lease } from "../../kit/types.ts";
import { backendsInUse, type Config } from "../../composition/config.ts";
import { type Hook, HookDelivery, parseHooks, watchPrefix } from "./hooks.ts";
import { type WatchedBackend, watchEvents } from "../../composition/watch.ts";
import { isoTime } from "../output/format.ts";

/** The resource whose lease makes a dispatcher the active one. */
export const DISPATCHER_RESOURCE = `stormlock${INTERNAL_MARK}dispatcher`;

/** The active dispatcher's lease TTL: a dead one is replaced this soon. */
const LEADER_TTL_SECONDS = 15;

/** How a checkpoint is written in the dispatcher lease's reason. */
const CHECKPOINT = /^checkpoint (\d{4}-\d\d-\d\dT[^ ]+)$/;

/**
 * What {@linkcode startDispatcher} needs: the config and its backends.
 * `Stormlock` has both.
 * @example
 * ```ts ignore
 * const source: DispatchSource = await openStormlock();
 * ```
 */
export interface DispatchSource {
  /** The config, for its hooks and backends. */
  readonly config: Config;
  /** Opens a backend by its config name. */
  backend(name: string): Promise<Backend>;
}

/**
 * How a dispatcher runs.
 * @example
 * ```ts
 * import type { DispatcherOptions } from "./dispatch.ts";
 * const options: DispatcherOptions = { principal: "serve@host", warn: console.error };
 * ```
 */
export interface DispatcherOptions {
  /** Who holds the dispatcher lease, e.g. `serve@host:7878`. */
  principal: string;
  /** Receives one-line notes: taking over, standing by, failed deliveries. */
  warn?: (message: string) => void;
  /**
   * Hooks to deliver to; read from the config when absent.
   */
  hooks?: readonly Hook[];
  /** The `expiring` lead time, in ms. @default 10 minutes */
  expiringLeadMs?: number;
  /** How often the store is read, in ms. */
  pollMs?: number;
  /** The first retry delay of a failed delivery, in ms. @default 1000 */
  firstRetryMs?: number;
  /** Told when this dispatcher becomes active (`true`) or stands by. */
  onActive?: (active: boolean) => void;
}

/**
 * A running dispatcher.
 * @example
 * ```ts ignore
 * const dispatcher = startDispatcher(locks, { principal: "serve@host" });
 * await dispatcher.stop();
 * ```
 */
export interface Dispatcher {
  /** Whether this one is the active dispatcher now. */
  readonly active: boolean;
  /** How many hooks it delivers to (0: it does nothing). */
  readonly hooks: number;
  /** Stops: gives up the lease, after a short grace for deliveries. */
  stop(): Promise<void>;
}

/**
 * Starts a dispatcher for the config's hooks; with none, it does nothing.
 * It never throws once started: store failures are retried and reported
 * through `warn`.
 *
 * @param source The config and its backends (a `Stormlock`).
 * @param options Who it is, and where notes go.
 * @throws {ConfigError} on a bad `[hook.NAME]` section.
 * @example
 * ```ts ignore
 * const dispatcher = startDispatcher(locks, { principal: "serve@host", warn: console.error });
 * ```
 */
export function startDispatcher(
  source: DispatchSource,
  options: DispatcherOptions,
): Dispatcher {
  const warn = options.warn ?? (() => {});
  const hooks = options.hooks ?? parseHooks(source.config, warn);
  const stopping = new AbortController();
  let active = false;
  const setActive = (now: boolean) => {
    if (now === active) return;
    active = now;
    options.onActive?.(now);
  };
  const running = hooks.length === 0
    ? Promise.resolve()
    : lead().catch((error) => warn(`dispatcher stopped: ${error?.message}`));

  async function lead(): Promise<void> {
    const names = backendsInUse(source.config);
    const opened = await retrying(() => source.backend(names[0]));
    if (!opened) return;
    // The dispatcher's lease lives under Stormlock's reserved names.
    const home = bookkeeping(opened);
    let saidHeld = false;
    while (!stopping.signal.aborted) {
      let lease: Lease;
      try {
        lease = await home.acquire(
          DISPATCHER_RESOURCE,
          options.principal,
          LEADER_TTL_SECONDS,
        );
      } catch (error) {
        if (error instanceof LockHeldError) {
          if (!saidHeld) {
            warn(
              `dispatcher standing by: ${error.holder.principal} delivers the hooks`,
            );
            saidHeld = true;
          }
        } else {
          warn(`dispatcher: ${(error as Error).message}; retrying`);
        }
        await pause(Math.min(5000, LEADER_TTL_SECONDS * 1000 / 3));
        continue;
      }
      saidHeld = false;
      await serveAsActive(home, lease, names);
    }
  }

  async function serveAsActive(
    home: Backend,
    taken: Lease,
    names: string[],
  ): Promise<void> {
    let lease = taken;
    const since = await checkpoint(home, lease.id);
    setActive(true);
    warn(
      `dispatcher active: delivering to ${hooks.length} hook${
        hooks.length === 1 ? "" : "s"
      }${since ? ` from ${isoTime(since)}` : ""}`,
    );
    const delivery = new HookDelivery(hooks, {
      warn,
      firstRetryMs: options.firstRetryMs,
    });
    const watching = new AbortController();
    const stopWatch = () => watching.abort();
    stopping.signal.addEventListener("abort", stopWatch, { once: true });
    let last: Date | undefined = since;
    const backends: WatchedBackend[] = [];
    for (const name of names) {
      const backend = await retrying(() => source.backend(name));
      if (!backend) return;
      backends.push({ name, backend });
    }
    const watched = watchEvents(backends, {
      prefix: watchPrefix(hooks),
      since,
      expiringLeadMs: options.expiringLeadMs,
      pollMs: options.pollMs,
      signal: watching.signal,
      onEvent(event) {
        last = event.at;
        delivery.send(event);
      },
      onError: (error, backend) =>
        warn(`dispatcher: backend "${backend}" failed: ${error.message}`),
      onRecover: (backend) =>
        warn(`dispatcher: backend "${backend}" answers again`),
    });
    const mark = () => {
      // Nothing pending: resume just after the last event sent.
      const at = delivery.oldestPending() ??
        (last && new Date(last.getTime() + 1));
      return at ? `checkpoint ${isoTime(at)}` : undefined;
    };
    let written: string | undefined;
    let renewedAt = Date.now();
    // Renew every third of the TTL, and within a second of a new
    // checkpoint, until the lease is lost or we stop.
    while (!watching.signal.aborted) {
      await pause(1000, watching.signal);
      if (watching.signal.aborted) break;
      const reason = mark();
      if (
        reason === written &&
        Date.now() - renewedAt < LEADER_TTL_SECONDS * 1000 / 3
      ) continue;
      renewedAt = Date.now();
      try {
        lease = await home.renew(
          DISPATCHER_RESOURCE,
          lease.id,
          LEADER_TTL_SECONDS,
          reason && reason !== written ? { reason } : {},
        );
        written = reason ?? written;
      } catch (error) {
        if (error instanceof LeaseNotHeldError) {
          warn("dispatcher lost its lease; standing by");
          watching.abort();
          break;
        }
        if (lease.expires.getTime() - Date.now() < 2000) {
          warn(
            `dispatcher can't renew its lease (${
              (error as Error).message
            }); standing by`,
          );
          watching.abort();
          break;
        }
      }
    }
    stopping.signal.removeEventListener("abort", stopWatch);
    await watched.catch(() => {});
    await delivery.close(stopping.signal.aborted ? 3000 : 0);
    setActive(false);
    if (stopping.signal.aborted) {
      const reason = mark();
      await home.renew(
        DISPATCHER_RESOURCE,
        lease.id,
        LEADER_TTL_SECONDS,
        reason && reason !== written ? { reason } : {},
      ).catch(() => {});
      await home.release(DISPATCHER_RESOURCE, lease.id).catch(() => {});
    }
  }

  /**
   * Where the last active dispatcher got to, from history: its last
   * checkpoint, or, when it died before writing one, when it became
   * active. `undefined` (start from now) when there was none.
   */
  async function checkpoint(
    home: Backend,
    mine: string,
  ): Promise<Date | undefined> {
    if (!home.capabilities.history) return undefined;
    try {
      const events = (await home.history(DISPATCHER_RESOURCE, 200))
        .filter((event) => event.id !== mine);
      const previous = events[0];
      if (!previous) return undefined;
      const match = CHECKPOINT.exec(previous.reason ?? "");
      if (match) return new Date(match[1]);
      return previous.created;
    } catch {
      return undefined;
    }
  }

  async function retrying<T>(open: () => Promise<T>): Promise<T | undefined> {
    let said = false;
    while (!stopping.signal.aborted) {
      try {
        return await open();
      } catch (error) {
        if (!said) warn(`dispatcher: ${(error as Error).message}; retrying`);
        said = true;
        await pause(5000);
      }
    }
    return undefined;
  }

  function pause(ms: number, signal = stopping.signal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
  }

  return {
    get active() {
      return active;
    },
    hooks: hooks.length,
    async stop() {
      stopping.abort();
      await running;
    },
  };
}
