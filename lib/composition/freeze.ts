/**
 * Freeze windows: times during which matching resources can't be taken.
 *
 * Two sources, checked before every acquire:
 * - recurring windows from `[freeze.NAME]` config sections (cron, duration,
 *   time zone), evaluated by `npm:croner`, loaded only when a config has one;
 * - one-off freezes kept in the store, each as a lease on a reserved
 *   bookkeeping name, `\u001ffreeze\u001fPATTERN`, whose TTL ends with the
 *   window. Any backend that can list keeps them with no new primitive:
 *   the store records `acquired` (frozen) and `broken` (unfrozen, by whom)
 *   in that name's history, and the record lapses on its own at the end.
 *   A window that starts later records its start in the reason, as
 *   `from ISO-TIME: REASON`, since a lease has no field for it.
 *
 * @module
 */
import { bookkeeping } from "../kit/views.ts";
import { INTERNAL_MARK } from "../kit/reserved.ts";
import { parseDurationMs } from "../kit/duration.ts";
import {
  ConfigError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../kit/errors.ts";
import { printable, shellQuote, shorten } from "../kit/text.ts";
import { isoTime, when } from "../kit/time.ts";
import type { Backend, Lease, LeaseEvent } from "../kit/types.ts";
import type { Config } from "./config.ts";
import { backendsInUse, localHost, MAX_TEXT } from "./config.ts";
import type { AcquireOptions, Lock } from "./lock.ts";

/** The reserved prefix of one-off freeze records. */
export const FREEZE_PREFIX = `${INTERNAL_MARK}freeze${INTERNAL_MARK}`;

/** How far ahead upcoming windows are shown. */
export const UPCOMING_MS = 7 * 24 * 3600_000;

/**
 * One freeze window, active or upcoming.
 * @example
 * ```ts
 * import type { FreezeWindow } from "@stormlock/stormlock";
 * const window: FreezeWindow = {
 *   name: "weekend", patterns: ["prod/*"], source: "config",
 *   start: new Date("2026-12-04T17:00:00Z"), end: new Date("2026-12-07T07:00:00Z"),
 *   reason: "weekend freeze",
 * };
 * ```
 */
export interface FreezeWindow {
  /** The config window's name, or a one-off freeze's pattern. */
  name: string;
  /** The resource patterns it covers (`*` any text, `?` one character). */
  patterns: string[];
  /** `config` for `[freeze.NAME]`, `store` for a one-off freeze. */
  source: "config" | "store";
  /** When it starts. */
  start: Date;
  /** When it ends. */
  end: Date;
  /** Why. */
  reason?: string;
  /** Who froze it (one-off freezes). */
  principal?: string;
}

/**
 * A recurring window from a `[freeze.NAME]` section.
 * @example
 * ```ts
 * import type { FreezeRule } from "@stormlock/stormlock";
 * const rule: FreezeRule = {
 *   name: "weekend", patterns: ["prod/*"], cron: "0 18 * * FRI",
 *   durationMs: 62 * 3600_000, zone: "Europe/Berlin",
 * };
 * ```
 */
export interface FreezeRule {
  /** The section's name after `freeze.`. */
  name: string;
  /** Resource patterns. */
  patterns: string[];
  /** When each window starts: a five- or six-field cron expression. */
  cron: string;
  /** How long each window lasts. */
  durationMs: number;
  /** The IANA time zone the cron is read in; the host's when absent. */
  zone?: string;
  /** Why. */
  reason?: string;
}

/**
 * An acquire refused because the resource is frozen: exit 2, like a held
 * lock.
 * @example
 * ```ts ignore
 * try { await lock.acquire(); } catch (e) { if (e instanceof FrozenError) console.log(e.window.end); }
 * ```
 */
export class FrozenError extends StormlockError {
  /** The window that refused. */
  readonly window: FreezeWindow;
  /** The resource asked for. */
  readonly resource: string;

  /**
   * Makes the refusal of `resource` by `window`.
   *
   * @param resource The resource asked for.
   * @param window The window in force.
   * @param now The clock, for the relative end.
   */
  constructor(
    resource: string,
    window: FreezeWindow,
    now: number = Date.now(),
  ) {
    super(
      "LOCK_HELD",
      `"${printable(shorten(resource))}" is frozen by ${
        describeWindow(window)
      }${
        window.reason ? ` (${printable(shorten(window.reason))})` : ""
      } until ${
        when(window.end, now)
      }; to go ahead anyway: --override-freeze --reason TEXT`,
    );
    this.window = window;
    this.resource = resource;
    this.name = "FrozenError";
  }
}

function describeWindow(window: FreezeWindow): string {
  return window.source === "config"
    ? `freeze window "${printable(window.name)}"`
    : `a freeze of "${printable(window.name)}"${
      window.principal ? ` by ${printable(shorten(window.principal))}` : ""
    }`;
}

/**
 * Whether `resource` matches a freeze pattern: `*` is any text (slashes
 * included), `?` one character; anything else matches itself.
 * @example
 * ```ts
 * import { matchesPattern } from "./freeze.ts";
 * matchesPattern("prod/*", "prod/db"); // true
 * matchesPattern("prod/*", "staging/db"); // false
 * ```
 */
export function matchesPattern(pattern: string, resource: string): boolean {
  const source = [...pattern].map((char) =>
    char === "*"
      ? "[\\s\\S]*"
      : char === "?"
      ? "[\\s\\S]"
      : char.replace(/[.+^${}()|[\]\\/-]/g, "\\$&")
  ).join("");
  return new RegExp(`^${source}$`, "u").test(resource);
}

/** Splits `resources = a, b c` into patterns. */
function patternsOf(text: string): string[] {
  return text.split(/[\s,]+/).filter((part) => part !== "");
}

/**
 * Reads every `[freeze.NAME]` section; a bad value is one line naming the
 * file, section and key.
 * @throws {ConfigError} on a missing or bad key.
 * @example
 * ```ts
 * import { parseConfig } from "@stormlock/stormlock";
 * import { freezeRules } from "./freeze.ts";
 * const config = parseConfig("[freeze.w]\nresources = prod/*\ncron = 0 18 * * FRI\nduration = 62h\n");
 * console.log(freezeRules(config)[0].durationMs); // 223200000
 * ```
 */
export function freezeRules(config: Config): FreezeRule[] {
  const file = config.path ?? "<config>";
  const rules: FreezeRule[] = [];
  for (const [section, keys] of Object.entries(config.sections)) {
    if (!section.startsWith("freeze.")) continue;
    const name = section.slice("freeze.".length);
    const where = (key: string) => `${file} [${section}] ${key}`;
    const fail = (key: string, problem: string): never => {
      throw new ConfigError(`${where(key)}: ${problem}`);
    };
    if (name === "") fail("", "the window needs a name, as [freeze.NAME]");
    for (const key of Object.keys(keys)) {
      if (!["resources", "cron", "duration", "zone", "reason"].includes(key)) {
        fail(
          key,
          "unknown key; a window takes resources, cron, duration, zone and reason",
        );
      }
    }
    const patterns = patternsOf(keys.resources ?? "");
    if (patterns.length === 0) {
      fail("resources", "missing; name the resources it freezes, e.g. prod/*");
    }
    const cron = (keys.cron ?? "").trim();
    if (cron === "") {
      fail("cron", "missing; say when each window starts, e.g. 0 18 * * FRI");
    }
    const parts = cron.split(/\s+/).length;
    if (parts !== 5 && parts !== 6) {
      fail(
        "cron",
        `"${
          shorten(cron)
        }" has ${parts} fields; give five (minute hour day month weekday), e.g. 0 18 * * FRI`,
      );
    }
    let durationMs = 0;
    try {
      durationMs = parseDurationMs(keys.duration ?? "", "duration");
    } catch (error) {
      fail(
        "duration",
        keys.duration === undefined
          ? "missing; say how long each window lasts, e.g. 62h"
          : (error as Error).message,
      );
    }
    const zone = keys.zone?.trim() || undefined;
    if (zone !== undefined) {
      try {
        new Intl.DateTimeFormat("en", { timeZone: zone });
      } catch {
        fail(
          "zone",
          `"${
            shorten(zone)
          }" is not a time zone; use a name such as Europe/Berlin`,
        );
      }
    }
    const reason = keys.reason?.trim() || undefined;
    if (reason && reason.length > MAX_TEXT) {
      fail("reason", `it is longer than ${MAX_TEXT} characters`);
    }
    rules.push({ name, patterns, cron, durationMs, zone, reason });
  }
  return rules;
}

/**
 * The windows of `rules` that are active at `now` or start within
 * `aheadMs`, in start order.
 * @throws {ConfigError} when a cron expression is not valid.
 * @example
 * ```ts ignore
 * const windows = await ruleWindows(freezeRules(config), new Date());
 * ```
 */
export async function ruleWindows(
  rules: FreezeRule[],
  now: Date,
  aheadMs = UPCOMING_MS,
): Promise<FreezeWindow[]> {
  if (rules.length === 0) return [];
  const { Cron } = await import("croner");
  const windows: FreezeWindow[] = [];
  for (const rule of rules) {
    let cron;
    try {
      cron = new Cron(rule.cron, {
        paused: true,
        ...(rule.zone ? { timezone: rule.zone } : {}),
      });
    } catch (error) {
      throw new ConfigError(
        `[freeze.${rule.name}] cron: ${
          (error as Error).message.replace(/^CronPattern: /, "")
        }`,
      );
    }
    const window = (start: Date): FreezeWindow => ({
      name: rule.name,
      patterns: rule.patterns,
      source: "config",
      start,
      end: new Date(start.getTime() + rule.durationMs),
      ...(rule.reason ? { reason: rule.reason } : {}),
    });
    // The latest start at or before now has the latest end.
    const last = cron.previousRuns(1, new Date(now.getTime() + 1))[0];
    if (last && last.getTime() + rule.durationMs > now.getTime()) {
      windows.push(window(last));
    }
    const next = cron.nextRun(now);
    if (next && next.getTime() - now.getTime() <= aheadMs) {
      windows.push(window(next));
    }
  }
  return windows.sort((a, b) => a.start.getTime() - b.start.getTime());
}

/** The reason field of a one-off record: `from ISO: REASON` when later. */
function recordReason(from: Date, created: Date, reason: string): string {
  return from.getTime() > created.getTime() + 1000
    ? `from ${isoTime(from)}: ${reason}`
    : reason;
}

/** A one-off record as a window. */
function recordWindow(lease: Lease): FreezeWindow {
  const pattern = lease.resource.slice(FREEZE_PREFIX.length);
  const later = /^from (\S+): ([\s\S]*)$/.exec(lease.reason ?? "");
  const start = later ? new Date(later[1]) : lease.created;
  return {
    name: pattern,
    patterns: [pattern],
    source: "store",
    start: Number.isNaN(start.getTime()) ? lease.created : start,
    end: lease.expires,
    reason: later ? later[2] : lease.reason,
    principal: lease.principal,
  };
}

/**
 * The one-off freezes kept in `backend`, active or upcoming; none when it
 * can't list.
 * @example
 * ```ts ignore
 * const windows = await storedWindows(backend);
 * ```
 */
export async function storedWindows(
  backend: Backend,
): Promise<FreezeWindow[]> {
  // A lock server keeps no freezes yet (docs/lock-models.md).
  if (!backend.capabilities.list || backend.capabilities.authenticated) {
    return [];
  }
  const records = await bookkeeping(backend).list(FREEZE_PREFIX);
  return records.filter((lease) => lease.resource.startsWith(FREEZE_PREFIX))
    .map(recordWindow);
}

/**
 * Parses a freeze time: ISO 8601 with an offset (or `Z`), `now`, or a
 * relative `+2h` / `+30m`.
 * @throws {UsageError} on anything else.
 * @example
 * ```ts
 * import { parseFreezeTime } from "./freeze.ts";
 * parseFreezeTime("+2h", new Date(0)).toISOString(); // "1970-01-01T02:00:00.000Z"
 * ```
 */
export function parseFreezeTime(
  text: string,
  now: Date,
  what = "--until",
): Date {
  const trimmed = text.trim();
  if (trimmed === "now") return now;
  if (trimmed.startsWith("+")) {
    try {
      return new Date(now.getTime() + parseDurationMs(trimmed.slice(1), what));
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  }
  if (
    /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i.test(
      trimmed,
    )
  ) {
    const date = new Date(trimmed);
    if (!Number.isNaN(date.getTime())) return date;
  }
  throw new UsageError(
    `${what} "${
      shorten(printable(text), 40)
    }" is not a time; give ISO 8601 with an offset (2026-12-24T18:00+01:00), now, or +2h`,
  );
}

/** Checks a freeze pattern: a resource name, where `*` and `?` are wild. */
function checkPattern(pattern: string): void {
  if (
    pattern.trim() === "" || pattern.includes(INTERNAL_MARK) ||
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f]/.test(pattern) || pattern.length > 200
  ) {
    throw new UsageError(
      `The pattern "${
        shorten(printable(pattern), 40)
      }" is not a resource pattern; give a name, with * for any text, e.g. prod/*`,
    );
  }
}

/** Refuses a backend that can't keep one-off freezes, in one line. */
function assertKeepsFreezes(backend: Backend): void {
  if (!backend.capabilities.list || backend.capabilities.authenticated) {
    throw new ConfigError(
      `The ${backend.name} backend ${
        backend.capabilities.authenticated
          ? "is a lock server, which keeps no freezes yet"
          : "can't list, so it can't keep freezes"
      }; freeze in the config ([freeze.NAME]) instead`,
    );
  }
}

/**
 * Freezes `pattern` from `from` until `until` in `backend`: one lease on
 * the pattern's reserved name, recorded in its history.
 * @throws {UsageError} on a bad pattern or times.
 * @throws {LockHeldError} when the pattern is frozen already.
 * @example
 * ```ts ignore
 * await freeze(backend, "prod/*", { from: new Date(), until, reason: "release", principal: "ann" });
 * ```
 */
export async function freeze(
  backend: Backend,
  pattern: string,
  options: { from: Date; until: Date; reason: string; principal: string },
  now: Date = new Date(),
): Promise<FreezeWindow> {
  checkPattern(pattern);
  const reason = options.reason.trim();
  if (reason === "" || reason.length > MAX_TEXT) {
    throw new UsageError(
      `A freeze needs a reason of 1 to ${MAX_TEXT} characters; say why, e.g. --reason "release 4.2"`,
    );
  }
  if (options.until.getTime() <= now.getTime() + 1000) {
    throw new UsageError(
      `--until ${
        isoTime(options.until)
      } is not in the future; give a later time`,
    );
  }
  if (options.until.getTime() <= options.from.getTime()) {
    throw new UsageError("--until must be after --from");
  }
  assertKeepsFreezes(backend);
  const ttl = Math.ceil((options.until.getTime() - now.getTime()) / 1000);
  try {
    const lease = await bookkeeping(backend).acquire(
      FREEZE_PREFIX + pattern,
      options.principal,
      ttl,
      {
        host: localHost(),
        reason: recordReason(options.from, now, reason),
      },
    );
    return recordWindow(lease);
  } catch (error) {
    if (!(error instanceof LockHeldError)) throw error;
    const window = recordWindow(error.holder);
    throw new StormlockError(
      "LOCK_HELD",
      `"${printable(shorten(pattern))}" is frozen already: ${
        windowLine(window, now.getTime())
      }; end it first with: stormlock unfreeze ${shellQuote(pattern)}`,
    );
  }
}

/**
 * Ends the one-off freeze of `pattern`, recording who ended it.
 * @returns The window ended, or `null` when there was none.
 * @example
 * ```ts ignore
 * await unfreeze(backend, "prod/*", { principal: "ann", reason: "done" });
 * ```
 */
export async function unfreeze(
  backend: Backend,
  pattern: string,
  by: { principal: string; reason: string },
): Promise<FreezeWindow | null> {
  checkPattern(pattern);
  assertKeepsFreezes(backend);
  const store = bookkeeping(backend);
  const record = await store.current(FREEZE_PREFIX + pattern);
  if (!record) return null;
  await store.breakLease(record.resource, record.id, {
    principal: by.principal,
    host: localHost(),
    reason: by.reason,
  });
  return recordWindow(record);
}

/**
 * The history of the one-off freezes of `pattern`, newest first.
 * @example
 * ```ts ignore
 * const events = await freezeHistory(backend, "prod/*");
 * ```
 */
export function freezeHistory(
  backend: Backend,
  pattern: string,
  limit = 100,
): Promise<LeaseEvent[]> {
  checkPattern(pattern);
  return bookkeeping(backend).history(FREEZE_PREFIX + pattern, limit);
}

/**
 * The windows that cover `resource` at `now`, or every window when
 * `resource` is undefined, split into active and upcoming.
 * @example
 * ```ts ignore
 * const { active } = splitWindows(windows, "prod/db", new Date());
 * ```
 */
export function splitWindows(
  windows: FreezeWindow[],
  resource: string | undefined,
  now: Date,
): { active: FreezeWindow[]; upcoming: FreezeWindow[] } {
  const covering = windows.filter((window) =>
    resource === undefined ||
    window.patterns.some((pattern) => matchesPattern(pattern, resource))
  );
  const t = now.getTime();
  return {
    active: covering.filter((w) =>
      w.start.getTime() <= t && t < w.end.getTime()
    )
      .sort((a, b) => b.end.getTime() - a.end.getTime()),
    upcoming: covering.filter((w) => w.start.getTime() > t),
  };
}

/**
 * A window as `--json` shows it.
 * @example
 * ```ts ignore
 * console.log(JSON.stringify(windowJson(window)));
 * ```
 */
export function windowJson(window: FreezeWindow): Record<string, unknown> {
  return {
    name: window.name,
    source: window.source,
    resources: window.patterns,
    start: isoTime(window.start),
    end: isoTime(window.end),
    reason: window.reason ?? null,
    ...(window.principal ? { principal: window.principal } : {}),
  };
}

/**
 * A window for people: `"weekend" prod/* until 2026-12-07 08:00 (+01:00), in 2d: weekend freeze`.
 * @example
 * ```ts ignore
 * console.error(windowLine(window));
 * ```
 */
export function windowLine(window: FreezeWindow, now = Date.now()): string {
  const started = window.start.getTime() <= now;
  return `${describeWindow(window)} on ${
    window.patterns.map((p) => printable(p)).join(", ")
  } ${started ? "" : `from ${when(window.start, now)} `}until ${
    when(window.end, now)
  }${window.reason ? `: ${printable(shorten(window.reason))}` : ""}`;
}

/**
 * What an acquire checks before it is sent: the windows covering its
 * resource now. With `override`, returns the reason to record;
 * otherwise refuses.
 * @throws {FrozenError} when a window is active and there is no override.
 * @throws {UsageError} on an override without a reason.
 * @example
 * ```ts ignore
 * const reason = await checkFrozen(windows, "prod/db", undefined, new Date());
 * ```
 */
export function checkFrozen(
  windows: FreezeWindow[],
  resource: string,
  override: string | undefined,
  now: Date,
): string | undefined {
  const { active } = splitWindows(windows, resource, now);
  if (override !== undefined && override.trim() === "") {
    throw new UsageError(
      "--override-freeze needs --reason TEXT: say why the freeze must be broken",
    );
  }
  if (active.length === 0) return undefined;
  if (override === undefined) {
    throw new FrozenError(resource, active[0], now.getTime());
  }
  const names = active.map((window) =>
    window.source === "config" ? window.name : `freeze of ${window.name}`
  );
  return shorten(
    `freeze override (${names.join(", ")}): ${override.trim()}`,
    MAX_TEXT,
  );
}

/**
 * Where freezes are read: the config's rules, and the store of the
 * `[default]` section's backend, which keeps the one-off freezes.
 * `Stormlock` is one.
 */
export interface FreezeSource {
  /** The loaded config. */
  readonly config: Config;
  /** Opens a backend by name. */
  backend(name: string): Promise<Backend>;
}

/**
 * Every window, active or starting within a week: config rules and
 * one-off freezes.
 * @example
 * ```ts ignore
 * const windows = await freezeWindows(locks, new Date());
 * ```
 */
export async function freezeWindows(
  source: FreezeSource,
  now: Date,
): Promise<FreezeWindow[]> {
  const rules = await ruleWindows(freezeRules(source.config), now);
  const stored = await storedWindows(await freezeStore(source));
  return [...rules, ...stored.filter((w) => w.end.getTime() > now.getTime())];
}

/** The backend that keeps one-off freezes: the `[default]` one. */
export function freezeStore(source: FreezeSource): Promise<Backend> {
  return source.backend(backendsInUse(source.config)[0]);
}

/**
 * The check every acquire of a `Stormlock` lock runs (`Lock.guard`).
 * @example
 * ```ts ignore
 * lock.guard = freezeGuard(locks);
 * ```
 */
export function freezeGuard(
  source: FreezeSource,
): (lock: Lock, options: AcquireOptions) => Promise<string | undefined> {
  return async (lock, options) => {
    const now = new Date();
    return checkFrozen(
      await freezeWindows(source, now),
      lock.resource,
      options.overrideFreeze,
      now,
    );
  };
}
