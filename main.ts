/**
 * The `stormlock` CLI: one table declares every command with its
 * arguments and flags; parsing, `--help`, per-command flag checks and
 * shell completions all come from it. The only place that writes to the
 * terminal or exits.
 *
 * @module
 */
import { parseArgs } from "parse-args";
// Only what every command needs is imported up front; the store, `run`
// and `serve` load when a command uses them, so --version and --help read
// a handful of files.
import { LockHeldError, StormlockError, UsageError } from "./lib/kit/errors.ts";
import { printable, shorten } from "./lib/kit/text.ts";
import { VERSION } from "./lib/kit/version.ts";
import type { StormlockErrorCode } from "./lib/kit/errors.ts";
import type { Lease } from "./lib/kit/types.ts";
import type { Lock, Stormlock, WaitState } from "./lib/lock.ts";
import {
  eventJson,
  heldMessage,
  isoTime,
  leaseJson,
  localTime,
  relative,
  safeJson,
  span,
  table,
} from "./lib/format.ts";

/** Exit statuses; documented in `--help` and the README. */
const EXIT = {
  ok: 0,
  no: 1,
  held: 2,
  notHeld: 3,
  usage: 64,
  internal: 70,
  unavailable: 69,
  output: 74,
  lost: 75,
  config: 78,
} as const;

const EXIT_BY_CODE: Record<StormlockErrorCode, number> = {
  LOCK_HELD: EXIT.held,
  LEASE_NOT_HELD: EXIT.notHeld,
  USAGE: EXIT.usage,
  BACKEND_UNAVAILABLE: EXIT.unavailable,
  CONFIG: EXIT.config,
};

const EXIT_HELP = `Exit codes:
  0   success
  1   a negative answer: not held, or no current lease
  2   the lock is held by someone else (the holder goes to stderr)
  3   the lease is expired, released or broken; nothing was changed
  64  usage error
  69  backend unavailable (an acquire whose answer was lost says so, with the
      lease id it may have taken)
  70  internal error
  74  the answer could not be written to stdout (an acquired lease is
      released first)
  75  run: the lease was lost (broken, not renewed in time, or max_hold
      reached) and the command was stopped
  78  config error`;

const ENVIRONMENT_HELP = `Environment:
  STORMLOCK_CONFIG                   the config file, if -c is not given
  STORMLOCK_DEBUG=1                  add stack traces to errors
  STORMLOCK_ALLOW_IMPORT=HOST        let https: plugins load from HOST
  STORMLOCK_ALLOW_PACKAGE_PLUGINS=1  let npm: and jsr: plugins load
  STORMLOCK_PLUGIN_LOADER=data       load plugins as the compiled binary does
  STORMLOCK_SERVE_TOKEN=TOKEN        the token serve requires (instead of --token)
  TZ                                 the time zone of times shown to people`;

/** One flag: its parser type, short name, value name and help line. */
interface Flag {
  type: "string" | "boolean";
  short?: string;
  value?: string;
  help: string;
}

