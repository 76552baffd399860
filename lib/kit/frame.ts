/**
 * The frame around a store: what every backend's operations share. The
 * closed check, one deadline and `AbortSignal` per operation, the
 * in-flight limit, reserved-name refusal, classification of failures,
 * checks on what the store returns, settling an acquire whose answer was
 * lost, and the tombstone of a broken lease.
 *
 * @module
 */
import {
  AcquireUnknownError,
  BackendUnavailableError,
  LeaseNotHeldError,
  LockHeldError,
  type StormlockError,
  UsageError,
} from "./errors.ts";
import { DeadlineError, within } from "./deadline.ts";
import { assertLeaseId, newLeaseId } from "./lease.ts";
import { formatTimeout } from "./options.ts";
import { resourceNameProblem, shorten } from "./text.ts";
import {
  creatingMissing,
  isTimeout,
  tombstone,
  translate,
  withTombstone,
} from "./failure.ts";
import {
  type Answerer,
  checkedArray,
  checkedEvent,
  checkedLease,
  checkedList,
} from "./checked.ts";
import { MAX_IN_FLIGHT, Turns } from "./turns.ts";
import { attemptMs, type FrameView, requireCapability, VIEW } from "./views.ts";
import type {
  AcquireRequest,
  BackendDefinition,
  Ending,
  Operation,
  Store,
} from "./contract.ts";
import type {
  AcquireDetails,
  Backend,
  BackendContext,
  Breaker,
  Capabilities,
  Lease,
  LeaseEvent,
} from "./types.ts";

/** How `release` ends a lease. */
const RELEASED: Ending = { kind: "released" };

/** A resource used to check that a store answers. */
const PROBE_RESOURCE = "stormlock-probe";

/** The frame around a store: what every backend's operations share. */
export class FramedBackend implements Backend {
  readonly name: string;
  readonly capabilities: Capabilities;
  readonly #definition: BackendDefinition;
  readonly #store: Store;
  readonly #context: BackendContext;
  readonly #timeoutMs: number;
  readonly #plugin?: string;
  readonly #warn?: (message: string) => void;
  readonly #createMissing: boolean;
  readonly #view: FrameView;
  // Shared by the backend and its views: closing one closes all.
  readonly #state: { closed: boolean; turns: Turns };

