/**
 * Hooks: `[hook.NAME]` sections of the config, and their delivery. A hook
 * posts each event it wants to a URL (signed JSON, or a Slack message) or
 * runs a command with the event JSON on stdin. Delivery is at least once:
 * a failed attempt is retried with backoff for a bounded time. It runs
 * beside the lock operations, never in their way, and its messages name
 * the hook, never its URL or secret.
 *
 * @module
 */
import { createHmac } from "node:crypto";
import { ConfigError } from "../../kit/errors.ts";
import { parseTimeoutMs } from "../../kit/duration.ts";
import { VERSION } from "../../kit/version.ts";
import type { Config } from "../../composition/config.ts";
import { resolveConfigPath } from "../../composition/config.ts";
import { isoTime } from "../output/format.ts";
import {
  type Notification,
  NOTIFICATION_KINDS,
  notificationJson,
  type NotificationKind,
} from "../../composition/events.ts";

/** The header carrying the body's HMAC-SHA256, as `sha256=<hex>`. */
export const SIGNATURE_HEADER = "X-Stormlock-Signature-256";

/** What a hook sends when `events` is not set: everything but renewals. */
export const DEFAULT_HOOK_EVENTS: readonly NotificationKind[] =
  NOTIFICATION_KINDS.filter((kind) => kind !== "renewed");

const HOOK_KEYS = new Set([
  "events",
  "resources",
  "url",
  "format",
  "secret_file",
  "command",
  "retry_for",
  "timeout",
]);

/**
 * One `[hook.NAME]` section, checked.
 * @example
 * ```ts ignore
 * const hooks: Hook[] = parseHooks(config);
 * ```
 */
export interface Hook {
  /** The NAME of `[hook.NAME]`. */
  name: string;
  /** The kinds it wants. */
  events: readonly NotificationKind[];
  /** Resource globs (`*` any text, `?` one character); all when empty. */
  resources: readonly string[];
  /** Where it posts; never printed. */
  url?: string;
  /** How it posts: signed JSON, or a Slack incoming-webhook message. */
  format: "json" | "slack";
  /** The HMAC key, read from `secret_file`; never printed. */
  secret?: string;
  /** A command run with the event JSON on stdin, instead of posting. */
  command?: string;
  /** How long a failing delivery is retried, in ms. */
  retryForMs: number;
  /** The bound on one attempt, in ms. */
  timeoutMs: number;
}

/**
 * Reads every `[hook.NAME]` section of the config.
 *
 * @param config The loaded config.
 * @param warn Receives warnings such as unknown keys.
 * @returns The hooks, in the file's order.
 * @throws {ConfigError} naming the file, section and key of a bad value.
 * @example
 * ```ts
 * import { parseConfig } from "../../composition/config.ts";
 * import { parseHooks } from "./hooks.ts";
 * const config = parseConfig("[hook.ops]\ncommand = cat\n");
 * parseHooks(config)[0].name; // "ops"
 * ```
 */