/** Every flag, declared once. */
const FLAGS = {
  config: {
    type: "string",
    short: "c",
    value: "FILE",
    help:
      "config file; otherwise $STORMLOCK_CONFIG, ./.stormlock.cfg,\n$XDG_CONFIG_HOME/stormlock.cfg, ~/.stormlock.cfg, or none\n(embedded SQLite, principal $USER@hostname, ttl 1h)",
  },
  help: { type: "boolean", short: "h", help: "show help" },
  version: { type: "boolean", short: "V", help: "show the version" },
  ttl: {
    type: "string",
    short: "t",
    value: "TTL",
    help:
      "lease duration, e.g. 30s, 10m, 1h30m, 2 days, 1w\n(default: the config's ttl, else 1h; at most 365 days)",
  },
  wait: {
    type: "string",
    short: "w",
    value: "TIME",
    help:
      "if the lock is held, wait up to TIME for it (e.g. 10m),\nsaying on stderr whom it waits for",
  },
  reason: {
    type: "string",
    short: "r",
    value: "TEXT",
    help: "why; stored with the lease and shown to others",
  },
  link: {
    type: "string",
    value: "URL",
    help:
      "an http(s) link for more (default: the CI run, from GitHub\nActions, GitLab, Jenkins, Buildkite or CircleCI variables)",
  },
  "id-only": { type: "boolean", short: "i", help: "print only the lease id" },
  long: {
    type: "boolean",
    short: "l",
    help: "print the lease for people: holder, reason, times, fence",
  },
  json: { type: "boolean", help: "print the answer as JSON (see the README)" },
  limit: {
    type: "string",
    short: "n",
    value: "N",
    help: "show at most N events (default 20)",
  },
  "kill-after": {
    type: "string",
    value: "TIME",
    help:
      "when the lease is lost, send SIGKILL this long after SIGTERM\n(default 10s)",
  },
  "max-hold": {
    type: "string",
    value: "TIME",
    help:
      "give the lease up after TIME, as if lost (default: the\nconfig's max_hold, else no limit)",
  },
  yes: {
    type: "boolean",
    short: "y",
    help: "do not ask; required when stdin is not a terminal",
  },
  listen: {
    type: "string",
    value: "ADDR",
    help:
      "where serve listens (default 127.0.0.1:7878); any address\nbut loopback needs a token",
  },
  token: {
    type: "string",
    value: "TOKEN",
    help:
      "the bearer token every /api call must send (default:\n$STORMLOCK_SERVE_TOKEN, which keeps it out of ps)",
  },
  "allow-break": {
    type: "boolean",
    help: "let the page and API break leases (needs a token)",
  },
  events: {
    type: "string",
    value: "KINDS",
    help:
      "only these kinds, comma-separated: acquired, renewed,\nreason-changed, released, broken, expired, expiring,\nwaiting, requested (default: all but renewed)",
  },
  exec: {
    type: "string",
    value: "CMD",
    help:
      "run CMD (through the shell) once per event, with the event\nJSON on stdin and STORMLOCK_EVENT, STORMLOCK_RESOURCE, ... set",
  },
  since: {
    type: "string",
    value: "POINT",
    help:
      "also send recorded events from POINT on: an event id, a\ntime (2026-12-03T10:00:00Z) or a duration ago (30m)",
  },
  hooks: {
    type: "boolean",
    help: "also deliver the config's [hook.NAME] sections",
  },
  lead: {
    type: "string",
    value: "TIME",
    help:
      "send expiring this long before a lease's TTL ends (default:\n[notify] expiring_lead, else 10m)",
  },
} as const satisfies Record<string, Flag>;

type FlagName = keyof typeof FLAGS;
type Values = { [K in FlagName]?: K extends "config" ? string : unknown };
const GLOBAL_FLAGS: FlagName[] = ["config", "help", "version"];

/** What a command's `run` gets. */
interface Context {
  args: string[];
  flags: Record<string, string | boolean | undefined>;
  locks: Stormlock;
  /** The lock of the first argument, opened on first use. */
  lock(): Promise<Lock>;
}

/** One command, declared once. */
interface Command {
  args: string[];
  flags: FlagName[];
  /** Flags that exclude each other. */
  excludes?: [FlagName, FlagName][];
  summary: string;
  /** Commands that need no config or backend. */
  offline?: boolean;
  run(context: Context): Promise<number>;
}

/** The CI run's link, from the environment. */
async function ciLink(): Promise<string | undefined> {
  return (await import("./lib/config.ts")).ciLink();
}

/** Writes all of `text` to stdout, or throws an {@linkcode OutputError}. */
function writeOut(text: string): void {
  const bytes = new TextEncoder().encode(text);
  try {
    for (let done = 0; done < bytes.length;) {
      done += Deno.stdout.writeSync(bytes.subarray(done));
    }
  } catch (error) {
    throw new OutputError(error, "nothing else was changed");
  }
}

function print(line: string): void {
  writeOut(`${line}\n`);
}

/** Writes one line to stderr; multi-line client messages are folded. */
function complain(message: string): void {
  try {
    console.error(`stormlock: ${printable(message.replace(/\s*\n\s*/g, " "))}`);
  } catch {
    // Exit codes never depend on whether stderr can be written.
  }
}

/**
 * Reports a wait on stderr: on a terminal, one status line updated in
 * place; elsewhere, a plain line only when something changes.
 */
