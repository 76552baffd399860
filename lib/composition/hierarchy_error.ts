/**
 * A parent lock's refusal (see `hierarchy.ts`), apart so that the CLI's
 * error table can name it without loading the lock machinery.
 *
 * @module
 */
import { INTERNAL_MARK } from "../kit/reserved.ts";
import { LockHeldError } from "../kit/errors.ts";
import { printable, shellQuote, shorten } from "../kit/text.ts";
import { when } from "../kit/time.ts";

/**
 * The suffix of an intention hold's reserved name.
 * @example
 * ```ts
 * import { INTENT_MARK } from "./hierarchy_error.ts";
 * console.log(JSON.stringify(`prod${INTENT_MARK}`)); // "prod\u001fintent"
 * ```
 */
export const INTENT_MARK = `${INTERNAL_MARK}intent`;

/**
 * A refusal by a hold above or below: names the resource asked for, the
 * one that holds it up, and its holder. Exit 2, like a held lock.
 * @example
 * ```ts ignore
 * try { await lock.acquire(); } catch (e) {
 *   if (e instanceof HierarchyConflictError) console.log(e.blocking);
 * }
 * ```
 */
export class HierarchyConflictError extends LockHeldError {
  /** The resource asked for. */
  readonly resource: string;
  /** The resource above or below it whose hold refused it. */
  readonly blocking: string;

  /**
   * Makes the refusal of `resource` by `refusal`, an intention hold's.
   *
   * @param resource The resource asked for.
   * @param refusal The intention name's refusal.
   * @param separator The hierarchy's separator.
   */
  constructor(resource: string, refusal: LockHeldError, separator: string) {
    const intent = refusal.holder;
    const base = intent.resource.slice(0, -INTENT_MARK.length);
    // A waiter's registration carries its own reason, not a resource.
    const blocking = refusal.queued ? base : intent.reason ?? base;
    const holder = { ...intent, resource: blocking, reason: undefined };
    super(holder, refusal);
    this.resource = resource;
    this.blocking = blocking;
    this.name = "HierarchyConflictError";
    const shown = (name: string) => `"${printable(shorten(name))}"`;
    const who = printable(shorten(intent.principal));
    const more = refusal.holders > 1
      ? ` (and ${refusal.holders - 1} more)`
      : "";
    const since = `since ${when(intent.created)}, until ${
      when(intent.expires)
    }`;
    const breakHint = `if it is stale: stormlock break ${
      blocking.length > 200 ? "RESOURCE" : printable(shellQuote(blocking))
    } --reason '…'`;
    this.message = refusal.queued
      ? `${shown(resource)} is free, but ${refusal.waiting} waiting for ${
        shown(base)
      } or a lock under it got there first (the first is ${
        printable(shorten(intent.principal))
      }); join the queue with --wait`
      : blocking === resource
      ? `${shown(resource)} is held by ${who} ${since}; ${breakHint}`
      : blocking.startsWith(`${resource}${separator}`)
      ? `${shown(resource)} is held under ${
        shown(blocking)
      }${more} by ${who} ${since}; ${breakHint}`
      : `${shown(resource)} is under ${
        shown(blocking)
      }, held by ${who} ${since}; ${breakHint}`;
  }
}
