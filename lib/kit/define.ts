/**
 * `defineBackend`: declares a backend, adds the options every backend
 * with history gets, and builds the framed backend from its settings.
 *
 * @module
 */
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  UsageError,
} from "./errors.ts";
import { newLeaseId } from "./lease.ts";
import {
  optionError,
  type OptionSchema,
  type OptionSpec,
  originalNameNotes,
  parseOptions,
  type SettingsOf,
  unknownOptionWarnings,
} from "./options.ts";
import { resolveConfigPath } from "./paths.ts";
import { VERSION } from "./version.ts";
import { leaseFromRecord } from "./record.ts";
import { describe, translate } from "./failure.ts";
import { FramedBackend } from "./frame.ts";
import type {
  BackendDefinition,
  CreateOptions,
  DefinedBackend,
  HistorySettings,
  KitContext,
  Store,
} from "./contract.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Capabilities,
  Capability,
} from "./types.ts";

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

const CAPABILITY_NAMES: readonly Capability[] = [
  "init",
  "list",
  "history",
  "fencing",
  "events",
  "queue",
  "authenticated",
];

/** The longest a plugin without a `timeout` option may take per call. */
const PLUGIN_DEFAULT_TIMEOUT_MS = 30_000;

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
 * import { defineBackend } from "./define.ts";
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
 *     end: (resource) => Promise.resolve(void leases.delete(resource)),
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
 * import { kitContext } from "./define.ts";
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

/** The primitives every store must have. */
export const STORE_METHODS = [
  "acquire",
  "end",
  "renew",
  "current",
] as const;

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
  const createMissing = capabilities.init &&
    definition.createMissing?.(
        settings as SettingsOf<Record<string, OptionSpec>> & HistorySettings,
      ) === true;
  return new FramedBackend(definition, store, capabilities, context, {
    timeoutMs,
    createMissing,
    plugin: how.plugin,
    warn: how.warn,
  });
}