function waitReporter(wait: string) {
  const terminal = (() => {
    try {
      return Deno.stderr.isTerminal();
    } catch {
      return false;
    }
  })();
  let said = "";
  let drawn = false;
  const show = (key: string, line: string) => {
    if (terminal) {
      const width = Deno.consoleSize?.().columns ?? 100;
      const text = `stormlock: ${printable(line)}`.slice(0, width - 1);
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${text}`));
        drawn = true;
      } catch { /* exit codes never depend on stderr */ }
    } else if (key !== said) complain(line);
    said = key;
  };
  return {
    onWait(holder: Lease, state: WaitState) {
      const place = state.position === 0
        ? "next in line"
        : `${state.position} ahead of you (${state.waiting} waiting)`;
      const about = state.queued
        ? `"${shorten(holder.resource)}" is free, but earlier waiters go first`
        : heldMessage(holder).replace(/; if it is stale: .*$/, "");
      show(
        `${holder.id} ${state.position} ${state.queued}`,
        `waiting up to ${wait}: ${about}; ${place}; waited ${
          span(state.waitedMs)
        }`,
      );
    },
    onRetry(error: Error) {
      show(
        `retry ${error.message}`,
        `waiting up to ${wait}: the backend failed, retrying: ${error.message}`,
      );
    },
    done() {
      if (!drawn) return;
      try {
        Deno.stderr.writeSync(new TextEncoder().encode("\r\x1b[K"));
      } catch { /* nothing to tidy */ }
    },
  };
}

function leaseDetails(lease: Lease): string {
  const now = Date.now();
  const lines = [
    ["resource", printable(lease.resource)],
    ["holder", printable(lease.principal)],
    ...(lease.host ? [["host", printable(lease.host)]] : []),
    ...(lease.reason ? [["reason", printable(lease.reason)]] : []),
    ...(lease.link ? [["link", printable(lease.link)]] : []),
    ["since", `${localTime(lease.created)}, ${relative(lease.created, now)}`],
    ["expires", `${localTime(lease.expires)}, ${relative(lease.expires, now)}`],
    ["fence", String(lease.fence)],
    ["lease", lease.id],
  ];
  return lines.map(([key, value]) => `${`${key}:`.padEnd(10)}${value}`)
    .join("\n");
}

/** Reads one line from a terminal's stdin, after asking on stderr. */
async function ask(question: string): Promise<string> {
  try {
    Deno.stderr.writeSync(new TextEncoder().encode(question));
  } catch { /* still read the answer */ }
  const buffer = new Uint8Array(1024);
  let text = "";
  while (!text.includes("\n")) {
    const read = await Deno.stdin.read(buffer);
    if (read === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, read));
  }
  return text.trim();
}

function parseLimit(text: string | undefined): number {
  if (text === undefined) return 20;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 100_000) {
    throw new UsageError(
      `Bad --limit "${
        shorten(text, 20)
      }": give a whole number from 1 to 100000`,
    );
  }
  return Number(text);
}