  constructor(
    definition: BackendDefinition,
    store: Store,
    capabilities: Capabilities,
    context: BackendContext,
    how: {
      timeoutMs: number;
      createMissing?: boolean;
      plugin?: string;
      warn?: (message: string) => void;
      view?: FrameView;
      state?: { closed: boolean; turns: Turns };
    },
  ) {
    this.name = context.name;
    this.capabilities = {
      ...capabilities,
      init: capabilities.init && typeof store.init === "function",
      list: capabilities.list && typeof store.list === "function",
      history: capabilities.history && typeof store.history === "function",
      events: capabilities.events && typeof store.watch === "function",
    };
    this.#definition = definition;
    this.#store = store;
    this.#context = context;
    this.#timeoutMs = how.timeoutMs;
    this.#plugin = how.plugin;
    this.#warn = how.warn;
    this.#createMissing = how.createMissing === true &&
      this.capabilities.init;
    this.#view = how.view ?? {};
    this.#state = how.state ?? {
      closed: false,
      turns: new Turns(MAX_IN_FLIGHT),
    };
  }

  [VIEW](view: FrameView): Backend {
    return new FramedBackend(
      this.#definition,
      this.#store,
      this.capabilities,
      this.#context,
      {
        timeoutMs: this.#timeoutMs,
        createMissing: this.#createMissing,
        plugin: this.#plugin,
        warn: this.#warn,
        view: { ...this.#view, ...view },
        state: this.#state,
      },
    );
  }

  /** Refuses a name with reserved characters, unless this is the queue. */
  #name(resource: string, what = "resource name"): void {
    if (this.#view.bookkeeping && typeof resource === "string") return;
    const problem = resourceNameProblem(resource);
    if (problem) {
      throw new UsageError(
        `The ${what} ${
          typeof resource === "string" ? shorten(resource, 60) : ""
        } ${problem}; use another name`.replace("  ", " "),
      );
    }
  }

  /** The store's own label, for `stormlock config`. */
  get label(): string {
    return this.#label;
  }

  get #label(): string {
    const label = this.#store.label;
    return typeof label === "string" && label !== ""
      ? label
      : `Backend "${this.name}"`;
  }

  #fail(error: unknown, action: string, resource?: string): StormlockError {
    return translate(error, {
      definition: this.#definition,
      context: this.#context,
      failed: { action, resource, label: this.#label },
      timeoutMs: this.#timeoutMs,
      plugin: this.#plugin,
    });
  }

  /** Runs one primitive within the deadline, translating its failures. */
  async #run<T>(
    action: string,
    resource: string | undefined,
    body: (op: Operation) => Promise<T> | T,
  ): Promise<T> {
    if (this.#state.closed) {
      throw new UsageError(
        `The ${this.name} backend is closed; open a new one`,
      );
    }
    const ms = attemptMs(this.#timeoutMs, this.#view.deadline, Date.now());
    const turns = this.#state.turns;
    const done = turns.tryTake() ?? await turns.take(ms);
    if (!done) {
      // Never sent: the store was not asked, so this is no timeout of its.
      throw new BackendUnavailableError(
        `${this.#label} is busy: this process already has ${MAX_IN_FLIGHT} operations on it and more waiting, and this one got no turn within ${
          formatTimeout(ms)
        }; send fewer at once, or raise timeout`,
      );
    }
    // Once sent, the store gets its whole time (a wait for a turn is not
    // the store's slowness), but never more than a caller's deadline left.
    const storeMs = this.#view.deadline === undefined
      ? ms
      : attemptMs(ms, this.#view.deadline, Date.now());
    try {
      const waitsFor = resource === undefined
        ? undefined
        : this.#view.waitedLock?.(resource);
      return await within(storeMs, (bound) => {
        const op: Operation = waitsFor === undefined
          ? bound
          : Object.create(bound, { waitsFor: { value: waitsFor } });
        return this.#createMissing && action !== "init"
          ? creatingMissing(
            this.#definition,
            this.#store,
            { action, resource, label: this.#label },
            op,
            body,
          )
          : body(op);
      });
    } catch (error) {
      if (storeMs < this.#timeoutMs && error instanceof DeadlineError) {
        // Cut short by the caller's deadline: say so, not "down".
        throw new BackendUnavailableError(
          `${this.#label} did not answer within ${
            formatTimeout(storeMs)
          }, the time left to wait (timeout); the store is slow or busy`,
          { cause: error },
        );
      }
      throw this.#fail(error, action, resource);
    } finally {
      done();
    }
  }

  /** Who answers, for the checks on what the store returns. */
  get #who(): Answerer {
    return {
      name: this.name,
      label: this.#label,
      plugin: this.#plugin,
      fail: (error, action, resource) => this.#fail(error, action, resource),
    };
  }

  #checked(value: unknown, resource: string, action: string): Lease {
    return checkedLease(value, resource, action, this.#who);
  }

  async acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
    details: AcquireDetails = {},
  ): Promise<Lease> {
    this.#name(resource);
    const request: AcquireRequest = {
      resource,
      principal,
      ttlSeconds,
      ...details,
      id: details.id === undefined ? newLeaseId() : assertLeaseId(details.id),
    };
    try {
      const lease = await this.#run(
        "acquire",
        resource,
        (op) => this.#store.acquire(request, op),
      );
      return this.#checked(lease, resource, "acquire");
    } catch (error) {
      if (error instanceof LockHeldError) {
        this.#checked(error.holder, resource, "acquire");
        throw error;
      }
      if (isTimeout(error)) {
        throw await this.#settleUnknown(request, error as StormlockError);
      }
      // A store may fail after taking the lease: its id is ours alone, so
      // releasing it once can only end this very lease.
      if (!(error instanceof UsageError)) await this.#releaseQuietly(request);
      throw error;
    }
  }

  async #releaseQuietly(request: AcquireRequest): Promise<void> {
    try {
      await this.#run(
        "release",
        request.resource,
        (op) => this.#store.end(request.resource, request.id, RELEASED, op),
      );
    } catch {
      // Not taken, or the store is down: nothing more to do.
    }
  }

  /**
   * An acquire whose answer was lost may have taken the lease: try once to
   * release it, so nobody is left holding a lease whose id nobody has.
   */
  async #settleUnknown(
    request: AcquireRequest,
    error: StormlockError,
  ): Promise<StormlockError> {
    try {
      await this.#run(
        "release",
        request.resource,
        (op) => this.#store.end(request.resource, request.id, RELEASED, op),
      );
      return new BackendUnavailableError(
        `${error.message}; the lease it may have taken was released`,
        { cause: error },
      );
    } catch {
      // "Not held" is not "never will be": the acquire may still be in
      // flight (a socket buffer, a gateway, a queue) and land later, so
      // the caller must hear the id either way.
      return new AcquireUnknownError(
        error.message,
        request.resource,
        request.id,
        { cause: error },
      );
    }
  }

  async release(resource: string, leaseId: string): Promise<void> {
    this.#name(resource);
    try {
      await this.#run(
        "release",
        resource,
        (op) => this.#store.end(resource, leaseId, RELEASED, op),
      );
    } catch (error) {
      throw await withTombstone(this, error, resource, leaseId);
    }
  }

  async renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    change: { reason?: string } = {},
  ): Promise<Lease> {
    this.#name(resource);
    try {
      const lease = await this.#run(
        "renew",
        resource,
        (op) => this.#store.renew(resource, leaseId, ttlSeconds, op, change),
      );
      return this.#checked(lease, resource, "renew");
    } catch (error) {
      throw await withTombstone(this, error, resource, leaseId);
    }
  }

  async current(resource: string): Promise<Lease | null> {
    this.#name(resource);
    const lease = await this.#run(
      "read",
      resource,
      (op) => this.#store.current(resource, op),
    );
    return lease === null ? null : this.#checked(lease, resource, "current");
  }

  async isHeld(resource: string, leaseId: string): Promise<boolean> {
    this.#name(resource);
    const held = await this.#run("read", resource, async (op) => {
      if (this.#store.isHeld) {
        return await this.#store.isHeld(resource, leaseId, op) === true;
      }
      const lease = await this.#store.current(resource, op);
      return lease !== null &&
        this.#checked(lease, resource, "current").id === leaseId;
    });
    if (held) return true;
    const broken = await tombstone(this, resource, leaseId);
    if (broken) throw new LeaseNotHeldError(resource, leaseId, broken);
    return false;
  }

  async list(
    prefix = "",
    options: { internal?: boolean } = {},
  ): Promise<Lease[]> {
    if (prefix !== "") this.#name(prefix, "prefix");
    requireCapability(this, "list");
    const leases: unknown = await this.#run(
      "list",
      undefined,
      (op) => this.#store.list!(prefix, op),
    );
    return checkedList(leases, prefix, options.internal === true, this.#who);
  }

  async history(resource: string, limit = 100): Promise<LeaseEvent[]> {
    this.#name(resource);
    requireCapability(this, "history");
    const events: unknown = await this.#run(
      "read history",
      resource,
      (op) => this.#store.history!(resource, limit, op),
    );
    return checkedArray(events, "history", this.#who).slice(0, limit).map((
      value,
    ) => checkedEvent(value, resource, this.#who));
  }

  async breakLease(
    resource: string,
    leaseId: string,
    by: Breaker,
  ): Promise<Lease> {
    this.#name(resource);
    try {
      const lease = await this.#run(
        "break",
        resource,
        (op) => this.#store.end(resource, leaseId, { kind: "broken", by }, op),
      );
      return this.#checked(lease, resource, "break");
    } catch (error) {
      throw await withTombstone(this, error, resource, leaseId);
    }
  }

  async expire(resource: string, leaseId: string): Promise<boolean> {
    if (!this.#store.expire) return false;
    const ended = await this.#run(
      "expire",
      resource,
      (op) => this.#store.expire!(resource, leaseId, op),
    );
    return ended === true;
  }

  async recentResources(
    prefix: string,
    since: Date,
  ): Promise<string[] | undefined> {
    if (!this.capabilities.history || !this.#store.recentResources) {
      return undefined;
    }
    const names: unknown = await this.#run(
      "read history",
      undefined,
      (op) => this.#store.recentResources!(prefix, since.getTime(), op),
    );
    return checkedArray(names, "recentResources", this.#who).filter((
      name,
    ): name is string => typeof name === "string" && name.startsWith(prefix));
  }

  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.#name(resource);
    requireCapability(this, "events");
    await this.#run(
      "watch",
      resource,
      (op) => this.#store.watch!(resource, onChange, signal, op),
    );
  }

  async init(): Promise<boolean> {
    if (this.capabilities.init) {
      await this.#run("init", undefined, (op) => this.#store.init!(op));
    } else {
      // Nothing to create, but "ready" must mean the store answers.
      await this.#run(
        "read",
        PROBE_RESOURCE,
        (op) => this.#store.current(PROBE_RESOURCE, op),
      );
    }
    if (typeof this.#store.checkSetup === "function") {
      const warnings = await this.#run(
        "check",
        undefined,
        (op) => this.#store.checkSetup!(op),
      );
      for (const warning of Array.isArray(warnings) ? warnings : []) {
        this.#warn?.(`${this.#label}: ${warning}`);
      }
    }
    return this.capabilities.init;
  }

  async close(): Promise<void> {
    if (this.#state.closed) return;
    this.#state.closed = true;
    try {
      await this.#store.close();
    } catch {
      // Closing is best effort: the work is done, connections will drop.
    }
  }
}
