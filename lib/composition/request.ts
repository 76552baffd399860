/**
 * Hand-over requests: asking the holder of a lock to give it up. A request
 * is kept as a short lease on an internal name made from the resource and
 * the holder's lease id, so it is recorded (as that lease's `acquired`
 * event) on every store, shown beside the lease it asks for, and lapses
 * on its own when that lease ends: a new holder has a new lease id.
 *
 * @module
 */
import { LockHeldError } from "../kit/errors.ts";
import { bookkeeping } from "../kit/views.ts";
import type { Backend, Lease } from "../kit/types.ts";
import { requestName } from "./events.ts";

/** A request lives at least this long, in seconds. */
const MIN_REQUEST_TTL_SECONDS = 3600;

/**
 * What asking for a hand-over came to.
 * @example
 * ```ts ignore
 * const { holder, request, mine } = await requestHandOver(backend, "deploy", { principal: "bob", reason: "hotfix" });
 * ```
 */
export interface HandOverRequest {
  /** The lease asked for. */
  holder: Lease;
  /** The request on record: ours, or the earlier one of someone else. */
  request: Lease;
  /** Whether `request` is ours; `false` when someone else asked first. */
  mine: boolean;
}

/**
 * Records a hand-over request of the lease on `resource`. Asking again
 * updates the reason; while someone else's request is open, theirs stays.
 *
 * @returns The request, or `null` when nobody holds the lock.
 * @example
 * ```ts ignore
 * const asked = await requestHandOver(backend, "deploy", { principal: "bob@ops", reason: "hotfix" });
 * ```
 */
export async function requestHandOver(
  backend: Backend,
  resource: string,
  who: { principal: string; host?: string; reason: string },
): Promise<HandOverRequest | null> {
  const holder = await backend.current(resource);
  if (!holder) return null;
  // Requests live under Stormlock's reserved names.
  const store = bookkeeping(backend);
  const name = requestName(resource, holder.id);
  const ttl = Math.max(
    MIN_REQUEST_TTL_SECONDS,
    Math.ceil((holder.expires.getTime() - Date.now()) / 1000) + 60,
  );
  try {
    const request = await store.acquire(name, who.principal, ttl, {
      ...(who.host ? { host: who.host } : {}),
      reason: who.reason,
    });
    return { holder, request: { ...request, resource }, mine: true };
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    const earlier = error.holder;
    if (earlier.principal !== who.principal) {
      return { holder, request: { ...earlier, resource }, mine: false };
    }
    const request = await store.renew(name, earlier.id, ttl, {
      reason: who.reason,
    });
    return { holder, request: { ...request, resource }, mine: true };
  }
}

/**
 * The open hand-over request of `lease`, or `null`; its `resource` is the
 * lock's.
 * @example
 * ```ts ignore
 * const request = await handOverRequest(backend, lease);
 * if (request) console.error(`${request.principal} asks for it: ${request.reason}`);
 * ```
 */
export async function handOverRequest(
  backend: Backend,
  lease: Lease,
): Promise<Lease | null> {
  // A lock server hides other principals' lease ids, and with them the
  // name their request is kept under.
  if (!/^[0-9a-f]{32}$/.test(lease.id)) return null;
  const request = await bookkeeping(backend).current(
    requestName(lease.resource, lease.id),
  );
  return request ? { ...request, resource: lease.resource } : null;
}