const COMMANDS: Record<string, Command> = {
  acquire: {
    args: ["RESOURCE"],
    flags: ["ttl", "wait", "reason", "link", "json"],
    summary:
      "Take the lock and print only the lease id (or the lease, with --json).\n" +
      "If someone else holds it, print nothing on stdout, name the holder on\n" +
      "stderr and exit 2.",
    async run({ lock, flags }) {
      const opened = await lock();
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      const lease = await opened.acquire(flags.ttl as string | undefined, {
        wait,
        reason: flags.reason as string | undefined,
        link: (flags.link as string | undefined) ?? await ciLink(),
        onWait: reporter.onWait,
        onRetry: reporter.onRetry,
      }).finally(reporter.done);
      try {
        print(flags.json ? safeJson(leaseJson(lease)) : lease.id);
      } catch (error) {
        // Nobody would have the id: give the lease back.
        const released = await opened.release(lease.id).then(
          () => "the lease was released",
          () => `releasing lease ${lease.id} failed too; it expires on its own`,
        );
        throw new OutputError((error as Error).cause ?? error, released);
      }
      return EXIT.ok;
    },
  },
  release: {
    args: ["RESOURCE", "LEASE_ID"],
    flags: ["json"],
    summary: "Release the lease. Exit 3 if it is not the current lease.",
    async run({ lock, args: [resource, leaseId], flags }) {
      await (await lock()).release(leaseId);
      if (flags.json) {
        print(safeJson({ resource, id: leaseId, released: true }));
      }
      return EXIT.ok;
    },
  },
  renew: {
    args: ["RESOURCE", "LEASE_ID"],
    flags: ["ttl", "reason", "json"],
    summary:
      "Make the lease expire TTL from now, and change its reason if --reason\n" +
      "is given. Exit 3 if it is not the current lease.",
    async run({ lock, args: [, leaseId], flags }) {
      const reason = flags.reason as string | undefined;
      const opened = await lock();
      const lease = await opened.renew(
        leaseId,
        flags.ttl as string | undefined,
        reason === undefined ? {} : { reason },
      );
      const request = await opened.handOverRequest(lease).catch(() => null);
      if (request) {
        const { requestNote } = await import("./lib/run.ts");
        complain(requestNote(request));
      }
      if (flags.json) print(safeJson(leaseJson({ ...lease, request })));
      return EXIT.ok;
    },
  },
  current: {
    args: ["RESOURCE"],
    flags: ["id-only", "long", "json"],
    excludes: [["id-only", "json"], ["id-only", "long"], ["long", "json"]],
    summary:
      "Print the current lease: principal, created time (ISO 8601) and lease\n" +
      "id, tab-separated. Exit 1 if the resource is free (--json prints null).",
    async run({ lock, args: [resource], flags }) {
      const opened = await lock();
      const lease = await opened.current();
      if (!lease) {
        if (flags.json) print("null");
        complain(`no current lease on "${shorten(resource)}"`);
        return EXIT.no;
      }
      if (flags["id-only"]) print(lease.id);
      else if (flags.json || flags.long) {
        const waiting = await opened.waiting();
        const request = await opened.handOverRequest(lease);
        if (flags.json) {
          print(safeJson(leaseJson({ ...lease, waiting, request })));
        } else {
          print(leaseDetails(lease));
          if (waiting.length > 0) {
            print(
              `${"waiting:".padEnd(10)}${
                waiting.map((w) => printable(w.principal)).join(", ")
              }`,
            );
          }
          if (request) {
            print(
              `${"request:".padEnd(10)}${printable(request.principal)}${
                request.reason ? `: ${printable(request.reason)}` : ""
              } (${relative(request.created)})`,
            );
          }
        }
      } else {
        print(
          [printable(lease.principal), isoTime(lease.created), lease.id]
            .join("\t"),
        );
      }
      return EXIT.ok;
    },
  },
  "is-held": {
    args: ["RESOURCE", "LEASE_ID"],
    flags: ["json"],
    summary:
      "Exit 0 if the lease is the current one, else 1; exit 3 if it was\n" +
      "broken, naming who broke it. Prints nothing without --json.",
    async run({ lock, args: [, leaseId], flags }) {
      const held = await (await lock()).isHeld(leaseId);
      if (flags.json) print(safeJson({ held }));
      return held ? EXIT.ok : EXIT.no;
    },
  },
  list: {
    args: ["[PREFIX]"],
    flags: ["json"],
    summary:
      "List every live lock whose name starts with PREFIX, on every backend\n" +
      "the config uses: resource, holder, reason, since, expires, fence.",
    async run({ locks, args: [prefix = ""], flags }) {
      if (prefix.includes("\uFFFD") || !prefix.isWellFormed()) {
        throw new UsageError(
          "The prefix is not valid text (UTF-8); give the start of a resource name",
        );
      }
      const leases = await locks.list(prefix);
      if (flags.json) {
        print(safeJson(leases.map(leaseJson)));
        return EXIT.ok;
      }
      if (leases.length === 0) {
        complain(`no live locks${prefix ? ` under "${shorten(prefix)}"` : ""}`);
        return EXIT.ok;
      }
      const many = new Set(leases.map((lease) => lease.backend)).size > 1;
      const queued = leases.some((lease) => lease.waiting.length > 0);
      const asked = leases.some((lease) => lease.request);
      const now = Date.now();
      print(table(
        [
          ...(many ? ["BACKEND"] : []),
          "RESOURCE",
          "HOLDER",
          "REASON",
          "SINCE",
          "EXPIRES",
          "FENCE",
          ...(queued ? ["WAITING"] : []),
          ...(asked ? ["REQUESTED BY"] : []),
        ],
        leases.map((lease) => [
          ...(many ? [lease.backend] : []),
          lease.resource,
          lease.principal,
          lease.reason ?? "",
          `${localTime(lease.created)} ${relative(lease.created, now)}`,
          `${localTime(lease.expires)} ${relative(lease.expires, now)}`,
          String(lease.fence),
          ...(queued ? [String(lease.waiting.length)] : []),
          ...(asked ? [lease.request?.principal ?? ""] : []),
        ]),
      ));
      return EXIT.ok;
    },
  },
  run: {
    args: ["RESOURCE", "-- COMMAND", "[ARGS...]"],
    flags: ["ttl", "wait", "reason", "link", "kill-after", "max-hold"],
    summary:
      "Take the lock (waiting with --wait), run COMMAND with STORMLOCK_RESOURCE,\n" +
      "STORMLOCK_LEASE_ID and STORMLOCK_FENCE set, renew the lease every TTL/3\n" +
      "(TTL at least 3s), and release it when COMMAND ends. Exit with COMMAND's\n" +
      "status (128+N if signal N ended it). SIGINT, SIGTERM and SIGHUP are\n" +
      "passed on to COMMAND. If the lease is lost (broken, not renewed before\n" +
      "it would expire, or max_hold reached), COMMAND's process group gets\n" +
      "SIGTERM, then SIGKILL after --kill-after, and run exits 75.\n" +
      "COMMAND's own status may also be 2, 64, 69, 75 or 78: when run itself\n" +
      'fails or loses the lease, stderr says so on a line starting "stormlock:".\n' +
      "On Windows only COMMAND itself is stopped, not its children.",
    async run({ lock, args: [, ...command], flags }) {
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      try {
        const { commandArgv, runCommand } = await import("./lib/run.ts");
        return await runCommand(await lock(), commandArgv(Deno.args, command), {
          ttl: flags.ttl as string | undefined,
          wait,
          reason: flags.reason as string | undefined,
          link: (flags.link as string | undefined) ?? await ciLink(),
          killAfter: flags["kill-after"] as string | undefined,
          maxHold: flags["max-hold"] as string | undefined,
          warn: complain,
          onWait: reporter.onWait,
          onRetry: reporter.onRetry,
        });
      } catch (error) {
        const { LeaseLostError } = await import("./lib/hold.ts");
        if (!(error instanceof LeaseLostError)) throw error;
        complain(error.message);
        return EXIT.lost;
      }
    },
  },
  break: {
    args: ["RESOURCE", "[LEASE_ID]"],
    flags: ["reason", "yes", "json"],
    summary:
      "End someone else's lease, recording who broke it and why (--reason is\n" +
      "required). Without LEASE_ID, show the holder and ask first; with no\n" +
      "terminal, --yes is needed. Never ends a lease taken after you looked.",
    async run({ lock, args: [resource, leaseId], flags }) {
      const reason = flags.reason as string | undefined;
      if (reason === undefined || reason.trim() === "") {
        throw new UsageError(
          `break needs --reason TEXT: say why the lease is stale, e.g. stormlock break ${resource} --reason "job died"`,
        );
      }
      const opened = await lock();
      let id = leaseId;
      if (id === undefined) {
        const holder = await opened.current();
        if (!holder) {
          complain(
            `no current lease on "${shorten(resource)}"; nothing to break`,
          );
          return EXIT.no;
        }
        if (!flags.yes) {
          if (!Deno.stdin.isTerminal()) {
            throw new UsageError(
              "break without LEASE_ID asks first, but stdin is not a terminal; add --yes, or give the LEASE_ID",
            );
          }
          complain(`about to break: ${heldMessage(holder)}`);
          const answer = await ask("stormlock: break this lease? [y/N] ");
          if (!/^y(es)?$/i.test(answer)) {
            complain("nothing was broken");
            return EXIT.no;
          }
        }
        id = holder.id;
      }
      const broken = await opened.breakLease(id, reason);
      if (flags.json) print(safeJson(leaseJson(broken)));
      else {
        complain(
          `broke the lease of ${shorten(broken.principal)} on "${
            shorten(resource)
          }" (fence ${broken.fence})`,
        );
      }
      return EXIT.ok;
    },
  },
  history: {
    args: ["RESOURCE"],
    flags: ["limit", "json"],
    summary:
      "List the lock's events, newest first: acquired, renewed, released,\n" +
      "reason-changed, expired, broken.",
    async run({ lock, flags }) {
      const events = await (await lock()).history(
        parseLimit(flags.limit as string | undefined),
      );
      if (flags.json) {
        print(safeJson(events.map(eventJson)));
        return EXIT.ok;
      }
      const now = Date.now();
      print(table(
        ["WHEN", "EVENT", "FENCE", "HOLDER", "REASON", "BY"],
        events.map((event) => [
          `${localTime(event.at)} ${relative(event.at, now)}`,
          event.kind,
          String(event.fence),
          event.principal,
          event.reason ?? "",
          event.by ? `${event.by.principal}: ${event.by.reason}` : "",
        ]),
      ));
      return EXIT.ok;
    },
  },
  init: {
    args: ["[RESOURCE]"],
    flags: ["json"],
    summary:
      "Create or upgrade what the backend needs on its server, such as a table,\n" +
      "after checking it answers. Safe to run again. Uses RESOURCE's backend,\n" +
      "else [default]'s.",
    async run({ lock, flags }) {
      const opened = await lock();
      const setup = await opened.init();
      const backend = opened.settings.backend;
      if (flags.json) print(safeJson({ backend, setup }));
      else {
        complain(
          `backend "${backend}" ${
            setup ? "is ready" : "answers and needs no setup"
          }`,
        );
      }
      return EXIT.ok;
    },
  },
  serve: {
    args: [],
    flags: ["listen", "token", "allow-break"],
    summary:
      "Serve a live status page and a JSON API of every lock (read-only unless\n" +
      "--allow-break). Loopback only unless a token is set; with a token,\n" +
      "every /api call needs Authorization: Bearer TOKEN. Delivers the config's\n" +
      "[hook.NAME] sections (one serve at a time does). Stops on Ctrl-C.",
    async run({ locks, flags }) {
      const { serveStatus } = await import("./lib/serve.ts");
      const given = flags.token as string | undefined;
      const token = given ??
        (Deno.env.get("STORMLOCK_SERVE_TOKEN") || undefined);
      const server = serveStatus(locks, {
        listen: flags.listen as string | undefined,
        token,
        allowBreak: flags["allow-break"] === true,
        onError: (error) =>
          complain(
            `internal error in serve: ${(error as Error)?.message ?? error}`,
          ),
      });
      complain(
        `serving ${server.url} (${
          flags["allow-break"] ? "breaking allowed" : "read-only"
        }${token ? ", token required" : ""}); Ctrl-C stops`,
      );
      // Hooks: one active dispatcher across every serve on this store.
      const { startDispatcher } = await import("./lib/dispatch.ts");
      const { localHost } = await import("./lib/config.ts");
      const dispatcher = startDispatcher(locks, {
        principal: `stormlock serve ${server.url} on ${localHost() ?? "?"}`,
        warn: (message) => complain(message),
      });
      server.finished.finally(() => dispatcher.stop());
      const stop = () => {
        server.shutdown();
        dispatcher.stop();
      };
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      try {
        await server.finished;
        await dispatcher.stop();
      } finally {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
      return EXIT.ok;
    },
  },
  watch: {
    args: ["[PREFIX]"],
    flags: ["events", "json", "exec", "since", "hooks", "lead"],
    summary:
      "Stream events of every lock whose name starts with PREFIX as they\n" +
      "happen: one line each, or NDJSON with --json (see docs/notifications.md).\n" +
      "Records an expiry it sees (expired), warns before one (expiring), and\n" +
      "with --hooks delivers the config's hooks. Runs until SIGINT or SIGTERM.",
    async run({ locks, args: [prefix = ""], flags }) {
      const { watchCommand } = await import("./lib/watch_command.ts");
      return await watchCommand(locks, prefix, {
        events: flags.events as string | undefined,
        json: flags.json === true,
        exec: flags.exec as string | undefined,
        since: flags.since as string | undefined,
        hooks: flags.hooks === true,
        lead: flags.lead as string | undefined,
        print,
        complain,
      });
    },
  },
  request: {
    args: ["RESOURCE"],
    flags: ["reason", "json"],
    summary:
      "Ask the holder to hand the lock over (--reason is required): records a\n" +
      "requested event naming you, which current, list, the page, the holder's\n" +
      "run and renew, hooks and watch show. Exit 1 if nobody holds it; exit 2\n" +
      "if someone else has already asked (their request is shown).",
    async run({ lock, args: [resource], flags }) {
      const reason = flags.reason as string | undefined;
      if (reason === undefined || reason.trim() === "") {
        throw new UsageError(
          `request needs --reason TEXT: say why you need it, e.g. stormlock request ${resource} --reason "hotfix"`,
        );
      }
      const asked = await (await lock()).request(reason);
      if (!asked) {
        if (flags.json) print("null");
        complain(
          `nobody holds "${shorten(resource)}"; take it with stormlock acquire`,
        );
        return EXIT.no;
      }
      const { holder, request, mine } = asked;
      if (flags.json) {
        print(safeJson({ ...leaseJson({ ...holder, request }), asked: mine }));
      }
      complain(
        mine
          ? `asked ${shorten(holder.principal)} to hand over "${
            shorten(resource)
          }"`
          : `${shorten(request.principal)} already asked ${
            shorten(holder.principal)
          } for "${shorten(resource)}"${
            request.reason ? `: ${shorten(request.reason)}` : ""
          }; yours was not recorded`,
      );
      return mine ? EXIT.ok : EXIT.held;
    },
  },
  completions: {
    args: ["SHELL"],
    flags: [],
    offline: true,
    summary: "Print a completion script for bash, zsh or fish.",
    run({ args: [shell] }) {
      const script = completions(shell);
      print(script);
      return Promise.resolve(EXIT.ok);
    },
  },
  help: {
    args: ["[COMMAND]"],
    flags: [],
    offline: true,
    summary: "Show help for every command, or for one.",
    run({ args: [name] }) {
      print(name === undefined ? mainHelp() : commandHelp(commandNamed(name)));
      return Promise.resolve(EXIT.ok);
    },
  },
};

/** stdout could not take the answer. */
class OutputError extends Error {
  constructor(cause: unknown, done: string) {
    super(
      `could not write the answer to stdout (${
        (cause as Error)?.message ?? cause
      }); ${done}`,
      { cause },
    );
  }
}

function usageOf(name: string): string {
  const command = COMMANDS[name];
  const flags = command.flags.map((flag) => {
    const spec: Flag = FLAGS[flag];
    return `[--${flag}${spec.value ? ` ${spec.value}` : ""}]`;
  });
  return ["stormlock [-c FILE]", name, ...flags, ...command.args].join(" ");
}

function flagHelp(names: FlagName[]): string {
  return names.map((name) => {
    const spec: Flag = FLAGS[name];
    const label = `  ${spec.short ? `-${spec.short}, ` : "    "}--${name}${
      spec.value ? ` ${spec.value}` : ""
    }`;
    const [first, ...rest] = spec.help.split("\n");
    return [
      `${label.padEnd(22)} ${first}`,
      ...rest.map((line) => `${" ".repeat(23)}${line}`),
    ].join("\n");
  }).join("\n");
}

function mainHelp(): string {
  return [
    "stormlock: a lease-based lock for operators and scripts",
    "",
    "Usage:",
    ...Object.keys(COMMANDS).map((name) => `  ${usageOf(name)}`),
    "",
    'Run "stormlock COMMAND --help" (or "stormlock help COMMAND") for one command.',
    "",
    "Options for every command:",
    flagHelp(GLOBAL_FLAGS),
    "",
    ENVIRONMENT_HELP,
    "",
    EXIT_HELP,
  ].join("\n");
}

function commandHelp(name: string): string {
  const command = COMMANDS[name];
  return [
    `Usage: ${usageOf(name)}`,
    "",
    command.summary,
    "",
    ...(command.flags.length > 0
      ? ["Options:", flagHelp(command.flags), ""]
      : []),
    "Options for every command:",
    flagHelp(GLOBAL_FLAGS),
    "",
    ENVIRONMENT_HELP,
    "",
    EXIT_HELP,
  ].join("\n");
}

function commandNamed(name: string): string {
  if (!Object.hasOwn(COMMANDS, name)) {
    throw new UsageError(
      `Unknown command "${shorten(name, 40)}"; choose one of ${
        Object.keys(COMMANDS).join(", ")
      }`,
    );
  }
  return name;
}

/** A completion script for `shell`, from the command table. */
function completions(shell: string): string {
  const names = Object.keys(COMMANDS);
  const flagsOf = (name: string) =>
    [...COMMANDS[name].flags, ...GLOBAL_FLAGS].map((flag) => `--${flag}`);
  switch (shell) {
    case "bash":
      return [
        '# stormlock completions for bash: eval "$(stormlock completions bash)"',
        "_stormlock() {",
        '  local cur=${COMP_WORDS[COMP_CWORD]} cmd="" i',
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        "    case ${COMP_WORDS[i]} in -c|--config) ((i++)) ;; -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac",
        "  done",
        '  case "$cmd" in',
        ...names.map((name) =>
          `    ${name}) COMPREPLY=($(compgen -W "${flagsOf(name).join(" ")}${
            name === "completions" ? " bash zsh fish" : ""
          }${name === "help" ? ` ${names.join(" ")}` : ""}" -- "$cur")) ;;`
        ),
        `    *) COMPREPLY=($(compgen -W "${names.join(" ")} ${
          GLOBAL_FLAGS.map((f) => `--${f}`).join(" ")
        }" -- "$cur")) ;;`,
        "  esac",
        "}",
        "complete -F _stormlock stormlock",
      ].join("\n");
    case "zsh":
      return [
        "#compdef stormlock",
        "# stormlock completions for zsh: stormlock completions zsh > ~/.zfunc/_stormlock",
        "_stormlock() {",
        "  local -a commands",
        `  commands=(${
          names.map((name) =>
            `'${name}:${
              COMMANDS[name].summary.split(/[.\n]/)[0].replaceAll("'", "")
            }'`
          ).join(" ")
        })`,
        "  if (( CURRENT == 2 )); then _describe command commands; return; fi",
        "  case $words[2] in",
        ...names.map((name) =>
          `    ${name}) compadd -- ${flagsOf(name).join(" ")}${
            name === "completions" ? " bash zsh fish" : ""
          } ;;`
        ),
        "  esac",
        "}",
        'compdef _stormlock stormlock 2>/dev/null || _stormlock "$@"',
      ].join("\n");
    case "fish":
      return [
        "# stormlock completions for fish: stormlock completions fish > ~/.config/fish/completions/stormlock.fish",
        "complete -c stormlock -f",
        ...names.map((name) =>
          `complete -c stormlock -n __fish_use_subcommand -a ${name} -d '${
            COMMANDS[name].summary.split(/[.\n]/)[0].replaceAll("'", "")
          }'`
        ),
        ...names.flatMap((name) =>
          COMMANDS[name].flags.map((flag) => {
            const spec: Flag = FLAGS[flag];
            return `complete -c stormlock -n '__fish_seen_subcommand_from ${name}' -l ${flag}${
              spec.short ? ` -s ${spec.short}` : ""
            }${spec.value ? " -r" : ""} -d '${
              spec.help.split("\n")[0].replaceAll("'", "")
            }'`;
          })
        ),
        "complete -c stormlock -n '__fish_seen_subcommand_from completions' -a 'bash zsh fish'",
      ].join("\n");
    default:
      throw new UsageError(
        `No completions for "${shorten(shell, 20)}"; choose bash, zsh or fish`,
      );
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(
        Object.entries(FLAGS).map(([name, spec]: [string, Flag]) => [
          name,
          { type: spec.type, ...(spec.short ? { short: spec.short } : {}) },
        ]),
      ),
    });
  } catch (error) {
    const message = (error as Error).message;
    const ambiguous = /Option '(--[\w-]+)' argument is ambiguous/.exec(message);
    const unknown = /Unknown option '([^']*)'/.exec(message);
    throw new UsageError(
      ambiguous
        ? `${ambiguous[1]} needs a value; write ${
          ambiguous[1]
        }=VALUE for a value that starts with "-"`
        : unknown
        ? `Unknown option "${
          shorten(unknown[1], 40)
        }"; run "stormlock --help" for the options (a value that starts with "-" goes as --flag=VALUE)`
        : `${message.replace(/\.$/, "")}; run "stormlock --help" for usage`,
    );
  }
}

