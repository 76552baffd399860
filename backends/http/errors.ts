/**
 * The `http` backend's failures, and how `classify` words them.
 *
 * @module
 */
import type { Classified } from "../../lib/kit/contract.ts";

/** The server answered, but not as a lock server does. */
export class NotServerError extends Error {}

/** No url could be reached. */
export class UnreachableError extends Error {}

/**
 * Words the client's own failures; the kit handles the rest.
 *
 * @example
 * ```ts
 * import { classifyHttpError, NotServerError } from "./errors.ts";
 * classifyHttpError(new NotServerError("HTTP 404")); // { unavailable: "is not a Stormlock lock server …" }
 * ```
 */
export function classifyHttpError(error: unknown): Classified | undefined {
  if (error instanceof UnreachableError) {
    return {
      unavailable:
        `can't be reached (${error.message}); check that serve runs there and url in [backend.http]`,
    };
  }
  if (error instanceof NotServerError) {
    return {
      unavailable:
        `is not a Stormlock lock server (${error.message}); check url in [backend.http]`,
    };
  }
  const name = (error as Error)?.name;
  if (name === "AbortError" || name === "TimeoutError") return "timeout";
  return undefined;
}
