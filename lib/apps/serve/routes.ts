/**
 * What `stormlock serve` answers: one table of routes, each a method, a
 * path pattern, the scope its caller needs, and its handler, with the
 * checks of what a client sends and of what each caller may see.
 *
 * @module
 */
import { eventJson, leaseJson } from "../output/format.ts";
import { handOverRequest } from "../../composition/request.ts";
import type { ListedLease, Stormlock } from "../../composition/stormlock.ts";
import { backendsInUse } from "../../composition/config.ts";
import { freeSlots, holdersOf } from "../../composition/holders.ts";
import {
  AcquireUnknownError,
  LeaseNotHeldError,
  LockHeldError,
  type StormlockError,
} from "../../kit/errors.ts";
import { assertLeaseId } from "../../kit/lease.ts";
import { INTERNAL_MARK } from "../../kit/reserved.ts";
import { queueView, WAIT_MARK } from "../../composition/queue.ts";
import type { Backend, Lease, LeaseEvent } from "../../kit/types.ts";
import { shorten } from "../../kit/text.ts";
import { VERSION } from "../../kit/version.ts";
import { type Identity, resourceAllowed } from "./identity.ts";
import { type Gate, named, type RouteScope } from "./auth.ts";
import type { ChangeFeed } from "./feed.ts";
import { HttpError, json, readJsonBody, respond } from "./http.ts";
import {
  checkName,
  holderLimitField,
  idField,
  limitOf,
  linkField,
  lockOf,
  resourceOf,
  textField,
  ttlField,
} from "./fields.ts";
import type { Metrics } from "./metrics.ts";
import { PAGE_CSS, PAGE_HTML, PAGE_JS } from "./page.ts";

/**
 * What the server reads: a {@linkcode Stormlock} handle, or anything with
 * its `list` and `lock` (tests wrap one to simulate an outage).
 * @example
 * ```ts ignore
 * import { openStormlock, type ServeStore } from "@stormlock/stormlock";
 * const store: ServeStore = await openStormlock();
 * ```
 */
export type ServeStore =
  & Pick<Stormlock, "list" | "lock">
  & Partial<Pick<Stormlock, "backend" | "config">>;

/** What a route's handler gets. */
export interface RouteContext {
  request: Request;
  url: URL;
  method: string;
  /** The caller; set on every `/api` route. */
  who: Identity;
  /** The decoded resource, on `/api/locks/{resource}/…` routes. */
  resource: string;
  /** The client's address, for per-client limits. */
  client: string;
}

/** One row of the routes table. */
export interface Route {
  /** The methods it answers; the first names it in metrics. */
  methods: string[];
  /** The path; a `{resource}` segment matches one encoded resource name. */
  path: string;
  /** The name in metrics, when not the first method and the path. */
  name?: string;
  /** What the caller needs; `undefined` for public routes. */
  scope?: RouteScope;
  /**
   * Whether Stormlock's own names (reserved characters after a lock
   * name: the queue, hand-over requests) are accepted: only where the
   * http backend needs them (acquire, renew, release, and reading one
   * lease), never on listing or history routes.
   */
  queue?: true | "requests";
  run(context: RouteContext): Promise<Response> | Response;
}

/** A lease as `who` may see it: another principal's id is hidden. */
export function view<T extends Lease>(lease: T, who: Identity) {
  const shown = leaseJson(lease);
  if (named(who) && lease.principal !== who.principal) {
    return { ...shown, id: null };
  }
  return shown;
}

/** An event as `who` may see it: another principal's id is hidden. */
export function eventView(event: LeaseEvent, who: Identity) {
  const shown = eventJson(event);
  if (named(who) && event.principal !== who.principal) {
    return { ...shown, id: null };
  }
  return shown;
}

/** A library error as JSON, with what a client needs to rebuild it. */
export function errorBody(error: StormlockError, who?: Identity) {
  const body: Record<string, unknown> = {
    error: error.message,
    code: error.code,
  };
  if (error instanceof LockHeldError) {
    body.holder = who ? view(error.holder, who) : leaseJson(error.holder);
    body.waiting = error.waiting;
    body.queued = error.queued;
    body.holders = error.holders;
  }
  if (error instanceof LeaseNotHeldError) {
    body.resource = error.resource;
    body.leaseId = error.leaseId;
    if (error.broken) {
      body.broken = who
        ? eventView(error.broken, who)
        : eventJson(error.broken);
    }
  }
  if (error instanceof AcquireUnknownError) {
    body.resource = error.resource;
    body.leaseId = error.leaseId;
  }
  return body;
}