/** Refuses flags the command does not take, and conflicting ones. */
function checkFlags(name: string, values: Values): void {
  const command = COMMANDS[name];
  for (const [flag, value] of Object.entries(values)) {
    if (value === undefined || GLOBAL_FLAGS.includes(flag as FlagName)) {
      continue;
    }
    if (!command.flags.includes(flag as FlagName)) {
      throw new UsageError(
        `${name} takes no --${flag}; see "stormlock ${name} --help"`,
      );
    }
  }
  for (const [first, second] of command.excludes ?? []) {
    if (values[first] && values[second]) {
      throw new UsageError(
        `${name} takes --${first} or --${second}, not both`,
      );
    }
  }
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv) as {
    values: Values;
    positionals: string[];
  };
  const [given, ...args] = positionals;
  if (values.version) {
    print(VERSION);
    return EXIT.ok;
  }
  if (given === undefined) {
    if (values.help) {
      print(mainHelp());
      return EXIT.ok;
    }
    throw new UsageError('No command given; run "stormlock --help" for usage');
  }
  const name = commandNamed(given);
  const command = COMMANDS[name];
  if (values.help) {
    print(commandHelp(name));
    return EXIT.ok;
  }
  checkFlags(name, values);
  const required = command.args.filter((arg) => !arg.startsWith("["));
  const variadic = command.args.at(-1)?.endsWith("...]") ?? false;
  if (
    args.length < required.length ||
    (!variadic && args.length > command.args.length)
  ) {
    throw new UsageError(
      `${name} takes ${
        command.args.join(" ")
      }, but got ${args.length} argument${
        args.length === 1 ? "" : "s"
      }; usage: ${usageOf(name)}`,
    );
  }
  if (command.offline) {
    return command.run({
      args,
      flags: values as Context["flags"],
      locks: undefined as unknown as Stormlock,
      lock: () => Promise.reject(new Error("offline command")),
    });
  }
  const { openStormlock } = await import("./lib/lock.ts");
  const locks = await openStormlock({
    path: values.config,
    warn: (message) => complain(`warning: ${message}`),
    allowPackagePlugins:
      Deno.env.get("STORMLOCK_ALLOW_PACKAGE_PLUGINS") === "1",
  });
  try {
    let opened: Promise<Lock> | undefined;
    return await command.run({
      args,
      flags: values as Context["flags"],
      locks,
      lock: () => opened ??= locks.lock(args[0] ?? "default"),
    });
  } finally {
    await locks.close().catch(() => {});
  }
}

function exitCodeFor(error: unknown): number {
  if (error instanceof StormlockError) {
    complain(
      error instanceof LockHeldError
        ? heldMessage(error.holder, Date.now(), error)
        : error.message,
    );
    return EXIT_BY_CODE[error.code];
  }
  if (error instanceof OutputError) {
    complain(error.message);
    return EXIT.output;
  }
  if (error instanceof Deno.errors.NotCapable) {
    complain(`${(error as Error).message}; Stormlock lacks a Deno permission`);
    return EXIT.config;
  }
  complain(
    `internal error: ${
      (error as Error)?.message ?? error
    } (set STORMLOCK_DEBUG=1 for a stack trace, and please report it)`,
  );
  return EXIT.internal;
}

if (import.meta.main) {
  let status: number;
  try {
    status = await run(Deno.args);
  } catch (error) {
    if (Deno.env.get("STORMLOCK_DEBUG") === "1") {
      try {
        console.error(error);
      } catch { /* the exit code still tells */ }
    }
    status = exitCodeFor(error);
  }
  Deno.exit(status);
}
