/**
 * What a client of `stormlock serve` sends, checked before any route acts
 * on it: the resource name in a path, and the fields of a JSON body. Each
 * refusal is a 400 that names the field and what to send instead.
 *
 * @module
 */
import { parseRequestName } from "../../composition/events.ts";
import { INTERNAL_MARK, isBookkeeping } from "../../kit/reserved.ts";
import { MAX_TTL_SECONDS } from "../../kit/duration.ts";
import { limitProblem } from "../../kit/holders.ts";
import { assertLeaseId } from "../../kit/lease.ts";
import { resourceNameProblem, shorten } from "../../kit/text.ts";
import { HttpError } from "./http.ts";
import { INTENT_MARK } from "../../composition/hierarchy_error.ts";

/** Decodes one resource path segment, or refuses it clearly. */
export function resourceOf(
  segment: string,
  queue: boolean | "requests",
): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new HttpError(
      400,
      "The resource name is not valid percent-encoded UTF-8; encode it with encodeURIComponent",
    );
  }
  if (name === "") {
    throw new HttpError(400, "The resource name is empty; name a resource");
  }
  // Reading one lease: a hand-over request, or a parent lock's intention.
  const own = queue === "requests"
    ? (parseRequestName(name) !== undefined || name.endsWith(INTENT_MARK)) &&
      isBookkeeping(name)
    : queue && isBookkeeping(name);
  checkName(name, own, "resource name");
  return name;
}

/**
 * Refuses reserved characters in a name, except in the waiting queue's own
 * names (`bookkeeping`), which the http backend's queue sends: those may
 * have them after a well-formed lock name.
 */
export function checkName(
  name: string,
  bookkeeping: boolean,
  what: string,
): void {
  const base = bookkeeping ? name.slice(0, name.indexOf(INTERNAL_MARK)) : name;
  const problem = resourceNameProblem(base);
  if (problem) {
    throw new HttpError(
      400,
      `The ${what} ${problem}; use another name`,
      {},
      "USAGE",
    );
  }
}

/** The lock a name belongs to: itself, or the lock a queue name serves. */
export function lockOf(name: string): string {
  const at = name.indexOf(INTERNAL_MARK);
  return at === -1 ? name : name.slice(0, at);
}

/** The `limit` of a history query: 1 to 100000, 20 if not given. */
export function limitOf(text: string | null): number {
  if (text === null) return 20;
  if (!/^\d{1,6}$/.test(text) || Number(text) < 1 || Number(text) > 100_000) {
    throw new HttpError(
      400,
      `Bad limit "${shorten(text, 20)}": give a whole number from 1 to 100000`,
    );
  }
  return Number(text);
}

/** The text fields a client may send with a lease, checked. */
export function textField(
  body: Record<string, unknown>,
  key: string,
  max = 4096,
): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value.trim() === "" || value.length > max) {
    throw new HttpError(
      400,
      `"${key}" must be text of 1 to ${max} characters`,
      {},
      "USAGE",
    );
  }
  return value.trim();
}

/** The lease time a client asks for, in whole seconds. */
export function ttlField(body: Record<string, unknown>): number {
  const ttl = body.ttl;
  if (
    typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < 1 ||
    ttl > MAX_TTL_SECONDS
  ) {
    throw new HttpError(
      400,
      `"ttl" must be whole seconds from 1 to ${MAX_TTL_SECONDS}`,
      {},
      "USAGE",
    );
  }
  return ttl;
}

/**
 * How many may hold the lock (`1` exclusive, N slots, `0` shared), or
 * `undefined` when the client leaves it out (an exclusive acquire).
 */
export function holderLimitField(
  body: Record<string, unknown>,
): number | undefined {
  if (body.limit === undefined || body.limit === null) return undefined;
  const problem = limitProblem(body.limit);
  if (problem) {
    throw new HttpError(
      400,
      `"limit" ${problem}, or 0 for a shared hold`,
      {},
      "USAGE",
    );
  }
  return body.limit as number;
}

/** The lease id a client names. */
export function idField(body: Record<string, unknown>): string {
  if (typeof body.id !== "string") {
    throw new HttpError(
      400,
      'Give the lease id: {"id": "LEASE_ID"}',
      {},
      "USAGE",
    );
  }
  return assertLeaseId(body.id);
}

/** A link for a lease: http(s) only, so the page never shows a script URL. */
export function linkField(body: Record<string, unknown>): string | undefined {
  const link = textField(body, "link");
  if (
    link !== undefined &&
    (!/^https?:\/\/\S+$/i.test(link) || !URL.canParse(link))
  ) {
    throw new HttpError(400, '"link" must be an http(s) URL', {}, "USAGE");
  }
  return link;
}