/** What the routes work with. */
export interface RouteDeps {
  store: ServeStore;
  gate: Gate;
  feed: ChangeFeed;
  metrics: Metrics;
  /** Who a break from the page is recorded as, if not the default. */
  breaker?: string;
}

/**
 * Every route of the server, in one table.
 */
export function serveRoutes(
  { store, gate, feed, metrics, breaker: pageBreaker }: RouteDeps,
): Route[] {
  /** The backend of a lock, or of the lock a queue name serves. */
  async function backendOf(resource: string): Promise<Backend> {
    const backend = (await store.lock(lockOf(resource))).backend;
    return resource.includes(INTERNAL_MARK) ? queueView(backend) : backend;
  }

  /** Every lease under `prefix` on every backend, queue entries included. */
  async function rawList(prefix: string): Promise<Lease[]> {
    // A waiter's prefix, "LOCK\u001fwait\u001f", reads that lock's queue.
    const queue = prefix.endsWith(WAIT_MARK);
    checkName(prefix, queue, "prefix");
    if (queue || !store.config || !store.backend) {
      return await (await backendOf(prefix || "default")).list(prefix, {
        internal: true,
      });
    }
    const leases: Lease[] = [];
    for (const name of backendsInUse(store.config)) {
      leases.push(
        ...await (await store.backend(name)).list(prefix, { internal: true }),
      );
    }
    return leases;
  }

  /**
   * Refuses `who` a renew or release of someone else's lease. Ids are
   * unique, so if `id` is not the live lease now it never will be, and
   * the store's own check answers "not held".
   */
  async function requireOwn(
    backend: Backend,
    who: Identity,
    resource: string,
    id: string,
    action: string,
  ): Promise<void> {
    if (!named(who)) return;
    const current = (await holdersOf(backend, resource)).find((lease) =>
      lease.id === id
    );
    if (current && current.principal !== who.principal) {
      throw new HttpError(
        403,
        `Lease ${id} on "${shorten(resource)}" belongs to ${
          shorten(current.principal)
        }, not ${
          shorten(who.principal)
        }; you can't ${action} it (only "stormlock break" ends another's lease)`,
        {},
        "FORBIDDEN",
      );
    }
  }

  /** The principal a write is recorded under. */
  function principalOf(who: Identity, body: Record<string, unknown>): string {
    if (who.via === "shared") {
      const claimed = textField(body, "principal", 256);
      if (claimed === undefined) {
        throw new HttpError(
          400,
          'Give the principal: {"principal": "ann@host"}',
          {},
          "USAGE",
        );
      }
      return claimed;
    }
    return who.principal;
  }

  /**
   * Whether every store the server uses can have several holders per
   * lock (slots and shared holds): the http client declares the
   * `holders` capability from this.
   */
  async function serverHolders(): Promise<boolean> {
    const backends = store.config && store.backend
      ? await Promise.all(
        backendsInUse(store.config).map((name) => store.backend!(name)),
      )
      : [(await store.lock("default")).backend];
    return backends.every((backend) => backend.capabilities.holders === true);
  }

  /** Every route, in one table: path, methods, scope, and what it does. */
  return [
    {
      methods: ["GET", "HEAD"],
      path: "/",
      run: () => respond(PAGE_HTML, 200, "text/html; charset=utf-8"),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/index.html",
      name: "GET /",
      run: () => respond(PAGE_HTML, 200, "text/html; charset=utf-8"),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/app.js",
      run: () => respond(PAGE_JS, 200, "text/javascript; charset=utf-8"),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/app.css",
      run: () => respond(PAGE_CSS, 200, "text/css; charset=utf-8"),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/healthz",
      run: () => json({ ok: true }),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/metrics",
      scope: "read",
      run: async ({ who }) =>
        respond(
          metrics.render(
            (await rawList("")).filter((lease) =>
              resourceAllowed(lease.resource, who.resources)
            ),
          ),
          200,
          "text/plain; version=0.0.4; charset=utf-8",
        ),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/info",
      run: async ({ who }) =>
        json({
          version: VERSION,
          holders: await serverHolders(),
          principal: who.principal || null,
          scopes: who.scopes,
          resources: who.resources ?? null,
          allowBreak: who.scopes.includes("break"),
          token: gate.guarded,
        }),
    },
    {
      methods: ["GET"],
      path: "/api/events",
      scope: "read-or-acquire",
      run: ({ who, client }) =>
        feed.locks(
          client,
          (leases) =>
            leases
              .filter((lease) => resourceAllowed(lease.resource, who.resources))
              .map((lease) => view(lease, who)),
        ),
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/locks",
      scope: "read-or-acquire",
      run: async ({ url, who }) => {
        const prefix = url.searchParams.get("prefix") ?? "";
        const leases: ListedLease[] = await store.list(prefix);
        return json(
          leases
            .filter((lease) => resourceAllowed(lease.resource, who.resources))
            .map((lease) => view(lease, who)),
        );
      },
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/leases",
      scope: "read-or-acquire",
      run: async ({ url, who }) => {
        const prefix = url.searchParams.get("prefix") ?? "";
        const leases = await rawList(prefix);
        return json(
          leases
            .filter((lease) => resourceAllowed(lease.resource, who.resources))
            .map((lease) => view(lease, who)),
        );
      },
    },
    {
      methods: ["POST"],
      path: "/api/init",
      scope: "acquire",
      run: async ({ request, who }) => {
        const body = await readJsonBody(request);
        const resource = textField(body, "resource", 4096) ?? "default";
        gate.requireResource(who, resource);
        return json({ setup: await (await backendOf(resource)).init() });
      },
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/locks/{resource}",
      scope: "read-or-acquire",
      // The http backend reads a lease's hand-over request, or a parent
      // lock's intention hold, by its name.
      queue: "requests",
      run: async ({ resource, who }) => {
        const backend = await backendOf(resource);
        const holders = await holdersOf(backend, resource);
        const lease = holders[0];
        if (!lease) {
          return json(
            { error: `No current lease on "${shorten(resource)}"`, resource },
            404,
          );
        }
        // The open hand-over request, as `current --json` shows it.
        const request = await handOverRequest(backend, lease);
        // The first holder, as ever; with slots or shared holds, every
        // holder and the free slots too, as `current --json` shows them.
        return json({
          ...view({ ...lease, request }, who),
          ...(lease.limit === undefined ? {} : {
            holders: holders.map((holder) => view(holder, who)),
            free: freeSlots(holders),
          }),
        });
      },
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/locks/{resource}/history",
      scope: "read-or-acquire",
      run: async ({ resource, url, who }) => {
        const limit = limitOf(url.searchParams.get("limit"));
        const events = await (await backendOf(resource)).history(
          resource,
          limit,
        );
        return json(events.map((event) => eventView(event, who)));
      },
    },
    {
      methods: ["GET", "HEAD"],
      path: "/api/locks/{resource}/held",
      scope: "read-or-acquire",
      // Lock sets and parent locks' intentions check every member.
      queue: true,
      run: async ({ resource, url }) => {
        const id = assertLeaseId(url.searchParams.get("id") ?? "");
        return json({
          held: await (await backendOf(resource)).isHeld(resource, id),
        });
      },
    },
    {
      methods: ["GET"],
      path: "/api/locks/{resource}/watch",
      scope: "read-or-acquire",
      run: ({ resource, client }) =>
        feed.watchLock(resource, client, backendOf),
    },
    {
      methods: ["POST"],
      path: "/api/locks/{resource}/acquire",
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const ttl = ttlField(body);
        const id = body.id === undefined ? undefined : idField(body);
        const limit = holderLimitField(body);
        const lease = await (await backendOf(resource)).acquire(
          resource,
          principalOf(who, body),
          ttl,
          {
            host: textField(body, "host", 256),
            reason: textField(body, "reason"),
            link: who.link ?? linkField(body),
            ...(id ? { id } : {}),
            ...(limit === undefined ? {} : { limit }),
          },
        );
        metrics.event("acquired");
        return json(view(lease, who), 201);
      },
    },
    {
      methods: ["POST"],
      path: "/api/locks/{resource}/renew",
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const id = idField(body);
        const ttl = ttlField(body);
        const reason = textField(body, "reason");
        const backend = await backendOf(resource);
        await requireOwn(backend, who, resource, id, "renew");
        const lease = await backend.renew(
          resource,
          id,
          ttl,
          reason === undefined ? {} : { reason },
        );
        metrics.event(reason === undefined ? "renewed" : "reason-changed");
        return json(view(lease, who));
      },
    },
    {
      methods: ["POST"],
      path: "/api/locks/{resource}/release",
      scope: "acquire",
      queue: true,
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const id = idField(body);
        const backend = await backendOf(resource);
        await requireOwn(backend, who, resource, id, "release");
        await backend.release(resource, id);
        metrics.event("released");
        return json({ resource, id, released: true });
      },
    },
    {
      // A watcher that saw a TTL pass ends that lease here, recording
      // `expired` even when nobody acquires afterwards. Only a lapsed lease
      // ends, so anyone who may acquire the lock may ask.
      methods: ["POST"],
      path: "/api/locks/{resource}/expire",
      scope: "acquire",
      run: async ({ request, resource }) => {
        const id = idField(await readJsonBody(request));
        const backend = await backendOf(resource);
        const expired = backend.expire
          ? await backend.expire(resource, id)
          : false;
        return json({ resource, id, expired });
      },
    },
    {
      methods: ["POST"],
      path: "/api/locks/{resource}/break",
      scope: "break",
      run: async ({ request, resource, who }) => {
        const body = await readJsonBody(request);
        const reason = textField(body, "reason");
        if (reason === undefined) {
          throw new HttpError(
            400,
            'Give the lease to break and why: {"id": "LEASE_ID", "reason": "TEXT"} (without "id", the current lease)',
            {},
            "USAGE",
          );
        }
        const backend = await backendOf(resource);
        let id = body.id === undefined || body.id === null
          ? undefined
          : idField(body);
        if (id === undefined) {
          // Ids are hidden from others, so a breaker may name the current
          // one; of several holders, which one must be said.
          const holders = await holdersOf(backend, resource);
          if (holders.length === 0) {
            throw new HttpError(
              404,
              `No current lease on "${shorten(resource)}"; nothing to break`,
            );
          }
          // Fences are shown to everyone, so they name a hidden holder.
          const fenced = typeof body.fence === "number"
            ? holders.find((holder) => holder.fence === body.fence)
            : undefined;
          if (holders.length > 1 && !fenced) {
            throw new HttpError(
              400,
              `"${
                shorten(resource)
              }" has ${holders.length} holders; name the one to break: {"id": "LEASE_ID"} or {"fence": N}`,
              {},
              "USAGE",
            );
          }
          id = (fenced ?? holders[0]).id;
        }
        const breaker = who.via === "shared" || who.via === "none"
          ? textField(body, "principal", 256) ?? pageBreaker ??
            `${(await store.lock(resource)).settings.principal} via serve`
          : who.principal;
        const broken = await backend.breakLease(resource, id, {
          principal: breaker,
          host: textField(body, "host", 256),
          reason,
        });
        metrics.event("broken");
        return json(view(broken, who));
      },
    },
  ];
}

/** Refuses a method the route does not answer. */
export function allowMethod(methods: string[], method: string): void {
  if (!methods.includes(method)) {
    throw new HttpError(
      405,
      `${method} is not allowed here; use ${methods.join(" or ")}`,
      { allow: methods.join(", ") },
    );
  }
}

/**
 * Finds the route for a path, and the resource it names: a pattern's
 * `{resource}` takes one segment, decoded and checked.
 */
export function matchRoute(
  routes: Route[],
  path: string,
): { route: Route; resource: string } {
  const parts = path.split("/");
  for (const route of routes) {
    const pattern = route.path.split("/");
    if (pattern.length !== parts.length) continue;
    const at = pattern.indexOf("{resource}");
    if (pattern.every((part, i) => i === at || part === parts[i])) {
      const resource = at === -1
        ? ""
        : resourceOf(parts[at], route.queue ?? false);
      return { route, resource };
    }
  }
  if (path === "/api" || path.startsWith("/api/")) {
    throw new HttpError(404, `No such API path: ${shorten(path, 100)}`);
  }
  throw new HttpError(404, `No such page: ${shorten(path, 100)}`);
}
