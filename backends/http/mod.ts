/**
 * The `http` backend: a client of a team lock server (`stormlock serve`).
 * Operators and CI hold a token, not the store's credentials; the server
 * records the principal the token names. Several `url`s give failover.
 *
 * The client makes each new lease's id, so a retry on another server, or
 * an answer lost on the way, still names the right lease.
 *
 * @module
 */
import {
  BackendUnavailableError,
  ConfigError,
  ForbiddenError,
  LeaseNotHeldError,
  LockHeldError,
  UsageError,
} from "../../lib/kit/errors.ts";
import { AcquireUnknownError } from "../../lib/kit/errors.ts";
import type {
  AcquireRequest,
  Ending,
  Operation,
  Store,
} from "../../lib/kit/contract.ts";
import { defineBackend } from "../../lib/kit/define.ts";
import {
  classifyHttpError,
  NotServerError,
  UnreachableError,
} from "./errors.ts";
import { options, readToken, serverUrls } from "./options.ts";
import type { Breaker, Lease, LeaseEvent } from "../../lib/kit/types.ts";

/** A lease as the server's JSON shows it; `id` is null when hidden. */
interface LeaseJson {
  resource: string;
  id: string | null;
  principal: string;
  host: string | null;
  reason: string | null;
  link: string | null;
  fence: number;
  created: string;
  expires: string;
  /** Slots (N) or shared (0); absent on an exclusive lease. */
  limit?: number;
}

interface EventJson extends LeaseJson {
  kind: LeaseEvent["kind"];
  at: string;
  by: { principal: string; host: string | null; reason: string } | null;
}

function leaseOf(json: LeaseJson): Lease {
  if (
    typeof json?.resource !== "string" || typeof json.principal !== "string"
  ) {
    throw new NotServerError("a lease without resource or principal");
  }
  const lease: Lease = {
    resource: json.resource,
    // Another principal's lease id is hidden by the server.
    id: json.id ?? "",
    principal: json.principal,
    fence: Number(json.fence) || 0,
    created: new Date(json.created),
    expires: new Date(json.expires),
  };
  if (json.host) lease.host = json.host;
  if (json.reason) lease.reason = json.reason;
  if (json.link) lease.link = json.link;
  if (typeof json.limit === "number") lease.limit = json.limit;
  if (isNaN(lease.created.getTime()) || isNaN(lease.expires.getTime())) {
    throw new NotServerError("a lease with bad times");
  }
  return lease;
}

function eventOf(json: EventJson): LeaseEvent {
  const event: LeaseEvent = {
    ...leaseOf(json),
    kind: json.kind,
    at: new Date(json.at),
  };
  if (json.by) {
    event.by = {
      principal: json.by.principal,
      reason: json.by.reason,
      ...(json.by.host ? { host: json.by.host } : {}),
    };
  }
  return event;
}

