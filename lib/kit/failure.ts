/**
 * Classification: the one place a failure of a store (or of a plugin)
 * becomes a Stormlock error, with the kit's wording for timeouts, denied
 * permissions, foreign records and the fallback message.
 *
 * @module
 */
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  StormlockError,
} from "./errors.ts";
import { DeadlineError } from "./deadline.ts";
import { formatTimeout } from "./options.ts";
import { deniedPermission, permissionAdvice } from "./permissions.ts";
import { ForeignRecordError } from "./record.ts";
import type {
  BackendDefinition,
  Classified,
  FailedOperation,
  Operation,
  Store,
} from "./contract.ts";
import type { Backend, BackendContext, LeaseEvent } from "./types.ts";

/** Describes a value for a message about what a plugin returned. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return "a string";
  if (typeof value === "object") return "an object";
  return String(typeof value === "undefined" ? "nothing" : typeof value);
}

/** What {@linkcode translate} is told about a failure. */
export interface TranslateInput {
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
export function translate(
  error: unknown,
  input: TranslateInput,
): StormlockError {
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
  if (classified && ("config" in classified || "missing" in classified)) {
    const text = "config" in classified
      ? classified.config
      : classified.missing;
    return new ConfigError(`${failed.label} ${text}`, { cause: error });
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
 * Whether the definition's classifier says `error` means the store's
 * table is missing (see `Classified`).
 */
export function isMissing(
  definition: BackendDefinition,
  error: unknown,
  failed: FailedOperation,
): boolean {
  try {
    const classified = definition.classify?.(error, failed);
    return typeof classified === "object" && classified !== null &&
      "missing" in classified;
  } catch {
    return false;
  }
}

/** Whether `error` is the kit's timeout (the store may have acted). */
export function isTimeout(error: unknown): boolean {
  return error instanceof BackendUnavailableError &&
      error.cause instanceof DeadlineError ||
    error instanceof BackendUnavailableError &&
      /\(timeout\)/.test(error.message);
}

/**
 * The break event for `leaseId` in `backend`'s history, if it has one:
 * the tombstone that says who broke a lease and why.
 * @example
 * ```ts ignore
 * const broken = await tombstone(backend, "deploy", leaseId);
 * ```
 */
export async function tombstone(
  backend: Backend,
  resource: string,
  leaseId: string,
): Promise<LeaseEvent | undefined> {
  if (!backend.capabilities.history) return undefined;
  try {
    const events = await backend.history(resource, 200);
    return events.find((event) =>
      event.kind === "broken" && event.id === leaseId
    );
  } catch {
    return undefined;
  }
}

/**
 * `error`, or for a lease that is not held because it was broken, the
 * same error saying who broke it and why.
 * @example
 * ```ts ignore
 * throw await withTombstone(backend, error, "deploy", leaseId);
 * ```
 */
export async function withTombstone(
  backend: Backend,
  error: unknown,
  resource: string,
  leaseId: string,
): Promise<unknown> {
  if (!(error instanceof LeaseNotHeldError) || error.broken) return error;
  const broken = await tombstone(backend, resource, leaseId);
  return broken ? new LeaseNotHeldError(resource, leaseId, broken) : error;
}

/**
 * Runs `body`; if the classifier says the store's table is missing,
 * creates it with the store's `init` and runs `body` once more, within
 * the same bound.
 * @example
 * ```ts ignore
 * const lease = await creatingMissing(definition, store, failed, op, (op) => store.acquire(request, op));
 * ```
 */
export async function creatingMissing<T>(
  definition: BackendDefinition,
  store: Store,
  failed: FailedOperation,
  op: Operation,
  body: (op: Operation) => Promise<T> | T,
): Promise<T> {
  try {
    return await body(op);
  } catch (error) {
    if (!isMissing(definition, error, failed)) throw error;
    await store.init!(op);
    return await body(op);
  }
}
