/**
 * The shapes the status page's script (`app.js`) reads from the API, for
 * its type check only: the browser never loads this file.
 *
 * @module
 */

/** A lease as the API shows it (`id` is null for another's lease). */
export interface Lease {
  /** The locked resource. */
  resource: string;
  /** The lease id, shown to its holder only. */
  id: string | null;
  /** Who holds it. */
  principal: string;
  /** The holder's host. */
  host?: string;
  /** Why it is held. */
  reason?: string;
  /** A link about it, such as a CI run. */
  link?: string;
  /** When it was taken (ISO 8601). */
  created: string;
  /** When it lapses (ISO 8601). */
  expires: string;
  /** The fencing token. */
  fence: number;
  /** The backend it lives on, with more than one. */
  backend?: string;
  /** Who waits for it, first come first. */
  waiting?: { principal: string }[];
  /** The open hand-over request. */
  request?: { principal: string; reason?: string };
}

/** An event of a lock's history. */
export interface LockEvent extends Lease {
  /** acquired, released, broken, expired… */
  kind: string;
  /** When it happened (ISO 8601). */
  at: string;
  /** Who broke the lease, and why. */
  by?: { principal: string; reason: string };
}

/** What /api/info says about the server and the caller. */
export interface Info {
  /** Stormlock's version. */
  version: string;
  /** The caller's principal, with a named token. */
  principal: string | null;
  /** Whether the caller may break leases. */
  allowBreak: boolean;
}
