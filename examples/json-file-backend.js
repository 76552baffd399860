/**
 * A Stormlock plugin backend that keeps leases in one JSON file, and the
 * template for writing your own.
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
 * The rules a plugin follows, so that it also loads in the compiled
 * `stormlock` binary (which imports it as a `data:` URL):
 *
 * - One self-contained JavaScript file (`.js` or `.mjs`), no TypeScript.
 * - No imports but `node:` built-ins: no relative, `https:`, `npm:` or
 *   `jsr:` imports. Bundle anything else into the file.
 * - Don't rely on `import.meta.url`; resolve paths with
 *   `context.resolvePath`, which works from the config file's folder.
 * - Export `createBackend(options, context)`, returning (or resolving to) an
 *   object with `acquire`, `release`, `renew`, `current`, `isHeld` and
 *   `close`, and optionally `init`. Optionally export `optionNames`, so
 *   Stormlock warns about misspelt options.
 * - Throw `context.errors.LockHeldError` (with the holder's lease),
 *   `LeaseNotHeldError`, `BackendUnavailableError`, `ConfigError` and
 *   `UsageError` (after `close()`), the
 *   classes callers catch; make lease ids with `context.newLeaseId()`.
 *
 * Concurrency: every operation holds an exclusive lock on `PATH.lock`
 * (`flock` on Unix, `LockFileEx` on Windows) while it reads and rewrites
 * the JSON file, so processes on one host serialize. Expiry uses this
 * host's clock. Don't put the file on a network share.
 *
 * @module
 */

/** The options this backend reads from its `[backend.NAME]` section. */
export const optionNames = ["path"];

/**
 * A lease as stored: times in milliseconds since the epoch.
 * @typedef {{ id: string, principal: string, created: number, expires: number }} Stored
 */

/** Turns a stored lease into the `Lease` callers get. */
function toLease(resource, stored) {
  return {
    resource,
    id: stored.id,
    principal: stored.principal,
    created: new Date(stored.created),
    expires: new Date(stored.expires),
  };
}

/** Leases in one JSON file, guarded by a lock file. */
class JsonFileBackend {
  #path;
  #errors;
  #newLeaseId;
  #closed = false;

  /**
   * @param {string} path The JSON file.
   * @param {object} context The plugin context Stormlock passes.
   */
  constructor(path, context) {
    this.#path = path;
    this.#errors = context.errors;
    this.#newLeaseId = context.newLeaseId;
  }

  /**
   * Runs `change` on the leases while holding the lock file, and writes the
   * leases back when it returns `true` as its second value.
   */
  async #transact(action, change) {
    if (this.#closed) {
      throw new this.#errors.UsageError(
        `The JSON file backend ${this.#path} is closed; open a new one`,
      );
    }
    let lockFile;
    try {
      const folder = this.#path.replace(/[\\/][^\\/]*$/, "");
      if (folder && folder !== this.#path) {
        await Deno.mkdir(folder, { recursive: true });
      }
      lockFile = await Deno.open(`${this.#path}.lock`, {
        create: true,
        write: true,
      });
      await lockFile.lock(true);
    } catch (error) {
      lockFile?.close();
      if (error instanceof Deno.errors.NotCapable) {
        throw new this.#errors.ConfigError(
          `No permission to write ${this.#path}.lock; keep the file under $XDG_STATE_HOME/stormlock or grant --allow-write for it`,
          { cause: error },
        );
      }
      throw new this.#errors.BackendUnavailableError(
        `JSON file backend ${this.#path} failed to ${action}: ${error.message}`,
        { cause: error },
      );
    }
    try {
      const leases = await this.#read();
      const [result, changed] = change(leases, Date.now());
      if (changed) await this.#write(leases);
      return result;
    } finally {
      // Closing the file also releases its lock.
      lockFile.close();
    }
  }

  /** @returns {Promise<Record<string, Stored>>} */
  async #read() {
    let text;
    try {
      text = await Deno.readTextFile(this.#path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return {};
      throw new this.#errors.BackendUnavailableError(
        `JSON file backend ${this.#path} can't be read: ${error.message}`,
        { cause: error },
      );
    }
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new this.#errors.BackendUnavailableError(
        `JSON file backend ${this.#path} is not valid JSON: ${error.message}`,
        { cause: error },
      );
    }
  }

  /** Writes a temporary file and renames it, so readers never see half. */
  async #write(leases) {
    const temporary = `${this.#path}.${this.#newLeaseId()}.tmp`;
    try {
      await Deno.writeTextFile(temporary, JSON.stringify(leases, null, 1));
      await Deno.rename(temporary, this.#path);
    } catch (error) {
      await Deno.remove(temporary).catch(() => {});
      throw new this.#errors.BackendUnavailableError(
        `JSON file backend ${this.#path} can't be written: ${error.message}`,
        { cause: error },
      );
    }
  }

  /** Takes the lock if it is free or its lease expired. */
  acquire(resource, principal, ttlSeconds) {
    return this.#transact("acquire", (leases, now) => {
      const held = leases[resource];
      if (held && held.expires > now) {
        throw new this.#errors.LockHeldError(toLease(resource, held));
      }
      // Expired leases of other resources go too, so the file stays small.
      for (const [name, stored] of Object.entries(leases)) {
        if (stored.expires <= now) delete leases[name];
      }
      const stored = {
        id: this.#newLeaseId(),
        principal,
        created: now,
        expires: now + ttlSeconds * 1000,
      };
      leases[resource] = stored;
      return [toLease(resource, stored), true];
    });
  }

  /** Ends the lease if it is the current one. */
  release(resource, leaseId) {
    return this.#transact("release", (leases, now) => {
      const held = leases[resource];
      if (!held || held.id !== leaseId || held.expires <= now) {
        throw new this.#errors.LeaseNotHeldError(resource, leaseId);
      }
      delete leases[resource];
      return [undefined, true];
    });
  }

  /** Sets the lease to expire `ttlSeconds` from now, if it is current. */
  renew(resource, leaseId, ttlSeconds) {
    return this.#transact("renew", (leases, now) => {
      const held = leases[resource];
      if (!held || held.id !== leaseId || held.expires <= now) {
        throw new this.#errors.LeaseNotHeldError(resource, leaseId);
      }
      held.expires = now + ttlSeconds * 1000;
      return [toLease(resource, held), true];
    });
  }

  /** The live lease on the resource, or `null`. */
  current(resource) {
    return this.#transact("read", (leases, now) => {
      const held = leases[resource];
      return [held && held.expires > now ? toLease(resource, held) : null];
    });
  }

  /** Whether `leaseId` is the live lease on the resource. */
  isHeld(resource, leaseId) {
    return this.#transact("read", (leases, now) => {
      const held = leases[resource];
      return [!!held && held.id === leaseId && held.expires > now];
    });
  }

  /** Nothing stays open between operations; later calls fail. */
  close() {
    this.#closed = true;
    return Promise.resolve();
  }
}

/**
 * Builds the backend from its options. Stormlock calls this with the
 * `[backend.NAME]` section (minus `module`) and a context.
 *
 * @param {Record<string, string>} options `path`: the JSON file (required;
 *   relative to the config file's folder).
 * @param {object} context Where the options came from, Stormlock's error
 *   classes, `newLeaseId()` and `resolvePath()`.
 */
export function createBackend(options, context) {
  if (!options.path) {
    throw new context.errors.ConfigError(
      `${
        context.configPath ?? "<config>"
      } [${context.section}] path: required; name the JSON file, e.g. path = leases.json`,
    );
  }
  return new JsonFileBackend(context.resolvePath(options.path), context);
}
