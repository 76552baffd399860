/**
 * A Stormlock plugin backend that keeps leases in one JSON file, and the
 * template for writing your own (see docs/writing-a-backend.md).
 *
 * Use it from a config file:
 *
 * ```ini
 * [default]
 * backend = shared
 *
 * [backend.shared]
 * # Both paths are relative to this config file's folder.
 * module = ./json-file-backend.js
 * path = leases.json
 * ```
 *
 * It loads in the compiled `stormlock` binary too, which imports a plugin
 * as a `data:` URL: so it is one self-contained JavaScript file, imports
 * only `node:` built-ins, and takes everything else (error classes,
 * `leaseFromRecord`) from the `context` its `open` gets.
 *
 * The kit around it checks that the backend is open, bounds each call by
 * `timeout` (passing an `AbortSignal`), words timeouts, permission errors
 * and anything unexpected, and checks every lease it returns. The store
 * below only keeps leases.
 *
 * Concurrency: every change holds an exclusive lock on `PATH.lock`
 * (`flock` on Unix, `LockFileEx` on Windows) while it reads and rewrites
 * the file, and the file is replaced by a rename, so readers need no lock.
 * Processes on one host serialize; expiry uses this host's clock. Don't
 * put the file on a network share.
 *
 * @module
 */
import { dirname } from "node:path";

/**
 * The file: live and expired leases, the last fence handed out per
 * resource (kept forever, so a fence is never reused), and each
 * resource's events, oldest first. Times are epoch milliseconds.
 *
 * @typedef {{ id: string, principal: string, host?: string, reason?: string,
 *   link?: string, fence: number, created: number, expires: number }} Stored
 * @typedef {{ leases: Record<string, Stored>, fences: Record<string, number>,
 *   events: Record<string, (Stored & { kind: string, at: number, by?: object })[]> }} Data
 */

/** Leases in one JSON file, guarded by a lock file. */
class JsonFileStore {
  #path;
  #context;
  #keep;
  #keepMs;

  constructor(settings, context) {
    this.label = `JSON file ${settings.path}`;
    this.#path = settings.path;
    this.#context = context;
    this.#keep = settings.history;
    this.#keepMs = settings.history_age * 1000;
  }

  /** @returns {Promise<Data>} */
  async #read() {
    let text;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        return { leases: {}, fences: {}, events: {} };
      }
      throw error;
    }
    const data = JSON.parse(text);
    // A file written by the 0.1 template is a bare map of leases.
    return "leases" in data ? data : { leases: data, fences: {}, events: {} };
  }

  /**
   * Runs `change` on the file's data under the lock file and writes the
   * data back. Expired leases are dropped first, each with its event.
   */
  async #update(op, change) {
    await Deno.mkdir(dirname(this.#path), { recursive: true });
    const lockFile = await Deno.open(`${this.#path}.lock`, {
      create: true,
      write: true,
    });
    try {
      await lockFile.lock(true);
      // The kit gave up while we waited: change nothing.
      op.signal.throwIfAborted();
      const data = await this.#read();
      const now = Date.now();
      for (const [resource, stored] of Object.entries(data.leases)) {
        if (stored.expires > now) continue;
        delete data.leases[resource];
        this.#record(data, "expired", resource, stored, stored.expires);
      }
      const result = change(data, now);
      // Write a whole new file and rename it, so readers never see half.
      await Deno.writeTextFile(`${this.#path}.tmp`, JSON.stringify(data));
      await Deno.rename(`${this.#path}.tmp`, this.#path);
      return result;
    } finally {
      // Closing the file also releases its lock.
      lockFile.close();
    }
  }

  /** Appends an event, keeping `history` events of at most `history_age`. */
  #record(data, kind, resource, stored, at, by) {
    const since = Date.now() - this.#keepMs;
    const events = data.events[resource] ?? [];
    events.push({ ...stored, kind, at, by });
    data.events[resource] = events
      .filter((event) => event.at >= since)
      .slice(-this.#keep);
  }

  #lease(resource, stored) {
    return this.#context.leaseFromRecord(resource, stored);
  }

  /** The live lease `leaseId` on `resource`, or a LeaseNotHeldError. */
  #held(data, resource, leaseId) {
    const held = data.leases[resource];
    if (held?.id !== leaseId) {
      throw new this.#context.errors.LeaseNotHeldError(resource, leaseId);
    }
    return held;
  }

  acquire(request, op) {
    return this.#update(op, (data, now) => {
      const { resource } = request;
      const held = data.leases[resource];
      if (held) {
        throw new this.#context.errors.LockHeldError(
          this.#lease(resource, held),
        );
      }
      const fence = (data.fences[resource] ?? 0) + 1;
      data.fences[resource] = fence;
      const stored = {
        id: request.id,
        principal: request.principal,
        host: request.host,
        reason: request.reason,
        link: request.link,
        fence,
        created: now,
        expires: now + request.ttlSeconds * 1000,
      };
      data.leases[resource] = stored;
      this.#record(data, "acquired", resource, stored, now);
      return this.#lease(resource, stored);
    });
  }

  /**
   * Ends the lease `leaseId`, released by its holder or broken by
   * `ending.by`: the kit makes both release and break of it.
   */
  end(resource, leaseId, ending, op) {
    return this.#update(op, (data, now) => {
      const held = this.#held(data, resource, leaseId);
      delete data.leases[resource];
      this.#record(data, ending.kind, resource, held, now, ending.by);
      return this.#lease(resource, held);
    });
  }

  renew(resource, leaseId, ttlSeconds, op, { reason }) {
    return this.#update(op, (data, now) => {
      const held = this.#held(data, resource, leaseId);
      const changed = reason !== undefined && reason !== held.reason;
      held.expires = now + ttlSeconds * 1000;
      if (reason !== undefined) held.reason = reason;
      this.#record(
        data,
        changed ? "reason-changed" : "renewed",
        resource,
        held,
        now,
      );
      return this.#lease(resource, held);
    });
  }

  async current(resource) {
    const held = (await this.#read()).leases[resource];
    return held && held.expires > Date.now()
      ? this.#lease(resource, held)
      : null;
  }

  async list(prefix) {
    const now = Date.now();
    return Object.entries((await this.#read()).leases)
      .filter(([resource, held]) =>
        resource.startsWith(prefix) && held.expires > now
      )
      .map(([resource, held]) => this.#lease(resource, held));
  }

  async history(resource, limit) {
    const since = Date.now() - this.#keepMs;
    const events = (await this.#read()).events[resource] ?? [];
    return events
      .filter((event) => event.at >= since)
      .slice(-limit)
      .reverse()
      .map(({ kind, at, by, ...stored }) => ({
        ...this.#lease(resource, stored),
        kind,
        at: new Date(at),
        ...(by ? { by } : {}),
      }));
  }

  /** Nothing stays open between calls. */
  close() {}
}

/** The plugin: what Stormlock reads from this module. */
export const backend = {
  name: "json-file",
  options: {
    path: {
      kind: "path",
      required: true,
      doc: "The JSON file, relative to the config file's folder.",
    },
    timeout: {
      kind: "duration",
      default: "5s",
      doc: "Bound on each call, waiting for the lock file included.",
    },
  },
  capabilities: { clock: "host", list: true, history: true, fencing: true },
  open(settings, context) {
    return new JsonFileStore(settings, context);
  },
  /** Only what the store knows better than the kit's generic wording. */
  classify(error) {
    if (error instanceof SyntaxError) {
      return {
        unavailable:
          `is not valid JSON (${error.message}); fix it or move it aside`,
      };
    }
    return undefined;
  },
};
