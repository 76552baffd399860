/**
 * `stormlock watch`: streams events as lines or NDJSON, runs `--exec` per
 * event, and with `--hooks` delivers the config's hooks, until SIGINT or
 * SIGTERM.
 *
 * @module
 */
import { UsageError } from "../../kit/errors.ts";
import { parseTtl } from "../../kit/duration.ts";
import { shorten } from "../../kit/text.ts";
import { backendsInUse } from "../../composition/config.ts";
import { safeJson } from "../output/format.ts";
import {
  eventIdTime,
  type Notification,
  NOTIFICATION_KINDS,
  notificationJson,
  type NotificationKind,
  notificationLine,
} from "../../composition/events.ts";
import { HookDelivery, parseHooks, runEventCommand } from "./hooks.ts";
import {
  DEFAULT_EXPIRING_LEAD_MS,
  watchEvents,
} from "../../composition/watch.ts";
import type { Stormlock } from "../../composition/stormlock.ts";
import type { Backend } from "../../kit/types.ts";

/**
 * What the CLI passes to {@linkcode watchCommand}: its flags as given, and
 * where answers and notes go.
 * @example
 * ```ts ignore
 * await watchCommand(locks, "deploy", { json: true, print: console.log, complain: console.error });
 * ```
 */
export interface WatchCommandOptions {
  /** `--events`: comma-separated kinds. */
  events?: string;
  /** `--json`: NDJSON on stdout. */
  json?: boolean;
  /** `--exec`: a command run once per event. */
  exec?: string;
  /** `--since`: an event id, an ISO time, or a duration ago. */
  since?: string;
  /** `--hooks`: also deliver the config's hooks. */
  hooks?: boolean;
  /** `--lead`: the `expiring` lead time. */
  lead?: string;
  /** Writes one line to stdout. */
  print(line: string): void;
  /** Writes one note to stderr. */
  complain(message: string): void;
}

/** The longest `--exec` may run per event. */
const EXEC_TIMEOUT_MS = 10 * 60_000;

/**
 * Parses `--events`.
 * @throws {UsageError} naming an unknown kind.
 * @example
 * ```ts
 * import { parseKinds } from "./watch.ts";
 * parseKinds("released, broken"); // ["released", "broken"]
 * ```
 */
export function parseKinds(text: string): NotificationKind[] {
  const kinds = text.split(",").map((kind) => kind.trim()).filter(Boolean);
  if (kinds.length === 0) {
    throw new UsageError(
      `--events is empty; name kinds such as released,broken`,
    );
  }
  for (const kind of kinds) {
    if (!NOTIFICATION_KINDS.includes(kind as NotificationKind)) {
      throw new UsageError(
        `Unknown event kind "${shorten(kind, 40)}" in --events; choose from ${
          NOTIFICATION_KINDS.join(", ")
        }`,
      );
    }
  }
  return kinds as NotificationKind[];
}

/**
 * Parses `--since`: an event id, an ISO 8601 time, or a duration ago.
 * @throws {UsageError} when it is none of these.
 * @example
 * ```ts
 * import { parseSince } from "./watch.ts";
 * parseSince("2026-12-03T10:00:00Z", 0).toISOString(); // "2026-12-03T10:00:00.000Z"
 * ```
 */
export function parseSince(text: string, now = Date.now()): Date {
  const trimmed = text.trim();
  const fromId = eventIdTime(trimmed);
  if (fromId !== undefined) return new Date(fromId);
  if (/^\d{4}-\d\d-\d\d(T|$)/.test(trimmed)) {
    const time = new Date(trimmed);
    if (!Number.isNaN(time.getTime())) return time;
  }
  try {
    return new Date(now - parseTtl(trimmed) * 1000);
  } catch {
    throw new UsageError(
      `Bad --since "${
        shorten(text, 40)
      }": give an event id, a time such as 2026-12-03T10:00:00Z, or a duration ago such as 30m`,
    );
  }
}

/**
 * Runs `stormlock watch` until SIGINT or SIGTERM.
 *
 * @returns The exit code: 0 when stopped by a signal.
 * @example
 * ```ts ignore
 * const code = await watchCommand(locks, "", { print: console.log, complain: console.error });
 * ```
 */
export async function watchCommand(
  locks: Stormlock,
  prefix: string,
  options: WatchCommandOptions,
): Promise<number> {
  if (prefix.includes("\uFFFD") || !prefix.isWellFormed()) {
    throw new UsageError(
      "The prefix is not valid text (UTF-8); give the start of a resource name",
    );
  }
  const kinds = options.events === undefined
    ? NOTIFICATION_KINDS.filter((kind) => kind !== "renewed")
    : parseKinds(options.events);
  const since = options.since === undefined
    ? undefined
    : parseSince(options.since);
  const leadText = options.lead ??
    locks.config.sections.notify?.expiring_lead;
  let lead = DEFAULT_EXPIRING_LEAD_MS;
  if (leadText !== undefined) {
    try {
      lead = parseTtl(leadText) * 1000;
    } catch (error) {
      throw new UsageError(
        `Bad ${
          options.lead !== undefined ? "--lead" : "[notify] expiring_lead"
        }: ${(error as Error).message}`,
      );
    }
  }
  if (options.exec !== undefined && options.exec.trim() === "") {
    throw new UsageError("--exec is empty; give a command to run per event");
  }
  const hooks = options.hooks
    ? parseHooks(
      locks.config,
      (message) => options.complain(`warning: ${message}`),
    )
    : [];
  if (options.hooks && hooks.length === 0) {
    options.complain(
      "warning: --hooks given, but the config has no [hook.NAME] section",
    );
  }
  const delivery = new HookDelivery(hooks, { warn: options.complain });
  const backends: { name: string; backend: Backend }[] = [];
  for (const name of backendsInUse(locks.config)) {
    backends.push({ name, backend: await locks.backend(name) });
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  try {
    await watchEvents(backends, {
      prefix,
      since,
      expiringLeadMs: lead,
      signal: stop.signal,
      async onEvent(event: Notification) {
        if (hooks.length > 0) delivery.send(event);
        if (!kinds.includes(event.kind)) return;
        options.print(
          options.json
            ? safeJson(notificationJson(event))
            : notificationLine(event),
        );
        if (options.exec !== undefined) {
          const code = await runEventCommand(
            options.exec,
            event,
            EXEC_TIMEOUT_MS,
          ).catch((error) => {
            if (error instanceof Deno.errors.NotCapable) throw error;
            return -1;
          });
          if (code !== 0) {
            options.complain(
              `--exec ${
                code === -1 ? "could not start" : `exited ${code}`
              } for ${event.kind} event ${event.eventId}`,
            );
          }
        }
      },
      onError: (error, backend) =>
        options.complain(
          `backend "${backend}" failed, retrying: ${error.message}`,
        ),
      onRecover: (backend) =>
        options.complain(`backend "${backend}" answers again`),
      onReady: () =>
        options.complain(
          `watching ${prefix ? `"${shorten(prefix)}"` : "every lock"}${
            hooks.length > 0
              ? `, delivering to ${hooks.length} hook${
                hooks.length === 1 ? "" : "s"
              }`
              : ""
          }; Ctrl-C stops`,
        ),
    });
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
    const left = await delivery.close(hooks.length > 0 ? 3000 : 0);
    if (left > 0) {
      options.complain(`${left} hook deliveries were left unfinished`);
    }
  }
  return 0;
}
