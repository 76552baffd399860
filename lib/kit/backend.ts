/**
 * The backend kit: a backend gives its option schema, its capabilities,
 * how to open its store, the store's primitives, and a classifier for its
 * own client's failures. The frame around every operation is written here,
 * once: the closed check, one deadline and `AbortSignal` per operation,
 * permission advice, the timeout wording, the fallback message, checks on
 * what the store returns, and the tombstone of a broken lease.
 *
 * @module
 */
import {
  AcquireUnknownError,
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "./errors.ts";
import { type Bound, DeadlineError, MAX_TIMER_MS, within } from "./deadline.ts";
import { assertLeaseId, isLeaseId, newLeaseId } from "./lease.ts";
import {
  formatTimeout,
  optionError,
  type OptionSchema,
  type OptionSpec,
  originalNameNotes,
  parseOptions,
  type SettingsOf,
  unknownOptionWarnings,
} from "./options.ts";
import { deniedPermission, permissionAdvice } from "./permissions.ts";
import { resolveConfigPath } from "./paths.ts";
import { resourceNameProblem, shorten } from "./text.ts";
import { VERSION } from "./version.ts";
import type {
  AcquireDetails,
  Backend,
  BackendContext,
  BackendOptions,
  Breaker,
  Capabilities,
  Capability,
  Lease,
  LeaseEvent,
} from "./types.ts";

/**
 * What each primitive gets besides its arguments: a signal aborted when
 * the operation's deadline passes, and the deadline itself.
 *
 * @example
 * ```ts ignore
 * const reply = await fetch(url, { signal: op.signal });
 * ```
 */
export type Operation = Bound;

/**
 * A request for a new lease. The kit makes the id, so it is known even
 * when the store's answer is lost.
 *
 * @example
 * ```ts
 * import type { AcquireRequest } from "./backend.ts";
 * const request: AcquireRequest = {
 *   resource: "deploy", id: "0".repeat(32), principal: "ann@host", ttlSeconds: 60,
 * };
 * ```
 */
export interface AcquireRequest extends AcquireDetails {
  /** The resource to lock. */
  resource: string;
  /** The new lease's id. */
  id: string;
  /** Who takes it. */
  principal: string;
  /** Its TTL in whole seconds. */
  ttlSeconds: number;
}

/**
 * A backend's store, as its `open` returns it: the primitives only. Each
 * is atomic on the store and touches only the lease it names.
 *
 * @example A store that keeps leases in memory (one process only)
 * ```ts ignore
 * const store: Store = {
 *   label: "memory",
 *   acquire(request) { … },
 *   release(resource, id) { … },
 *   renew(resource, id, ttlSeconds) { … },
 *   current(resource) { … },
 *   close() {},
 * };
 * ```
 */
export interface Store {
  /** How messages name the store, e.g. `Redis at 127.0.0.1:6379`. */
  readonly label: string;
  /**
   * Takes the lock if it is free or its lease expired, as `request.id`.
   * @throws {LockHeldError} with the holder's lease when it is held.
   */
  acquire(request: AcquireRequest, op: Operation): Promise<Lease> | Lease;
  /**
   * Ends the live lease `leaseId`, recording `released`.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  release(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<void> | void;
  /**
   * Extends the live lease `leaseId`, keeping its fence; changes its
   * reason when `change.reason` is given.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> | Lease;
  /** The live lease, or `null`. */
  current(
    resource: string,
    op: Operation,
  ): Promise<Lease | null> | Lease | null;
  /** Optional: faster than `current` where the store can do better. */
  isHeld?(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> | boolean;
  /** With the `list` capability: live leases under `prefix`. */
  list?(prefix: string, op: Operation): Promise<Lease[]> | Lease[];
  /** With the `history` capability: events, newest first. */
  history?(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> | LeaseEvent[];
  /**
   * Compare-and-delete on `leaseId`, recorded with `by`.
   * @throws {LeaseNotHeldError} when `leaseId` is not the live lease.
   */
  breakLease?(
    resource: string,
    leaseId: string,
    by: Breaker,
    op: Operation,
  ): Promise<Lease> | Lease;
  /**
   * Optional: ends the lease `leaseId` only if its TTL has passed,
   * recording `expired` with the lease's expiry as its time, in one atomic
   * step. Returns whether it ended it; a renewed or vanished lease is left
   * alone and gives `false`.
   */
  expire?(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> | boolean;
  /**
   * Optional, with the `history` capability: the resources under `prefix`
   * with an event at or after `sinceMs` (epoch ms), in any order.
   */
  recentResources?(
    prefix: string,
    sinceMs: number,
    op: Operation,
  ): Promise<string[]> | string[];
  /**
   * With the `events` capability: subscribes to changes of the resource's
   * lock, calling `onChange` soon after it is released, broken or taken.
   * Resolves once the subscription is in place (within `op`'s deadline);
   * the subscription lasts until `signal` aborts. Expiry needs no event:
   * waiters also wake at the holder's expiry.
   */
  watch?(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void>;
  /** With the `init` capability: creates tables and the like. */
  init?(op: Operation): Promise<void> | void;
  /**
   * Optional, run by `init`: what is wrong with the server's own settings
   * for Stormlock (such as a Redis that evicts keys), one warning each.
   */
  checkSetup?(op: Operation): Promise<string[]> | string[];
  /** Closes connections; may be synchronous. */
  close(): void | Promise<void>;
}

/**
 * What a classifier makes of a client failure: a Stormlock error as it
 * is, `"timeout"` for the kit's one timeout wording, or text that the kit
 * puts after the store's label.
 *
 * @example
 * ```ts
 * import type { Classified } from "./backend.ts";
 * const refused: Classified = { unavailable: "refused the credentials; check the password" };
 * ```
 */
export type Classified =
  | StormlockError
  | "timeout"
  | { unavailable: string }
  | { config: string };

/**
 * What the classifier is told about the failed operation.
 * @example
 * ```ts
 * import type { FailedOperation } from "./backend.ts";
 * const failed: FailedOperation = { action: "acquire", resource: "deploy", label: "Redis at 127.0.0.1:6379" };
 * ```
 */
export interface FailedOperation {
  /** `open`, `acquire`, `release`, `renew`, `read`, `list`, … */
  action: string;
  /** The resource, when the operation has one. */
  resource?: string;
  /** The store's label (the backend's name before it opened). */
  label: string;
}

/**
 * What `open` gets besides the settings: where the options came from, and
 * tools so that a plugin needs no imports.
 *
 * @example
 * ```ts ignore
 * export const backend = {
 *   open(settings, context) {
 *     const file = context.resolvePath(settings.path);
 *     …
 *   },
 * };
 * ```
 */
export interface KitContext extends BackendContext {
  /** Stormlock's error classes, for a plugin to throw. */
  errors: {
    LockHeldError: typeof LockHeldError;
    LeaseNotHeldError: typeof LeaseNotHeldError;
    BackendUnavailableError: typeof BackendUnavailableError;
    ConfigError: typeof ConfigError;
    UsageError: typeof UsageError;
  };
  /** Makes a lease id (128 random bits). */
  newLeaseId(): string;
  /** Resolves a path against the config file's folder. */
  resolvePath(path: string): string;
  /** A config error naming the file, section and `key`. */
  optionError(key: string, why: string): ConfigError;
  /**
   * Checks a record read from the store and makes it a lease; a record
   * Stormlock did not write is rejected the same way on every backend.
   */
  leaseFromRecord(resource: string, record: LeaseRecord): Lease;
  /** Stormlock's version. */
  version: string;
}

/**
 * A lease as a store keeps it. Times may be `Date`s, epoch milliseconds
 * (as numbers or digit strings), or ISO 8601 text.
 *
 * @example
 * ```ts
 * import type { LeaseRecord } from "./backend.ts";
 * const record: LeaseRecord = { id: "0".repeat(32), principal: "ann@host", created: "1700000000000", expires: 1700000060000 };
 * ```
 */
export interface LeaseRecord {
  /** The lease id. */
  id: unknown;
  /** Who holds it. */
  principal: unknown;
  /** The holder's host. */
  host?: unknown;
  /** Why. */
  reason?: unknown;
  /** A link. */
  link?: unknown;
  /** The fencing token; absent on leases written by Stormlock 0.1. */
  fence?: unknown;
  /** When it was taken. */
  created: unknown;
  /** When it expires. */
  expires: unknown;
}

/**
 * Settings every backend with the `history` capability also gets.
 * @example
 * ```ts
 * import type { HistorySettings } from "./backend.ts";
 * const settings: HistorySettings = { history: 1000, history_age: 30 * 86400 };
 * ```
 */
export interface HistorySettings {
  /** Events kept per resource. */
  history: number;
  /** Seconds an event is kept. */
  history_age: number;
}

/**
 * A backend, declared once: its options, capabilities, how to open its
 * store, and how to read its client's failures.
 *
 * @example
 * ```ts ignore
 * export const backend = defineBackend({
 *   name: "memory",
 *   options: { timeout: { kind: "duration", default: "1s", doc: "Bound on each operation" } },
 *   capabilities: { clock: "host" },
 *   open: (settings, context) => new MemoryStore(settings.timeout),
 * });
 * ```
 */
export interface BackendDefinition<
  O extends Record<string, OptionSpec> = Record<string, OptionSpec>,
> {
  /** The backend's kind, for messages: `redis`, `json-file`. */
  name: string;
  /**
   * Its `[backend.NAME]` options. A `timeout` duration bounds every
   * operation.
   */
  options: O;
  /** Pairs of options that must both be set, or neither. */
  together?: readonly (readonly [string, string])[];
  /** What it supports; unnamed capabilities are off. */
  capabilities: Partial<Capabilities> & Pick<Capabilities, "clock">;
  /** How messages name the store before it opens, from its settings. */
  label?(settings: SettingsOf<O> & HistorySettings): string;
  /** Opens the store; it may connect lazily. */
  open(
    settings: SettingsOf<O> & HistorySettings,
    context: KitContext,
  ): Store | Promise<Store>;
  /** Reads the client's own failures; the kit handles the rest. */
  classify?(error: unknown, failed: FailedOperation): Classified | undefined;
}

/**
 * A defined backend: its declaration, the option names, and the factory
 * that builds a framed {@linkcode Backend}.
 *
 * @example
 * ```ts ignore
 * const backend = await definition.createBackend({ path: "/tmp/x" }, context);
 * ```
 */
export interface DefinedBackend extends BackendDefinition {
  /** Every option name the backend reads. */
  readonly optionNames: readonly string[];
  /** The schema the options are parsed by. */
  readonly schema: OptionSchema;
  /** Parses the options, opens the store, and frames it. */
  createBackend(
    options: BackendOptions,
    context: BackendContext,
    how?: CreateOptions,
  ): Promise<Backend>;
}

/**
 * How {@linkcode DefinedBackend.createBackend} reports and names things.
 * @example
 * ```ts
 * import type { CreateOptions } from "./backend.ts";
 * const how: CreateOptions = { plugin: "module ./mine.js", warn: console.warn };
 * ```
 */
export interface CreateOptions {
  /** Set for a plugin: how messages name it, e.g. `module ./mine.js`. */
  plugin?: string;
  /** Receives warnings such as unknown keys. */
  warn?: (message: string) => void;
}

/** The history options the kit adds for every backend that keeps history. */
const HISTORY_OPTIONS: Record<string, OptionSpec> = {
  history: {
    kind: "integer",
    min: 1,
    max: 100_000,
    default: 1000,
    doc: "Events kept per resource.",
  },
  history_age: {
    kind: "ttl",
    default: "30d",
    doc: "How long an event is kept.",
  },
};

const EVENT_KINDS: readonly string[] = [
  "acquired",
  "renewed",
  "released",
  "reason-changed",
  "expired",
  "broken",
];

const CAPABILITY_NAMES: readonly Capability[] = [
  "init",
  "list",
  "history",
  "fencing",
  "events",
  "queue",
  "authenticated",
];

/**
 * The character that marks Stormlock's own bookkeeping resources (a lock's
 * waiting queue): names containing it are reserved, and `list` skips them.
 * @example
 * ```ts
 * import { INTERNAL_MARK } from "./backend.ts";
 * console.log(JSON.stringify(INTERNAL_MARK)); // "\u001f"
 * ```
 */
export const INTERNAL_MARK = "\u001f";

/**
 * What separates a lock's name from a waiter's ticket in the name of the
 * waiter's registration (`deploy\u001fwait\u001f0000000000000042`), so a
 * store can keep a lock's waiters where its acquire can see them.
 * @example
 * ```ts
 * import { WAIT_MARK } from "./backend.ts";
 * console.log(JSON.stringify(WAIT_MARK)); // "\u001fwait\u001f"
 * ```
 */
export const WAIT_MARK = `${INTERNAL_MARK}wait${INTERNAL_MARK}`;

/**
 * Whether `resource` is one of the waiting queue's own names (a waiter's
 * registration or a ticket counter), which `list` leaves out. Any other
 * name is a lock, and is listed even if an older version let it in with
 * a reserved character.
 * @example
 * ```ts
 * import { isBookkeeping } from "./backend.ts";
 * isBookkeeping("deploy\u001fwait\u001f0000000000000001"); // true
 * isBookkeeping("deploy\u001fqueue"); // true
 * isBookkeeping("deploy\u001fx"); // false
 * ```
 */
export function isBookkeeping(resource: string): boolean {
  // Hand-over requests and the hook dispatcher's lease too (notifications).
  // deno-lint-ignore no-control-regex
  return /\u001f(?:wait\u001f\d{16}|queue|request\u001f[0-9a-f]{32}|dispatcher)$/
    .test(resource) || resource.startsWith("\u001ffreeze\u001f");
}

/** The longest a plugin without a `timeout` option may take per call. */
const PLUGIN_DEFAULT_TIMEOUT_MS = 30_000;

/** A resource used to check that a store answers. */
const PROBE_RESOURCE = "stormlock-probe";

/** A record a store read was not written by Stormlock. */
class ForeignRecordError extends Error {
  constructor(readonly resource: string, readonly field: string) {
    super(`not a Stormlock lease (bad ${field})`);
  }
}

/** Epoch ms from a record's time field, or `undefined`. */
function toTime(value: unknown): Date | undefined {
  let time: Date | undefined;
  if (value instanceof Date) time = value;
  else if (typeof value === "number") time = new Date(value);
  else if (typeof value === "bigint") time = new Date(Number(value));
  else if (typeof value === "string" && /^\d{1,16}$/.test(value)) {
    time = new Date(Number(value));
  } else if (typeof value === "string" && /^\d{4}-\d\d-\d\dT/.test(value)) {
    time = new Date(value);
  }
  return time && !Number.isNaN(time.getTime()) ? time : undefined;
}

/** An optional text field: absent stays absent; non-text is foreign. */
function optionalText(
  value: unknown,
  resource: string,
  field: string,
): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new ForeignRecordError(resource, field);
  return value;
}

/**
 * Makes a lease of a record a store read, checking every field the same
 * way on every backend.
 *
 * @throws {Error} a kit-internal error the frame turns into a
 * {@linkcode ConfigError} naming the store and section.
 * @example
 * ```ts
 * import { leaseFromRecord } from "./backend.ts";
 * const lease = leaseFromRecord("deploy", {
 *   id: "0".repeat(32), principal: "ann@host", created: 1, expires: "2",
 * });
 * console.log(lease.fence); // 0
 * ```
 */
export function leaseFromRecord(resource: string, record: LeaseRecord): Lease {
  if (typeof record !== "object" || record === null) {
    throw new ForeignRecordError(resource, "record");
  }
  const { id, principal } = record;
  if (typeof id !== "string" || !isLeaseId(id)) {
    throw new ForeignRecordError(resource, "id");
  }
  if (typeof principal !== "string") {
    throw new ForeignRecordError(resource, "principal");
  }
  const created = toTime(record.created);
  if (!created) throw new ForeignRecordError(resource, "created");
  const expires = toTime(record.expires);
  if (!expires) throw new ForeignRecordError(resource, "expires");
  let fence = 0;
  if (record.fence !== undefined && record.fence !== null) {
    fence = typeof record.fence === "string" && /^\d{1,16}$/.test(record.fence)
      ? Number(record.fence)
      : typeof record.fence === "bigint"
      ? Number(record.fence)
      : record.fence as number;
    if (!Number.isSafeInteger(fence) || fence < 0) {
      throw new ForeignRecordError(resource, "fence");
    }
  }
  const lease: Lease = { resource, id, principal, fence, created, expires };
  const host = optionalText(record.host, resource, "host");
  const reason = optionalText(record.reason, resource, "reason");
  const link = optionalText(record.link, resource, "link");
  if (host !== undefined) lease.host = host;
  if (reason !== undefined) lease.reason = reason;
  if (link !== undefined) lease.link = link;
  return lease;
}

/** Checks a value a store returned as a lease of `resource`. */
function checkLease(value: unknown, resource: string): Lease {
  const lease = leaseFromRecord(resource, value as LeaseRecord);
  if ((value as Lease).resource !== resource) {
    throw new ForeignRecordError(resource, "resource");
  }
  return lease;
}

/**
 * Declares a backend. The result is what a backend module exports as
 * `backend`; the registry opens it.
 *
 * @param definition The backend's options, capabilities, store and
 * classifier.
 * @returns The definition with its option names and factory.
 *
 * @example A complete (single-process) backend
 * ```ts
 * import { defineBackend } from "./backend.ts";
 * const leases = new Map();
 * export const backend = defineBackend({
 *   name: "memory",
 *   options: {},
 *   capabilities: { clock: "host" },
 *   open: (_settings, context) => ({
 *     label: "memory store",
 *     acquire(request) {
 *       const held = leases.get(request.resource);
 *       if (held && held.expires > new Date()) {
 *         return Promise.reject(new context.errors.LockHeldError(held));
 *       }
 *       const now = new Date();
 *       const lease = { ...request, fence: 0, created: now, expires: new Date(now.getTime() + request.ttlSeconds * 1000) };
 *       leases.set(request.resource, lease);
 *       return Promise.resolve(lease);
 *     },
 *     release: (resource) => Promise.resolve(void leases.delete(resource)),
 *     renew: (resource) => Promise.resolve(leases.get(resource)),
 *     current: (resource) => Promise.resolve(leases.get(resource) ?? null),
 *     close() {},
 *   }),
 * });
 * console.log(backend.optionNames); // []
 * ```
 */
export function defineBackend<O extends Record<string, OptionSpec>>(
  definition: BackendDefinition<O>,
): DefinedBackend {
  const base = definition as unknown as BackendDefinition;
  const capabilities = fullCapabilities(base.capabilities);
  const schema: OptionSchema = {
    options: {
      ...base.options,
      ...(capabilities.history ? HISTORY_OPTIONS : {}),
    },
    together: base.together,
  };
  return {
    ...base,
    capabilities,
    schema,
    optionNames: Object.keys(schema.options),
    createBackend: (options, context, how = {}) =>
      createFramed(base, schema, capabilities, options, context, how),
  };
}

function fullCapabilities(
  declared: BackendDefinition["capabilities"] | undefined,
): Capabilities {
  const full: Capabilities = {
    clock: declared?.clock === "server" ? "server" : "host",
    init: false,
    list: false,
    history: false,
    fencing: false,
    events: false,
    queue: false,
  };
  for (const name of CAPABILITY_NAMES) full[name] = declared?.[name] === true;
  return full;
}

/**
 * The tools `open` gets, for a backend named by `context`.
 * @example
 * ```ts
 * import { kitContext } from "./backend.ts";
 * const context = kitContext({ name: "mine", section: "backend.mine", configDir: "/etc" });
 * console.log(context.resolvePath("x.json")); // "/etc/x.json"
 * ```
 */
export function kitContext(context: BackendContext): KitContext {
  return {
    ...context,
    errors: {
      LockHeldError,
      LeaseNotHeldError,
      BackendUnavailableError,
      ConfigError,
      UsageError,
    },
    newLeaseId,
    resolvePath: (path: string) => resolveConfigPath(path, context),
    optionError: (key: string, why: string) => optionError(context, key, why),
    leaseFromRecord,
    version: VERSION,
  };
}

const STORE_METHODS = ["acquire", "release", "renew", "current"] as const;

/** Describes a value for a message about what a plugin returned. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return "a string";
  if (typeof value === "object") return "an object";
  return String(typeof value === "undefined" ? "nothing" : typeof value);
}

async function createFramed(
  definition: BackendDefinition,
  schema: OptionSchema,
  capabilities: Capabilities,
  options: BackendOptions,
  context: BackendContext,
  how: CreateOptions,
): Promise<Backend> {
  for (const warning of unknownOptionWarnings(schema, options, context)) {
    how.warn?.(warning);
  }
  for (const note of originalNameNotes(schema, options, context)) {
    how.warn?.(note);
  }
  const settings = parseOptions(schema, options, context);
  const who = how.plugin
    ? `Backend "${context.name}" (${how.plugin})`
    : definition.label?.(
      settings as SettingsOf<Record<string, OptionSpec>> & HistorySettings,
    ) ?? "";
  let store: Store;
  try {
    store = await definition.open(
      settings as SettingsOf<Record<string, OptionSpec>> & HistorySettings,
      kitContext(context),
    );
  } catch (error) {
    throw translate(error, {
      definition,
      context,
      failed: { action: "open", label: who || definition.name },
      timeoutMs: 0,
      plugin: how.plugin,
    });
  }
  const missing = typeof store === "object" && store !== null
    ? STORE_METHODS.filter((method) =>
      typeof (store as unknown as Record<string, unknown>)[method] !==
        "function"
    )
    : undefined;
  if (!missing || missing.length > 0) {
    throw new ConfigError(
      `${
        who || `Backend "${context.name}"`
      } did not open a store: open returned ${describe(store)}${
        missing ? `, which lacks ${missing.join(", ")}` : ""
      }; fix the backend`,
    );
  }
  const timeoutMs = typeof settings.timeout === "number"
    ? settings.timeout
    : PLUGIN_DEFAULT_TIMEOUT_MS;
  return new FramedBackend(definition, store, capabilities, context, {
    timeoutMs,
    plugin: how.plugin,
    warn: how.warn,
  });
}

interface TranslateInput {
  definition: BackendDefinition;
  context: BackendContext;
  failed: FailedOperation;
  timeoutMs: number;
  plugin?: string;
}

function timeoutError(label: string, ms: number, cause: unknown) {
  return new BackendUnavailableError(
    `${label} did not answer within ${
      formatTimeout(ms)
    } (timeout); check that it is up and reachable`,
    { cause },
  );
}

/** The one place a failure becomes a Stormlock error. */
function translate(error: unknown, input: TranslateInput): StormlockError {
  const { failed, context, plugin } = input;
  if (error instanceof ForeignRecordError) {
    return new ConfigError(
      `${failed.label}: the record for "${error.resource}" was not written by Stormlock (${error.message}); point [${context.section}] at a prefix or table of its own`,
      { cause: error },
    );
  }
  if (error instanceof StormlockError) return error;
  const denied = deniedPermission(error);
  if (denied) {
    return new ConfigError(
      `No permission for ${failed.label}: Deno needs ${denied.need}; ${
        permissionAdvice(denied.flag)
      }`,
      { cause: error },
    );
  }
  if (error instanceof DeadlineError) {
    return timeoutError(failed.label, input.timeoutMs || error.ms, error);
  }
  let classified: Classified | undefined;
  try {
    classified = input.definition.classify?.(error, failed);
  } catch {
    classified = undefined;
  }
  if (classified === "timeout") {
    return timeoutError(failed.label, input.timeoutMs, error);
  }
  if (classified instanceof StormlockError) return classified;
  if (classified && "unavailable" in classified) {
    return new BackendUnavailableError(
      `${failed.label} ${classified.unavailable}`,
      { cause: error },
    );
  }
  if (classified && "config" in classified) {
    return new ConfigError(`${failed.label} ${classified.config}`, {
      cause: error,
    });
  }
  const message = error instanceof Error
    ? error.message
    : typeof error === "string"
    ? error
    : `threw ${describe(error)}`;
  const text = message.replace(/\.$/, "") || "no message";
  if (plugin) {
    const make = failed.action === "open"
      ? ConfigError
      : BackendUnavailableError;
    return new make(
      `Backend "${context.name}" (${plugin}) failed in ${failed.action}: ${text}; fix the plugin or its options`,
      { cause: error },
    );
  }
  return new BackendUnavailableError(
    `${failed.label} failed to ${failed.action}: ${text}; check that it is up and reachable`,
    { cause: error },
  );
}

/**
 * How a view of a framed backend differs from the backend: whether it may
 * use Stormlock's reserved names, and a deadline every operation also
 * keeps.
 */
interface FrameView {
  /** The waiting queue's own names are allowed. */
  bookkeeping?: boolean;
  /** Epoch ms after which each operation gets only the minimum time. */
  deadline?: number;
}

/** How views are made: reachable only from inside Stormlock. */
const VIEW = Symbol("stormlock.frameView");

/**
 * The shortest bound an operation gets under a deadline, so one that
 * starts just before it can still finish (and a lost acquire be settled).
 */
export const MIN_ATTEMPT_MS = 500;

/**
 * The same backend, allowed to use names with Stormlock's reserved
 * characters: for the waiting queue, which keeps its registrations under
 * them. Users' names never get this; other backends are returned as they
 * are.
 * @example
 * ```ts ignore
 * const queue = bookkeeping(backend);
 * ```
 */
export function bookkeeping(backend: Backend): Backend {
  return viewOf(backend, { bookkeeping: true });
}

/**
 * The same backend, with every operation also bounded by the time left
 * until `deadline` (epoch ms), though never below
 * {@linkcode MIN_ATTEMPT_MS}: a wait's retries then end near its deadline
 * however slow the store is.
 * @example
 * ```ts ignore
 * const bounded = boundedBy(backend, Date.now() + 15_000);
 * ```
 */
export function boundedBy(backend: Backend, deadline: number): Backend {
  return viewOf(backend, { deadline });
}

function viewOf(backend: Backend, view: FrameView): Backend {
  const make = (backend as { [VIEW]?: (view: FrameView) => Backend })[VIEW];
  return typeof make === "function" ? make.call(backend, view) : backend;
}

/**
 * The time one operation gets: the backend's timeout, or less when a
 * deadline is nearer, but at least {@linkcode MIN_ATTEMPT_MS}.
 * @example
 * ```ts
 * import { attemptMs } from "./backend.ts";
 * attemptMs(3000, 1000, 0); // 1000
 * ```
 */
export function attemptMs(
  timeoutMs: number,
  deadline: number | undefined,
  now: number,
): number {
  if (deadline === undefined) return timeoutMs;
  return Math.min(timeoutMs, Math.max(deadline - now, MIN_ATTEMPT_MS));
}

/**
 * How many operations one backend instance has on its store at once. A
 * burst beyond it waits its turn here, first come first, instead of
 * piling onto a store that then answers nobody in time.
 */
export const MAX_IN_FLIGHT = 16;

/** At most `size` holders at once; the others wait, first come first. */
class Turns {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(size: number) {
    this.#free = size;
  }

  /** A turn at once, as its release, or `undefined` if none is free. */
  tryTake(): (() => void) | undefined {
    if (this.#free === 0) return undefined;
    this.#free--;
    return this.#releaser();
  }

  /** A turn within `ms`, as its release, or `undefined` if none came. */
  take(ms: number): Promise<(() => void) | undefined> {
    return new Promise((resolve) => {
      const turn = () => {
        clearTimeout(timer);
        resolve(this.#releaser());
      };
      const timer = setTimeout(() => {
        const at = this.#waiting.indexOf(turn);
        if (at !== -1) this.#waiting.splice(at, 1);
        resolve(undefined);
      }, Math.min(Math.max(ms, 0), MAX_TIMER_MS));
      this.#waiting.push(turn);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    };
  }
}

/** The frame around a store: what every backend's operations share. */
class FramedBackend implements Backend {
  readonly name: string;
  readonly capabilities: Capabilities;
  readonly #definition: BackendDefinition;
  readonly #store: Store;
  readonly #context: BackendContext;
  readonly #timeoutMs: number;
  readonly #plugin?: string;
  readonly #warn?: (message: string) => void;
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
      return await within(storeMs, body);
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

  #checked(value: unknown, resource: string, action: string): Lease {
    // Built-in stores make every lease with context.leaseFromRecord.
    if (!this.#plugin && (value as Lease)?.resource === resource) {
      return value as Lease;
    }
    try {
      return checkLease(value, resource);
    } catch (error) {
      if (!this.#plugin) throw this.#fail(error, action, resource);
      throw new BackendUnavailableError(
        `Backend "${this.name}" (${this.#plugin}) returned ${
          describe(value)
        } from ${action}, not a lease of "${resource}"; fix the plugin`,
      );
    }
  }

  /** `value` as an array, or a clear error naming the store. */
  #array(value: unknown, action: string): unknown[] {
    if (Array.isArray(value)) return value;
    throw new BackendUnavailableError(
      `${this.#label} returned ${describe(value)} from ${action}, not a list${
        this.#plugin ? "; fix the plugin" : ""
      }`,
    );
  }

  /** The break event for `leaseId`, if history has one. */
  async #tombstone(
    resource: string,
    leaseId: string,
  ): Promise<LeaseEvent | undefined> {
    if (!this.capabilities.history) return undefined;
    try {
      const events = await this.history(resource, 200);
      return events.find((event) =>
        event.kind === "broken" && event.id === leaseId
      );
    } catch {
      return undefined;
    }
  }

  async #notHeld(error: unknown, resource: string, leaseId: string) {
    if (!(error instanceof LeaseNotHeldError) || error.broken) return error;
    const broken = await this.#tombstone(resource, leaseId);
    return broken ? new LeaseNotHeldError(resource, leaseId, broken) : error;
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
        (op) => this.#store.release(request.resource, request.id, op),
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
        (op) => this.#store.release(request.resource, request.id, op),
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
        (op) => this.#store.release(resource, leaseId, op),
      );
    } catch (error) {
      throw await this.#notHeld(error, resource, leaseId);
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
      throw await this.#notHeld(error, resource, leaseId);
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
    const broken = await this.#tombstone(resource, leaseId);
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
    const now = Date.now();
    return this.#array(leases, "list")
      .map((lease) => {
        const resource = (lease as Lease)?.resource;
        return this.#checked(
          lease,
          typeof resource === "string" ? resource : "",
          "list",
        );
      })
      .filter((lease) =>
        lease.resource.startsWith(prefix) && lease.expires.getTime() > now &&
        (options.internal || prefix.includes(INTERNAL_MARK) ||
          !isBookkeeping(lease.resource))
      )
      .sort((a, b) =>
        a.resource < b.resource ? -1 : a.resource > b.resource ? 1 : 0
      );
  }

  async history(resource: string, limit = 100): Promise<LeaseEvent[]> {
    this.#name(resource);
    requireCapability(this, "history");
    const events: unknown = await this.#run(
      "read history",
      resource,
      (op) => this.#store.history!(resource, limit, op),
    );
    return this.#array(events, "history").slice(0, limit).map((value) => {
      const event = value as LeaseEvent;
      const at = toTime(event?.at);
      if (!EVENT_KINDS.includes(event?.kind) || !at) {
        throw this.#fail(
          new ForeignRecordError(resource, "event"),
          "read history",
          resource,
        );
      }
      const checked: LeaseEvent = {
        ...this.#checked(event, resource, "history"),
        kind: event.kind,
        at,
      };
      if (event.by) checked.by = event.by;
      return checked;
    });
  }

  async breakLease(
    resource: string,
    leaseId: string,
    by: Breaker,
  ): Promise<Lease> {
    this.#name(resource);
    if (!this.#store.breakLease) {
      // Without a recorded break, a compare-and-delete is still safe.
      const holder = await this.current(resource);
      if (holder?.id !== leaseId) {
        throw new LeaseNotHeldError(resource, leaseId);
      }
      await this.release(resource, leaseId);
      return holder;
    }
    try {
      const lease = await this.#run(
        "break",
        resource,
        (op) => this.#store.breakLease!(resource, leaseId, by, op),
      );
      return this.#checked(lease, resource, "break");
    } catch (error) {
      throw await this.#notHeld(error, resource, leaseId);
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
    return this.#array(names, "recentResources").filter((
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

function isTimeout(error: unknown): boolean {
  return error instanceof BackendUnavailableError &&
      error.cause instanceof DeadlineError ||
    error instanceof BackendUnavailableError &&
      /\(timeout\)/.test(error.message);
}

/**
 * Fails with a clear config error when the backend lacks a capability.
 *
 * @throws {ConfigError} naming the backend and the capability.
 * @example
 * ```ts ignore
 * requireCapability(backend, "events");
 * ```
 */
export function requireCapability(
  backend: Backend,
  capability: Capability,
): void {
  if (!backend.capabilities[capability]) {
    throw new ConfigError(
      `Backend "${backend.name}" does not support ${capability}; use a backend that does (see "Capabilities" in docs/writing-a-backend.md)`,
    );
  }
}

/**
 * A raw backend object, as plugins written for Stormlock 0.1 return from
 * `createBackend`: the five operations (and `init`) with positional
 * arguments. The kit frames it like any store.
 *
 * @example
 * ```ts ignore
 * export function createBackend(options, context) {
 *   return { acquire, release, renew, current, isHeld, close };
 * }
 * ```
 */
export interface LegacyBackend {
  /** Takes the lock; throws `LockHeldError` when it is held. */
  acquire(resource: string, principal: string, ttlSeconds: number): unknown;
  /** Ends the lease; throws `LeaseNotHeldError` when it is not current. */
  release(resource: string, leaseId: string): unknown;
  /** Extends the lease; throws `LeaseNotHeldError` when it is not current. */
  renew(resource: string, leaseId: string, ttlSeconds: number): unknown;
  /** The live lease, or `null`. */
  current(resource: string): unknown;
  /** Whether `leaseId` is the live lease. */
  isHeld?(resource: string, leaseId: string): unknown;
  /** Creates what the store needs. */
  init?(): unknown;
  /** Closes connections. */
  close?(): unknown;
}

/**
 * What a backend module exports: `backend`, a definition for the kit (the
 * current way), or `createBackend` returning a {@linkcode LegacyBackend}
 * with optional `optionNames` (Stormlock 0.1 plugins).
 *
 * @example
 * ```ts ignore
 * export const backend = { name: "mine", options: {}, capabilities: { clock: "host" }, open };
 * ```
 */
export interface BackendModule {
  /** The backend's definition. */
  backend?: BackendDefinition | DefinedBackend;
  /** A Stormlock 0.1 factory. */
  createBackend?(
    options: BackendOptions,
    context: KitContext,
  ): LegacyBackend | Promise<LegacyBackend>;
  /** The option names a Stormlock 0.1 factory reads. */
  optionNames?: readonly string[];
}

/**
 * The definition behind a backend module, framing a Stormlock 0.1 factory
 * like any other store.
 *
 * @param module The imported module.
 * @param name Names it in messages.
 * @example
 * ```ts ignore
 * const definition = definitionOf(await import("./mine.js"), "mine");
 * ```
 */
export function definitionOf(
  module: BackendModule,
  name: string,
): DefinedBackend {
  const given = module.backend;
  if (given) {
    return "createBackend" in given && "schema" in given
      ? given as DefinedBackend
      : defineBackend(given as BackendDefinition);
  }
  const factory = module.createBackend!;
  // Leases from 0.1 plugins carry no fence.
  const withFence = (value: unknown) =>
    typeof value === "object" && value !== null && !("fence" in value)
      ? { fence: 0, ...value }
      : value;
  const names = module.optionNames;
  let raw: BackendOptions = {};
  const defined = defineBackend({
    name,
    options: Object.fromEntries(
      (names ?? []).map((key) => [key, { kind: "text", doc: "" } as const]),
    ),
    capabilities: { clock: "host", init: true },
    async open(_settings, context) {
      const legacy = await factory(raw, context);
      if (
        typeof legacy !== "object" || legacy === null ||
        STORE_METHODS.some((method) => typeof legacy[method] !== "function")
      ) {
        // The frame's check names what it lacks.
        return legacy as unknown as Store;
      }
      const call = (method: keyof LegacyBackend, ...args: unknown[]) =>
        Promise.resolve().then(() =>
          (legacy[method] as (...args: unknown[]) => unknown)
            .apply(legacy, args)
        );
      const store: Store = {
        label: "",
        acquire: (request) =>
          call(
            "acquire",
            request.resource,
            request.principal,
            request.ttlSeconds,
          )
            .then(withFence) as Promise<Lease>,
        release: (resource, id) => call("release", resource, id).then(() => {}),
        renew: (resource, id, ttlSeconds) =>
          call("renew", resource, id, ttlSeconds).then(withFence) as Promise<
            Lease
          >,
        current: (resource) =>
          call("current", resource).then(withFence) as Promise<Lease | null>,
        close: () => legacy.close ? call("close").then(() => {}) : undefined,
      };
      if (typeof legacy.isHeld === "function") {
        store.isHeld = (resource, id) =>
          call("isHeld", resource, id) as Promise<boolean>;
      }
      if (typeof legacy.init === "function") {
        store.init = () => call("init").then(() => {});
      }
      return store;
    },
  });
  return {
    ...defined,
    createBackend(options, context, how = {}) {
      raw = options;
      // Without optionNames, any key may be the plugin's own.
      const warn = names ? how.warn : undefined;
      return defined.createBackend(options, context, { ...how, warn });
    },
  };
}
