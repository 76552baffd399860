/**
 * Stormlock's reserved names: the character that marks its own
 * bookkeeping resources (the waiting queue, hand-over requests, the hook
 * dispatcher), which users' names may not contain.
 *
 * @module
 */

/**
 * The character that marks Stormlock's own bookkeeping resources (a lock's
 * waiting queue): names containing it are reserved, and `list` skips them.
 * @example
 * ```ts
 * import { INTERNAL_MARK } from "./reserved.ts";
 * console.log(JSON.stringify(INTERNAL_MARK)); // "\u001f"
 * ```
 */
export const INTERNAL_MARK = "\u001f";

/**
 * Whether `resource` is one of the waiting queue's own names (a waiter's
 * registration or a ticket counter), which `list` leaves out. Any other
 * name is a lock, and is listed even if an older version let it in with
 * a reserved character.
 * @example
 * ```ts
 * import { isBookkeeping } from "./reserved.ts";
 * isBookkeeping("deploy\u001fwait\u001f0000000000000001"); // true
 * isBookkeeping("deploy\u001fqueue"); // true
 * isBookkeeping("prod\u001fintent"); // true
 * isBookkeeping("deploy\u001fx"); // false
 * ```
 */
export function isBookkeeping(resource: string): boolean {
  // Hand-over requests and the hook dispatcher's lease too (notifications),
  // and parent locks' intention holds (hierarchy).
  // deno-lint-ignore no-control-regex
  return /\u001f(?:wait\u001f\d{16}|queue|request\u001f[0-9a-f]{32}|dispatcher|intent)$/
    .test(resource) || resource.startsWith("\u001ffreeze\u001f");
}
