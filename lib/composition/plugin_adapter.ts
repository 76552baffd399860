/**
 * The plugin adapter, beside the plugin loader: what a backend module
 * exports, and the definition behind it. A module's `backend` declaration
 * is used as it is; a Stormlock 0.1 plugin's `createBackend` factory is
 * adapted to a store here, so the kit knows nothing of 0.1.
 *
 * @module
 */
import { defineBackend } from "../kit/define.ts";
import { describe } from "../kit/failure.ts";
import { ConfigError, LeaseNotHeldError } from "../kit/errors.ts";
import type {
  BackendDefinition,
  DefinedBackend,
  KitContext,
  Store,
} from "../kit/contract.ts";
import type { BackendOptions, Lease } from "../kit/types.ts";

/** What a Stormlock 0.1 backend must have. */
const LEGACY_METHODS = ["acquire", "release", "renew", "current"] as const;

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
  let plugin: string | undefined;
  const defined = defineBackend({
    name,
    options: Object.fromEntries(
      (names ?? []).map((key) => [key, { kind: "text", doc: "" } as const]),
    ),
    capabilities: { clock: "host", init: true },
    async open(_settings, context) {
      const legacy = await factory(raw, context);
      const missing = typeof legacy === "object" && legacy !== null
        ? LEGACY_METHODS.filter((method) =>
          typeof legacy[method] !== "function"
        )
        : undefined;
      if (!missing || missing.length > 0) {
        throw new ConfigError(
          `Backend "${context.name}"${
            plugin ? ` (${plugin})` : ""
          } did not open a store: createBackend returned ${describe(legacy)}${
            missing ? `, which lacks ${missing.join(", ")}` : ""
          }; fix the backend`,
        );
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
        async end(resource, id, ending) {
          if (ending.kind === "released") {
            await call("release", resource, id);
            return;
          }
          // 0.1 records no breaks: compare, then the compare-and-delete.
          const holder = withFence(await call("current", resource)) as
            | Lease
            | null;
          if (holder?.id !== id) throw new LeaseNotHeldError(resource, id);
          await call("release", resource, id);
          return holder;
        },
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
      plugin = how.plugin;
      // Without optionNames, any key may be the plugin's own.
      const warn = names ? how.warn : undefined;
      return defined.createBackend(options, context, { ...how, warn });
    },
  };
}