export function parseHooks(
  config: Config,
  warn: (message: string) => void = () => {},
): Hook[] {
  const file = config.path ?? "<config>";
  const hooks: Hook[] = [];
  for (const [section, values] of Object.entries(config.sections)) {
    if (!section.startsWith("hook.")) continue;
    const name = section.slice("hook.".length);
    const bad = (key: string, why: string) =>
      new ConfigError(`${file} [${section}] ${key}: ${why}`);
    for (const key of Object.keys(values)) {
      if (!HOOK_KEYS.has(key)) {
        warn(
          `${file} [${section}] ${key}: unknown key, ignored (known: ${
            [...HOOK_KEYS].join(", ")
          })`,
        );
      }
    }
    const list = (text: string | undefined) =>
      (text ?? "").split(",").map((item) => item.trim()).filter(Boolean);
    const events = list(values.events);
    for (const kind of events) {
      if (!NOTIFICATION_KINDS.includes(kind as NotificationKind)) {
        throw bad(
          "events",
          `unknown event "${kind}"; choose from ${
            NOTIFICATION_KINDS.join(", ")
          }`,
        );
      }
    }
    const url = values.url?.trim() || undefined;
    const command = values.command?.trim() || undefined;
    if ((url === undefined) === (command === undefined)) {
      throw bad(
        url ? "command" : "url",
        "give either url (to post) or command (to run), not both or neither",
      );
    }
    if (
      url !== undefined && (!/^https?:\/\//i.test(url) || !URL.canParse(url))
    ) {
      // The value itself is not repeated: it may carry a token.
      throw bad("url", "not an http(s) URL");
    }
    const format = values.format?.trim() || "json";
    if (format !== "json" && format !== "slack") {
      throw bad("format", `"${format}" is not json or slack`);
    }
    let secret: string | undefined;
    if (values.secret_file?.trim()) {
      const path = resolveConfigPath(values.secret_file.trim(), {
        name,
        section,
        configPath: config.path,
        configDir: config.path ? dirnameOf(config.path) : undefined,
      });
      try {
        secret = Deno.readTextFileSync(path).replace(/\r?\n$/, "");
      } catch (error) {
        if (error instanceof Deno.errors.NotCapable) throw error;
        throw bad(
          "secret_file",
          `can't read ${path} (${
            (error as Error).name
          }); check the path and its permissions`,
        );
      }
      if (secret.trim() === "") {
        throw bad(
          "secret_file",
          `${path} is empty; put the shared secret in it`,
        );
      }
    }
    const duration = (key: string, fallback: string) => {
      try {
        return parseTimeoutMs(
          values[key]?.trim() || fallback,
          `${section} ${key}`,
        );
      } catch (error) {
        throw bad(key, (error as Error).message);
      }
    };
    hooks.push({
      name,
      events: events.length > 0
        ? events as NotificationKind[]
        : DEFAULT_HOOK_EVENTS,
      resources: list(values.resources),
      ...(url ? { url } : {}),
      ...(command ? { command } : {}),
      format,
      ...(secret !== undefined ? { secret } : {}),
      retryForMs: duration("retry_for", "1h"),
      timeoutMs: duration("timeout", "10s"),
    });
  }
  return hooks;
}

function dirnameOf(path: string): string {
  const at = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  return at <= 0 ? (at === 0 ? "/" : ".") : path.slice(0, at);
}

/**
 * Whether `name` matches a glob: `*` any text (slashes too), `?` one
 * character, everything else itself.
 * @example
 * ```ts
 * import { globMatches } from "./hooks.ts";
 * globMatches("prod/*", "prod/db"); // true
 * ```
 */
export function globMatches(glob: string, name: string): boolean {
  const pattern = glob.replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replaceAll("*", ".*").replaceAll("?", ".");
  return new RegExp(`^${pattern}$`, "s").test(name);
}

/**
 * Whether a hook wants an event.
 * @example
 * ```ts ignore
 * if (wants(hook, event)) deliver(hook, event);
 * ```
 */
export function wants(hook: Hook, event: Notification): boolean {
  return hook.events.includes(event.kind) &&
    (hook.resources.length === 0 ||
      hook.resources.some((glob) => globMatches(glob, event.lease.resource)));
}

/**
 * The longest literal start shared by every hook's resource globs: the
 * prefix a dispatcher must watch.
 * @example
 * ```ts ignore
 * watchPrefix(hooks); // "prod/"
 * ```
 */
export function watchPrefix(hooks: readonly Hook[]): string {
  const starts = hooks.flatMap((hook) =>
    hook.resources.length === 0
      ? [""]
      : hook.resources.map((glob) => glob.split(/[*?]/)[0])
  );
  if (starts.length === 0) return "";
  let prefix = starts[0];
  for (const start of starts) {
    while (!start.startsWith(prefix)) prefix = prefix.slice(0, -1);
  }
  return prefix;
}

/**
 * The HMAC-SHA256 signature header value of a body: `sha256=<hex>`.
 * @example
 * ```ts
 * import { signature } from "./hooks.ts";
 * signature("k", "{}").startsWith("sha256="); // true
 * ```
 */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Slack's mrkdwn escapes. */
function slackText(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(
    ">",
    "&gt;",
  );
}

const SLACK_VERBS: Record<NotificationKind, string> = {
  acquired: "took",
  renewed: "renewed",
  "reason-changed": "changed the reason on",
  released: "released",
  broken: "lost (broken)",
  expired: "let expire",
  expiring: "is about to lose",
  waiting: "is waited for on",
  requested: "is asked to hand over",
};

/**
 * A Slack incoming-webhook message for an event: `text` for
 * notifications, and `blocks` with the details and the link.
 * @example
 * ```ts ignore
 * await fetch(url, { method: "POST", body: JSON.stringify(slackMessage(event)) });
 * ```
 */
export function slackMessage(
  event: Notification,
): { text: string; blocks: unknown[] } {
  const { lease, by } = event;
  const resource = `\`${slackText(lease.resource)}\``;
  const holder = `*${slackText(lease.principal)}*`;
  let text: string;
  switch (event.kind) {
    case "broken":
      text = `:hammer: ${resource}: ${holder}'s lease was broken by *${
        slackText(by?.principal ?? "someone")
      }*${by?.reason ? `: ${slackText(by.reason)}` : ""}`;
      break;
    case "expired":
      text = `:hourglass: ${resource}: ${holder}'s lease expired unreleased`;
      break;
    case "expiring":
      text = `:warning: ${resource}: ${holder}'s lease expires at ${
        isoTime(lease.expires)
      }`;
      break;
    case "requested":
      text = `:raising_hand: ${resource}: *${
        slackText(by?.principal ?? "someone")
      }* asks ${holder} to hand it over${
        by?.reason ? `: ${slackText(by.reason)}` : ""
      }`;
      break;
    case "waiting":
      text = `:hourglass_flowing_sand: ${resource}: *${
        slackText(by?.principal ?? "someone")
      }* is waiting for ${holder}`;
      break;
    default:
      text = `${resource}: ${holder} ${SLACK_VERBS[event.kind]} it`.replace(
        `${holder} took it`,
        `${holder} took the lock`,
      );
  }
  const details = [
    `*${event.kind}*`,
    lease.reason ? `reason: ${slackText(lease.reason)}` : "",
    `fence ${lease.fence}`,
    `expires ${isoTime(lease.expires)}`,
  ].filter(Boolean).join(" · ");
  const blocks: unknown[] = [
    { type: "section", text: { type: "mrkdwn", text } },
    { type: "context", elements: [{ type: "mrkdwn", text: details }] },
  ];
  if (lease.link) {
    blocks.push({
      type: "context",
      elements: [{
        type: "mrkdwn",
        text: `<${lease.link.replaceAll(">", "%3E").replaceAll("|", "%7C")}|${
          slackText(lease.link)
        }>`,
      }],
    });
  }
  return { text, blocks };
}

/**
 * The environment a command gets for an event (beside the event JSON on
 * stdin): `STORMLOCK_EVENT` (the kind), `STORMLOCK_EVENT_ID`,
 * `STORMLOCK_RESOURCE`, `STORMLOCK_HOLDER`, `STORMLOCK_FENCE`,
 * `STORMLOCK_BY` (who acted, when someone did).
 * @example
 * ```ts ignore
 * new Deno.Command("sh", { args: ["-c", cmd], env: eventEnvironment(event) });
 * ```
 */
export function eventEnvironment(event: Notification): Record<string, string> {
  return {
    STORMLOCK_EVENT: event.kind,
    STORMLOCK_EVENT_ID: event.eventId,
    STORMLOCK_RESOURCE: event.lease.resource,
    STORMLOCK_HOLDER: event.lease.principal,
    STORMLOCK_FENCE: String(event.lease.fence),
    STORMLOCK_BACKEND: event.backend,
    ...(event.by ? { STORMLOCK_BY: event.by.principal } : {}),
  };
}

/**
 * Runs `command` through the shell once, with the event JSON on stdin.
 *
 * @returns The command's exit code.
 * @example
 * ```ts ignore
 * const code = await runEventCommand("jq .kind", event, 60_000);
 * ```
 */
export async function runEventCommand(
  command: string,
  event: Notification,
  timeoutMs: number,
): Promise<number> {
  const windows = Deno.build.os === "windows";
  const child = new Deno.Command(windows ? "cmd" : "sh", {
    args: windows ? ["/c", command] : ["-c", command],
    env: eventEnvironment(event),
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already ended */ }
  }, timeoutMs);
  try {
    const writer = child.stdin.getWriter();
    await writer.write(
      new TextEncoder().encode(`${JSON.stringify(notificationJson(event))}\n`),
    ).catch(() => {});
    await writer.close().catch(() => {});
    const status = await child.status;
    return status.code;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * How {@linkcode HookDelivery} reports.
 * @example
 * ```ts
 * import type { DeliveryOptions } from "./hooks.ts";
 * const options: DeliveryOptions = { warn: console.warn };
 * ```
 */
export interface DeliveryOptions {
  /** Receives one-line notes about failed deliveries; never a URL or secret. */
  warn?: (message: string) => void;
  /**
   * The first retry's delay, in ms; it doubles up to a minute.
   * @default 1000
   */
  firstRetryMs?: number;
}

/** A failure, described without anything the failure may have quoted. */
function failureText(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") {
    return "no answer in time";
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (error instanceof TypeError) return "could not connect";
  return (error as Error)?.name ?? "failed";
}

/**
 * Delivers events to hooks, each in its own retry loop, so a dead or slow
 * receiver delays nothing but its own deliveries.
 *
 * @example
 * ```ts ignore
 * const delivery = new HookDelivery(parseHooks(config), { warn: console.error });
 * delivery.send(event);
 * await delivery.close(5000);
 * ```
 */
export class HookDelivery {
  readonly #hooks: readonly Hook[];
  readonly #options: DeliveryOptions;
  readonly #pending = new Map<number, Notification>();
  readonly #stop = new AbortController();
  #next = 0;
  #delivered = 0;

  /**
   * Makes a delivery for `hooks`; nothing is sent until `send`.
   *
   * @param hooks The hooks to deliver to.
   * @param options Where notes go, and the first retry delay.
   */
  constructor(hooks: readonly Hook[], options: DeliveryOptions = {}) {
    this.#hooks = hooks;
    this.#options = options;
  }

  /** The hooks delivered to. */
  get hooks(): readonly Hook[] {
    return this.#hooks;
  }

  /** How many deliveries succeeded. */
  get delivered(): number {
    return this.#delivered;
  }

  /**
   * The time of the oldest event still being delivered, or `undefined`
   * when none is: a dispatcher resumes from there.
   */
  oldestPending(): Date | undefined {
    let oldest: Date | undefined;
    for (const event of this.#pending.values()) {
      if (!oldest || event.at < oldest) oldest = event.at;
    }
    return oldest;
  }

  /** Starts delivering `event` to every hook that wants it; returns at once. */
  send(event: Notification): void {
    for (const hook of this.#hooks) {
      if (!wants(hook, event)) continue;
      const key = this.#next++;
      this.#pending.set(key, event);
      this.#deliver(hook, event).finally(() => this.#pending.delete(key));
    }
  }

  async #deliver(hook: Hook, event: Notification): Promise<void> {
    const started = Date.now();
    let delayMs = this.#options.firstRetryMs ?? 1000;
    let said = "";
    for (let attempt = 1;; attempt++) {
      if (this.#stop.signal.aborted) return;
      const outcome = await this.#attempt(hook, event).catch((error) => ({
        retry: true,
        why: failureText(error),
      }));
      if (outcome === "ok") {
        this.#delivered++;
        if (said) {
          this.#warn(
            `hook "${hook.name}": delivered ${event.kind} event ${event.eventId} after ${attempt} attempts`,
          );
        }
        return;
      }
      if (!outcome.retry || Date.now() - started + delayMs > hook.retryForMs) {
        this.#warn(
          `hook "${hook.name}": gave up on ${event.kind} event ${event.eventId} after ${attempt} attempt${
            attempt === 1 ? "" : "s"
          }: ${outcome.why}`,
        );
        return;
      }
      if (outcome.why !== said) {
        this.#warn(
          `hook "${hook.name}": ${outcome.why}; retrying ${event.kind} event ${event.eventId}`,
        );
        said = outcome.why;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, delayMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#stop.signal.addEventListener("abort", done, { once: true });
      });
      delayMs = Math.min(60_000, delayMs * 2);
    }
  }

  async #attempt(
    hook: Hook,
    event: Notification,
  ): Promise<"ok" | { retry: boolean; why: string }> {
    if (hook.command) {
      const code = await runEventCommand(hook.command, event, hook.timeoutMs);
      return code === 0 ? "ok" : { retry: true, why: `command exited ${code}` };
    }
    const body = JSON.stringify(
      hook.format === "slack" ? slackMessage(event) : notificationJson(event),
    );
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": `stormlock/${VERSION}`,
      "x-stormlock-event": event.kind,
      "x-stormlock-event-id": event.eventId,
    };
    if (hook.secret !== undefined) {
      headers[SIGNATURE_HEADER.toLowerCase()] = signature(hook.secret, body);
    }
    const response = await fetch(hook.url!, {
      method: "POST",
      headers,
      body,
      redirect: "manual",
      signal: AbortSignal.any([
        AbortSignal.timeout(hook.timeoutMs),
        this.#stop.signal,
      ]),
    });
    await response.body?.cancel().catch(() => {});
    if (response.status >= 200 && response.status < 300) return "ok";
    const retry = response.status >= 500 || response.status === 429 ||
      response.status === 408;
    return { retry, why: `answered HTTP ${response.status}` };
  }

  #warn(message: string): void {
    try {
      this.#options.warn?.(message);
    } catch { /* notes are best effort */ }
  }

  /**
   * Waits up to `graceMs` for deliveries under way, then stops retrying.
   * @returns How many deliveries were left unfinished.
   */
  async close(graceMs = 0): Promise<number> {
    const deadline = Date.now() + graceMs;
    while (this.#pending.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const left = this.#pending.size;
    this.#stop.abort();
    return left;
  }
}
