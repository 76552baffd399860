/**
 * The backend kit, for plugin authors: declare a backend's options,
 * capabilities and store, and the kit writes the frame around every
 * operation (the closed check, deadlines, error translation, checks on
 * what the store returns). Test it with `@stormlock/stormlock/testing`.
 *
 * A plugin loaded by the compiled binary can't import this module: it
 * exports a plain `backend` object of the same shape instead, and gets the
 * error classes and helpers from the `context` its `open` receives.
 *
 * @example
 * ```ts ignore
 * import { defineBackend } from "@stormlock/stormlock/backend";
 * export const backend = defineBackend({
 *   name: "memory",
 *   options: { timeout: { kind: "duration", default: "1s", doc: "Bound on each call." } },
 *   capabilities: { clock: "host" },
 *   open: (settings, context) => new MemoryStore(context),
 * });
 * ```
 *
 * @module
 */
export { defineBackend } from "./define.ts";
export { EVENT_KINDS, isEventKind, leaseFromRecord } from "./record.ts";
export type {
  AcquireRequest,
  BackendDefinition,
  Classified,
  CreateOptions,
  DefinedBackend,
  Ending,
  FailedOperation,
  HistorySettings,
  KitContext,
  LeaseRecord,
  Operation,
  Store,
} from "./contract.ts";
export {
  optionError,
  optionTable,
  scrubSecrets,
  secretValues,
  urlPemFiles,
} from "./options.ts";
export type {
  HasValue,
  OptionBase,
  OptionSchema,
  OptionSpec,
  SettingsOf,
  ValueOf,
} from "./options.ts";
export {
  DeadlineError,
  MAX_TIMER_MS,
  sleep,
  withDeadline,
  within,
} from "./deadline.ts";
export type { Bound } from "./deadline.ts";
export { resolveConfigPath, stateDir } from "./paths.ts";
export { printable, shorten } from "./text.ts";
export {
  AcquireUnknownError,
  BackendUnavailableError,
  ConfigError,
  ForbiddenError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "./errors.ts";
export type { StormlockErrorCode } from "./errors.ts";
export { assertLeaseId, isLeaseId, newLeaseId } from "./lease.ts";
export type * from "./types.ts";
