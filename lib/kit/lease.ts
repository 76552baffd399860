/**
 * Lease ids: 128 random bits as 32 lowercase hex digits.
 *
 * @module
 */
import { UsageError } from "./errors.ts";

const LEASE_ID = /^[0-9a-f]{32}$/;

/**
 * Makes a new lease id from `crypto.getRandomValues`: 128 random bits.
 *
 * @example
 * ```ts
 * import { newLeaseId } from "@stormlock/stormlock";
 * console.log(newLeaseId().length); // 32
 * ```
 */
export function newLeaseId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join(
    "",
  );
}

/**
 * Whether `text` is a well-formed lease id.
 *
 * @example
 * ```ts
 * import { isLeaseId } from "@stormlock/stormlock";
 * isLeaseId("f".repeat(32)); // true
 * isLeaseId("1; DROP TABLE x"); // false
 * ```
 */
export function isLeaseId(text: string): boolean {
  return LEASE_ID.test(text);
}

/**
 * Checks a lease id before any backend sees it.
 *
 * @returns The id in lowercase, so a pasted uppercase id still matches.
 * @throws {UsageError} when it is not 32 hex digits.
 * @example
 * ```ts
 * import { assertLeaseId } from "./lease.ts";
 * console.log(assertLeaseId("ABCDEF0123456789ABCDEF0123456789")); // lowercased
 * ```
 */
export function assertLeaseId(text: string): string {
  const id = text.toLowerCase();
  if (!isLeaseId(id)) {
    const shown = text.length > 40 ? `${text.slice(0, 40)}…` : text;
    throw new UsageError(
      `Malformed lease id "${shown}": expected the 32 hex digits printed by "stormlock acquire"`,
    );
  }
  return id;
}
