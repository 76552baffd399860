/**
 * Stormlock: a centralized, lease-based lock for operators and scripts.
 *
 * A lease on a resource is acquired with a TTL and released with its id;
 * a forgotten lease expires. Locks live in a backend: an embedded SQLite
 * file by default, or a shared server.
 *
 * @example Hold a lock while doing risky work
 * ```ts ignore
 * import { openLock } from "@stormlock/stormlock";
 *
 * await using lock = await openLock("deploy-prod");
 * const lease = await lock.acquire("30m");
 * try {
 *   // … the risky work …
 * } finally {
 *   await lock.release(lease.id);
 * }
 * ```
 *
 * @module
 */
export type {
  AcquireDetails,
  Backend,
  BackendContext,
  BackendOptions,
  Breaker,
  Capabilities,
  Capability,
  Lease,
  LeaseDetails,
  LeaseEvent,
  LeaseEventKind,
} from "./lib/kit/types.ts";
export type {
  BackendModule,
  LegacyBackend,
} from "./lib/composition/plugin_adapter.ts";
export {
  AcquireUnknownError,
  BackendUnavailableError,
  ConfigError,
  ForbiddenError,
  LeaseLostError,
  LeaseNotHeldError,
  LimitMismatchError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "./lib/kit/errors.ts";
export type { LossKind, StormlockErrorCode } from "./lib/kit/errors.ts";
export {
  formatTtl,
  MAX_TTL_SECONDS,
  parseDurationMs,
  parseTimeoutMs,
  parseTtl,
} from "./lib/kit/duration.ts";
export {
  DEFAULT_BACKEND,
  DEFAULT_TTL_SECONDS,
  defaultPrincipal,
  findConfigFile,
  loadConfig,
  parseConfig,
  resolveLockSettings,
} from "./lib/composition/config.ts";
export type { IniSections } from "./lib/composition/ini.ts";
export type {
  Config,
  ConfigOrigin,
  ConfigSource,
  EnvReader,
  LockSettings,
} from "./lib/composition/config.ts";
export { isLeaseId, newLeaseId } from "./lib/kit/lease.ts";
export {
  builtinBackendNames,
  openBackend,
} from "./lib/composition/registry.ts";
export { Lock } from "./lib/composition/lock.ts";
export type {
  AcquireOptions,
  HoldOptions,
  Ttl,
} from "./lib/composition/lock.ts";
export type { WaitListeners, WaitState } from "./lib/composition/queue.ts";
export {
  openLock,
  openStormlock,
  Stormlock,
} from "./lib/composition/stormlock.ts";
export type {
  ListedLease,
  ListOptions,
  OpenLockOptions,
} from "./lib/composition/stormlock.ts";
export { holdLease } from "./lib/composition/hold.ts";
export type {
  HeldLock,
  HoldCallback,
  HoldLeaseOptions,
  KeepOptions,
} from "./lib/composition/hold.ts";
export { LockSet, openLockSet } from "./lib/composition/lockset.ts";
export type { SetLease } from "./lib/composition/lockset.ts";
export {
  HierarchyConflictError,
  HierarchyLock,
  hierarchyOf,
} from "./lib/composition/hierarchy.ts";
export {
  freeze,
  freezeHistory,
  freezeRules,
  freezeWindows,
  FrozenError,
  parseFreezeTime,
  unfreeze,
} from "./lib/composition/freeze.ts";
export type {
  FreezeRule,
  FreezeSource,
  FreezeWindow,
} from "./lib/composition/freeze.ts";
export { runCommand } from "./lib/apps/run.ts";
export type { RunCommandOptions } from "./lib/apps/run.ts";
export { createServeHandler, serveStatus } from "./lib/apps/serve/server.ts";
export type {
  ListenAddress,
  RateLimit,
  ServeHandler,
  ServeOptions,
  ServeStore,
  StatusServer,
  TokenVerifier,
} from "./lib/apps/serve/server.ts";
export {
  createToken,
  readTokensFile,
  revokeToken,
  SCOPES,
  TokenStore,
} from "./lib/apps/serve/identity.ts";
export type { Identity, Scope, TokenEntry } from "./lib/apps/serve/identity.ts";
export { VERSION } from "./lib/kit/version.ts";
export type { PluginContext } from "./lib/composition/plugin.ts";
export { NOTIFICATION_KINDS } from "./lib/composition/events.ts";
export type {
  Actor,
  Notification,
  NotificationJson,
  NotificationKind,
} from "./lib/composition/events.ts";
export { watchEvents } from "./lib/composition/watch.ts";
export type { WatchedBackend, WatchOptions } from "./lib/composition/watch.ts";
export {
  DEFAULT_HOOK_EVENTS,
  parseHooks,
  signature,
  SIGNATURE_HEADER,
} from "./lib/apps/notify/hooks.ts";
export type { DeliveryOptions, Hook } from "./lib/apps/notify/hooks.ts";
export { startDispatcher } from "./lib/apps/notify/dispatch.ts";
export type {
  Dispatcher,
  DispatcherOptions,
  DispatchSource,
} from "./lib/apps/notify/dispatch.ts";
export { handOverRequest, requestHandOver } from "./lib/composition/request.ts";
export { freeSlots, holderLimit } from "./lib/composition/holders.ts";
export type { HolderOptions } from "./lib/composition/holders.ts";
export type { HandOverRequest } from "./lib/composition/request.ts";