/** Reads the payload of a JWT without checking it: only for its expiry. */
function jwtExpiry(token: string): number {
  try {
    const payload = JSON.parse(
      atob(token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/")),
    );
    return typeof payload.exp === "number" ? payload.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

interface HttpSettings {
  urls: URL[];
  timeoutMs: number;
  caCert?: string;
  /** Where the token comes from, for messages; never the token. */
  tokenSource?: string;
  token?: string;
  audience: string;
}

/** A client of one or more lock servers. */
class HttpStore implements Store {
  readonly label: string;
  readonly #settings: HttpSettings;
  readonly #client?: Deno.HttpClient;
  #preferred = 0;
  #idToken?: { value: string; expires: number };

  constructor(settings: HttpSettings) {
    this.#settings = settings;
    this.label = `Lock server ${
      settings.urls.map((url) => url.origin).join(", ")
    }`;
    if (settings.caCert !== undefined) {
      this.#client = Deno.createHttpClient({ caCerts: [settings.caCert] });
    }
  }

  /** The bearer token: given, or a GitHub Actions OIDC ID token. */
  async #token(signal: AbortSignal): Promise<string | undefined> {
    if (this.#settings.token !== undefined) return this.#settings.token;
    const requestUrl = Deno.env.get("ACTIONS_ID_TOKEN_REQUEST_URL");
    const requestToken = Deno.env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    if (!requestUrl || !requestToken) return undefined;
    if (this.#idToken && this.#idToken.expires > Date.now() + 60_000) {
      return this.#idToken.value;
    }
    const url = new URL(requestUrl);
    url.searchParams.set("audience", this.#settings.audience);
    let reply: Response;
    try {
      reply = await fetch(url, {
        headers: { authorization: `Bearer ${requestToken}` },
        signal,
      });
    } catch (error) {
      throw new BackendUnavailableError(
        `GitHub Actions' ID token service (ACTIONS_ID_TOKEN_REQUEST_URL) did not answer: ${
          (error as Error).name
        }; retry the job`,
      );
    }
    const body = await reply.json().catch(() => undefined) as
      | { value?: unknown }
      | undefined;
    if (!reply.ok || typeof body?.value !== "string") {
      throw new ForbiddenError(
        `GitHub Actions refused an ID token (HTTP ${reply.status}); give the job "permissions: id-token: write"`,
      );
    }
    this.#idToken = { value: body.value, expires: jwtExpiry(body.value) };
    return body.value;
  }

  /**
   * Sends one request, trying each url in turn while they can't be
   * reached; returns the status and the JSON body.
   */
  async #call(
    method: "GET" | "POST",
    path: string,
    op: Operation,
    body?: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const token = await this.#token(op.signal);
    const urls = this.#settings.urls;
    const failures: string[] = [];
    const perTry = Math.max(
      250,
      Math.floor((op.deadline - Date.now()) / urls.length),
    );
    for (let tried = 0; tried < urls.length; tried++) {
      const index = (this.#preferred + tried) % urls.length;
      const base = urls[index];
      const signal = AbortSignal.any([op.signal, AbortSignal.timeout(perTry)]);
      let reply: Response;
      try {
        reply = await fetch(new URL(path, base), {
          method,
          headers: {
            accept: "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
            ...(body === undefined
              ? {}
              : { "content-type": "application/json" }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal,
          ...(this.#client ? { client: this.#client } : {}),
        });
      } catch (error) {
        if (op.signal.aborted) throw error;
        const name = (error as Error)?.name;
        failures.push(
          `${base.origin}: ${
            name === "TimeoutError" || name === "AbortError"
              ? "no answer in time"
              : (error as Error)?.message?.replace(/\s+/g, " ") ?? String(error)
          }`,
        );
        continue;
      }
      this.#preferred = index;
      const text = await reply.text();
      let json: Record<string, unknown>;
      try {
        json = text === "" ? {} : JSON.parse(text);
      } catch {
        throw new NotServerError(
          `${base.origin} answered HTTP ${reply.status} with something other than JSON`,
        );
      }
      if (reply.status === 502 || reply.status === 504) {
        failures.push(`${base.origin}: HTTP ${reply.status} from a proxy`);
        continue;
      }
      return { status: reply.status, json };
    }
    throw new UnreachableError(failures.join("; "));
  }

  /** The call's JSON when it succeeded, else the error it stands for. */
  async #ok(
    method: "GET" | "POST",
    path: string,
    op: Operation,
    body?: unknown,
  ): Promise<Record<string, unknown>> {
    const { status, json } = await this.#call(method, path, op, body);
    if (status >= 200 && status < 300) return json;
    throw this.#error(status, json);
  }

  #error(status: number, json: Record<string, unknown>): Error {
    const message = typeof json.error === "string"
      ? json.error
      : `HTTP ${status}`;
    const said = `${this.label} says: ${message}`;
    switch (json.code) {
      case "LOCK_HELD":
        return new LockHeldError(leaseOf(json.holder as LeaseJson), {
          waiting: Number(json.waiting) || 0,
          queued: json.queued === true,
          holders: Number(json.holders) || 1,
        });
      case "LEASE_NOT_HELD":
        return new LeaseNotHeldError(
          String(json.resource),
          String(json.leaseId),
          json.broken ? eventOf(json.broken as EventJson) : undefined,
        );
      case "USAGE":
        return new UsageError(message);
      case "CONFIG":
        return new ConfigError(said);
      case "FORBIDDEN":
        return new ForbiddenError(message);
      case "UNAUTHENTICATED":
        return new ForbiddenError(
          `${said}; ${
            this.#settings.tokenSource
              ? `check the token in ${this.#settings.tokenSource}`
              : "set STORMLOCK_TOKEN or token_file in [backend.http]"
          }`,
        );
      case "BACKEND_UNAVAILABLE":
        if (typeof json.leaseId === "string" && json.resource) {
          return new AcquireUnknownError(
            said,
            String(json.resource),
            json.leaseId,
          );
        }
        return new BackendUnavailableError(said);
    }
    if (status === 429) {
      return new BackendUnavailableError(`${said} (rate limited)`);
    }
    if (status === 401 || status === 403) return new ForbiddenError(said);
    if (status === 404 && json.error === undefined) {
      return new NotServerError(`${this.label} has no lock API (HTTP 404)`);
    }
    return new BackendUnavailableError(said);
  }

  #lockPath(resource: string, action?: string): string {
    return `/api/locks/${encodeURIComponent(resource)}${
      action ? `/${action}` : ""
    }`;
  }

  async acquire(request: AcquireRequest, op: Operation): Promise<Lease> {
    try {
      const json = await this.#ok(
        "POST",
        this.#lockPath(request.resource, "acquire"),
        op,
        {
          id: request.id,
          ttl: request.ttlSeconds,
          principal: request.principal,
          host: request.host,
          reason: request.reason,
          link: request.link,
          ...(request.limit === undefined ? {} : { limit: request.limit }),
        },
      );
      return leaseOf(json as unknown as LeaseJson);
    } catch (error) {
      // A retry after a lost answer finds our own lease holding the lock.
      if (error instanceof LockHeldError && error.holder.id === request.id) {
        return error.holder;
      }
      throw error;
    }
  }

  async end(
    resource: string,
    leaseId: string,
    ending: Ending,
    op: Operation,
  ): Promise<Lease | void> {
    if (ending.kind === "broken") {
      return await this.#break(resource, leaseId, ending.by, op);
    }
    await this.#ok("POST", this.#lockPath(resource, "release"), op, {
      id: leaseId,
    });
  }

  async renew(
    resource: string,
    leaseId: string,
    ttlSeconds: number,
    op: Operation,
    change: { reason?: string },
  ): Promise<Lease> {
    const json = await this.#ok("POST", this.#lockPath(resource, "renew"), op, {
      id: leaseId,
      ttl: ttlSeconds,
      ...(change.reason === undefined ? {} : { reason: change.reason }),
    });
    return leaseOf(json as unknown as LeaseJson);
  }

  async current(resource: string, op: Operation): Promise<Lease | null> {
    const { status, json } = await this.#call(
      "GET",
      this.#lockPath(resource),
      op,
    );
    if (status === 404 && json.resource === resource) return null;
    if (status !== 200) throw this.#error(status, json);
    return leaseOf(json as unknown as LeaseJson);
  }

  /**
   * Every holder of the lock. Always offered: whether the server's store
   * can have several holders is the server's to say, and it refuses in
   * one line naming its store when it can't (asking at open would cost
   * every command a round trip).
   */
  holders(resource: string, op: Operation): Promise<Lease[]> {
    return this.#holders(resource, op);
  }

  async #holders(resource: string, op: Operation): Promise<Lease[]> {
    const { status, json } = await this.#call(
      "GET",
      this.#lockPath(resource),
      op,
    );
    if (status === 404 && json.resource === resource) return [];
    if (status !== 200) throw this.#error(status, json);
    if (!Array.isArray(json.holders)) {
      // A server from before slots: the one lease.
      return [leaseOf(json as unknown as LeaseJson)];
    }
    return (json.holders as LeaseJson[]).map(leaseOf);
  }

  async isHeld(resource: string, leaseId: string, op: Operation) {
    const json = await this.#ok(
      "GET",
      `${this.#lockPath(resource, "held")}?id=${leaseId}`,
      op,
    );
    return json.held === true;
  }

  async list(prefix: string, op: Operation): Promise<Lease[]> {
    const json = await this.#ok(
      "GET",
      `/api/leases?prefix=${encodeURIComponent(prefix)}`,
      op,
    );
    if (!Array.isArray(json)) throw new NotServerError("list is not a list");
    return (json as unknown as LeaseJson[]).map(leaseOf);
  }

  async history(
    resource: string,
    limit: number,
    op: Operation,
  ): Promise<LeaseEvent[]> {
    const json = await this.#ok(
      "GET",
      `${this.#lockPath(resource, "history")}?limit=${limit}`,
      op,
    );
    if (!Array.isArray(json)) throw new NotServerError("history is not a list");
    return (json as unknown as EventJson[]).map(eventOf);
  }

  async #break(
    resource: string,
    leaseId: string,
    by: Breaker,
    op: Operation,
  ): Promise<Lease> {
    const json = await this.#ok("POST", this.#lockPath(resource, "break"), op, {
      // An empty id breaks the current lease, whose id the server hides.
      ...(leaseId ? { id: leaseId } : {}),
      reason: by.reason,
      principal: by.principal,
      host: by.host,
    });
    return leaseOf(json as unknown as LeaseJson);
  }

  async expire(
    resource: string,
    leaseId: string,
    op: Operation,
  ): Promise<boolean> {
    // Another principal's lease id is hidden, so only our own can be named.
    if (!leaseId) return false;
    const { status, json } = await this.#call(
      "POST",
      this.#lockPath(resource, "expire"),
      op,
      { id: leaseId },
    );
    if (status >= 200 && status < 300) return json.expired === true;
    // A token without the acquire scope, or a server without the route:
    // the watcher reports the expiry without recording it.
    if (status === 403 || status === 404) return false;
    throw this.#error(status, json);
  }

  async watch(
    resource: string,
    onChange: () => void,
    signal: AbortSignal,
    op: Operation,
  ): Promise<void> {
    const token = await this.#token(op.signal);
    const base = this.#settings.urls[this.#preferred];
    const stop = new AbortController();
    signal.addEventListener("abort", () => stop.abort(), { once: true });
    op.onExpire(() => ready || stop.abort());
    let ready = false;
    const reply = await fetch(
      new URL(this.#lockPath(resource, "watch"), base),
      {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        signal: stop.signal,
        ...(this.#client ? { client: this.#client } : {}),
      },
    );
    if (!reply.ok || !reply.body) {
      const json = await reply.json().catch(() => ({}));
      throw this.#error(reply.status, json);
    }
    const lines = reply.body.pipeThrough(new TextDecoderStream())
      .getReader();
    let buffer = "";
    let event = "";
    await new Promise<void>((resolve, reject) => {
      const pump = async () => {
        try {
          for (;;) {
            const { value, done } = await lines.read();
            if (done) break;
            buffer += value;
            let end: number;
            while ((end = buffer.indexOf("\n")) !== -1) {
              const line = buffer.slice(0, end);
              buffer = buffer.slice(end + 1);
              if (line.startsWith("event: ")) event = line.slice(7);
              if (line === "" && event) {
                if (event === "ready") {
                  ready = true;
                  resolve();
                } else if (event === "change") onChange();
                event = "";
              }
            }
          }
        } catch (error) {
          if (!ready) reject(error);
        }
        // The stream ended: let the waiter look for itself.
        if (ready && !signal.aborted) onChange();
        if (!ready) reject(new UnreachableError("the event stream ended"));
      };
      pump();
    });
  }

  async init(op: Operation): Promise<void> {
    await this.#ok("POST", "/api/init", op, {});
  }

  close(): void {
    this.#client?.close();
  }
}

/** The `http` backend: a client of `stormlock serve`. */
export const backend = defineBackend({
  name: "http",
  options,
  capabilities: {
    clock: "server",
    init: true,
    list: true,
    history: true,
    fencing: true,
    events: true,
    authenticated: true,
    // The server's store decides; it refuses when it can't.
    holders: true,
  },
  label: (settings) => `Lock server ${settings.url}`,
  open(settings, context) {
    const urls = serverUrls(settings, context);
    const { token, source } = readToken(settings.token_file, context);
    return new HttpStore({
      urls,
      timeoutMs: settings.timeout,
      caCert: settings.ca_cert,
      token,
      tokenSource: source,
      audience: settings.audience,
    });
  },
  classify: classifyHttpError,
});
