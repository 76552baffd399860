/**
 * The `stormlock` CLI: one table declares every command with its
 * arguments and flags; parsing, `--help`, per-command flag checks and
 * shell completions all come from it. The only place that writes to the
 * terminal or exits.
 *
 * @module
 */
// The argument parser (node:util) loads when parsing, so `--version` alone
// answers without it: loading it costs about a fifth of an empty run.
type ParseArgs = typeof import("parse-args").parseArgs;
// Only what every command needs is imported up front; the store, `run`
// and `serve` load when a command uses them, so --version and --help read
// a handful of files.
import {
  LimitMismatchError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "./lib/kit/errors.ts";
import { freeSlots, type HolderOptions } from "./lib/composition/holders.ts";
import { printable, shellQuote, shorten } from "./lib/kit/text.ts";
import { VERSION } from "./lib/kit/version.ts";
import type { StormlockErrorCode } from "./lib/kit/errors.ts";
import type { Lease } from "./lib/kit/types.ts";
import type { Lock, Stormlock, WaitState } from "./lib/composition/lock.ts";
import {
  eventJson,
  fitTable,
  heldMessage,
  holderText,
  isoTime,
  leaseJson,
  localOffset,
  localTime,
  ORIGINAL_FORMATS,
  originalFormat,
  relative,
  safeJson,
  span,
  tableTime,
  when,
} from "./lib/apps/output/format.ts";
import type { TableColumn } from "./lib/apps/output/format.ts";
import { didYouMean } from "./lib/kit/suggest.ts";
import { timeZoneProblem } from "./lib/kit/time.ts";
import { coloursFor } from "./lib/apps/output/colour.ts";

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
  forbidden: 77,
  config: 78,
} as const;

const EXIT_BY_CODE: Record<StormlockErrorCode, number> = {
  LOCK_HELD: EXIT.held,
  LEASE_NOT_HELD: EXIT.notHeld,
  USAGE: EXIT.usage,
  BACKEND_UNAVAILABLE: EXIT.unavailable,
  CONFIG: EXIT.config,
  FORBIDDEN: EXIT.forbidden,
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
      reached); the command was stopped if it still ran
  77  refused by the lock server: no or a bad token, a missing scope or
      resource, or another principal's lease (only break ends it)
  78  config error`;

const ENVIRONMENT_HELP = `Environment:
  STORMLOCK_CONFIG                   the config file, if -c is not given
  STORMLOCK_DEBUG=1                  add stack traces to errors
  STORMLOCK_ALLOW_IMPORT=HOST        let https: plugins load from HOST
  STORMLOCK_ALLOW_PACKAGE_PLUGINS=1  let npm: and jsr: plugins load
  STORMLOCK_PLUGIN_LOADER=data       load plugins as the compiled binary does
  STORMLOCK_SERVE_TOKEN=TOKEN        the token serve requires (instead of --token)
  STORMLOCK_TOKEN=TOKEN              the token the http backend sends
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
  slots: {
    type: "string",
    value: "N",
    help:
      "N slots: up to N leases at once, each with its own id\n(the first holder sets N; another N is refused)",
  },
  shared: {
    type: "boolean",
    help:
      "a shared hold: any number coexist, and an exclusive\nhold (the default) excludes them all",
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
  format: {
    type: "string",
    short: "f",
    value: "FORMAT",
    help:
      "the original Stormlock's formats: id, json (its three\nfields), lines, oneline, cols or rows",
  },
  long: {
    type: "boolean",
    short: "l",
    help: "print the lease for people: holder, reason, times, fence",
  },
  json: {
    type: "boolean",
    help: "print the answer as JSON (see docs/commands.md)",
  },
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
    help: "let the shared --token break leases",
  },
  tokens: {
    type: "string",
    value: "FILE",
    help:
      "the named tokens file (default: tokens in the config's\n[serve] section)",
  },
  "tls-cert": {
    type: "string",
    value: "FILE",
    help: "serve https with this PEM certificate chain",
  },
  "tls-key": {
    type: "string",
    value: "FILE",
    help: "the PEM private key of --tls-cert",
  },
  scopes: {
    type: "string",
    value: "LIST",
    help: "what the token may do: read, acquire, break (comma-separated)",
  },
  resources: {
    type: "string",
    value: "LIST",
    help:
      "resource patterns it may touch, e.g. 'deploy/*,db' (* is\nany text; default all)",
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
  /** Two command lines showing typical use, for `--help`. */
  examples?: [string, string];
  /** Commands that need no config or backend. */
  offline?: boolean;
  run(context: Context): Promise<number>;
}

/** The CI run's link, from the environment. */
async function ciLink(): Promise<string | undefined> {
  return (await import("./lib/composition/config.ts")).ciLink();
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

/**
 * One message style: a capital first letter, so the CLI's own messages,
 * the library's errors and the backends' warnings read alike; names that
 * are written in lower case (etcd) stay as they are.
 */
function sentence(message: string): string {
  if (/^(?:etcd|dynalite|npm|deno|stormlock)\b/.test(message)) return message;
  return message.replace(/^[a-z]/, (first) => first.toUpperCase());
}

const stderrColours = coloursFor(Deno.stderr);

/** Writes one line to stderr; multi-line client messages are folded. */
function complain(message: string, label = ""): void {
  try {
    console.error(
      `stormlock: ${label}${
        printable(sentence(message.replace(/\s*\n\s*/g, " ")))
      }`,
    );
  } catch {
    // Exit codes never depend on whether stderr can be written.
  }
}

/** A warning line, in yellow at a terminal. */
function warn(message: string): void {
  complain(message, `${stderrColours.yellow("Warning:")} `);
}

/** The terminal's width for stdout, or `Infinity` for a pipe or file. */
function outputWidth(): number {
  try {
    if (!Deno.stdout.isTerminal()) return Infinity;
    return Deno.consoleSize().columns || 80;
  } catch {
    return Infinity;
  }
}

/** Prints a table to stdout and says on stderr what was cut to fit. */
function printTable(
  columns: TableColumn[],
  paint?: (column: string, row: number, text: string) => string,
): void {
  const width = outputWidth();
  const fitted = fitTable(columns, width, paint);
  print(fitted.text);
  const left = fitted.dropped.map((title) => title.toLowerCase());
  if (fitted.cut > 0 || left.length > 0) {
    complain(
      `${
        [
          ...(fitted.cut > 0
            ? [
              `${fitted.cut} cell${
                fitted.cut === 1 ? " was" : "s were"
              } cut (…)`,
            ]
            : []),
          ...(left.length > 0 ? [`left out: ${left.join(", ")}`] : []),
        ].join("; ")
      } to fit ${
        Number.isFinite(width) ? `${width} columns` : "the table"
      }; --json shows everything`,
    );
  }
}

/** A time column's header: the title and, when all agree, the offset. */
function timeTitle(title: string, dates: Date[]): string {
  const offsets = new Set(dates.map(localOffset));
  return offsets.size === 1 ? `${title} (${[...offsets][0]})` : title;
}

/** A time column's cell: the offset is in the header when all agree. */
function timeCell(date: Date, dates: Date[], now: number): string {
  return new Set(dates.map(localOffset)).size === 1
    ? tableTime(date, now)
    : `${localTime(date, new Date(now))} ${relative(date, now)}`;
}

/**
 * Reports a wait on stderr: on a terminal, one status line updated in
 * place, what changes first (time waited, place in line) and cut to the
 * width; elsewhere, a plain line only when something changes.
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
      const width = (() => {
        try {
          return Deno.consoleSize().columns || 80;
        } catch {
          return 80;
        }
      })();
      const text = `stormlock: ${printable(sentence(line))}`;
      const fitted = [...text].length < width
        ? text
        : `${[...text].slice(0, width - 2).join("")}…`;
      try {
        Deno.stderr.writeSync(new TextEncoder().encode(`\r\x1b[K${fitted}`));
        drawn = true;
      } catch { /* exit codes never depend on stderr */ }
    } else if (key !== said) complain(line);
    said = key;
  };
  return {
    onWait(holder: Lease, state: WaitState) {
      const place = state.position === 0
        ? "next in line"
        : `${state.position} ahead of you`;
      const about = state.queued
        ? `"${shorten(holder.resource, 60)}" is free, earlier waiters first`
        : `held by ${shorten(holder.principal, 60)} until ${
          when(holder.expires)
        }${holder.reason ? ` for "${shorten(holder.reason, 60)}"` : ""}`;
      show(
        `${holder.id} ${state.position} ${state.queued}`,
        `waited ${span(state.waitedMs)} of ${wait}; ${place}; ${about}`,
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

/** `--slots N` and `--shared`, as the library takes them. */
function holderFlags(
  flags: Record<string, string | boolean | undefined>,
): HolderOptions {
  const slots = flags.slots as string | undefined;
  if (slots !== undefined && !/^\d{1,5}$/.test(slots)) {
    throw new UsageError(
      `Bad --slots "${
        shorten(slots, 20)
      }": give a whole number from 1 to 10000`,
    );
  }
  return {
    ...(slots !== undefined ? { slots: Number(slots) } : {}),
    ...(flags.shared ? { shared: true } : {}),
  };
}

const COMMANDS: Record<string, Command> = {
  acquire: {
    args: ["RESOURCE"],
    examples: [
      'stormlock acquire -t 30m -r "db patch" deploy-prod',
      "id=$(stormlock acquire --wait 10m deploy-prod)",
    ],
    flags: ["ttl", "wait", "slots", "shared", "reason", "link", "json"],
    excludes: [["slots", "shared"]],
    summary:
      "Take the lock and print only the lease id (or the lease, with --json).\n" +
      "If someone else holds it, print nothing on stdout, name the holder on\n" +
      "stderr and exit 2. --slots N and --shared let more than one hold it.",
    async run({ lock, flags }) {
      const opened = await lock();
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      let lease: Lease;
      try {
        lease = await opened.acquire(flags.ttl as string | undefined, {
          wait,
          ...holderFlags(flags),
          reason: flags.reason as string | undefined,
          link: (flags.link as string | undefined) ?? await ciLink(),
          onWait: reporter.onWait,
          onRetry: reporter.onRetry,
        }).finally(reporter.done);
      } catch (error) {
        if (!(error instanceof LockHeldError)) throw error;
        const holder = error.holder;
        if (
          !error.queued && holder.principal === opened.settings.principal &&
          error.holders === 1 && !(error instanceof LimitMismatchError)
        ) {
          complain(
            `"${shorten(holder.resource)}" is held by ${
              holderText(holder)
            } (you already hold it) since ${when(holder.created)}, until ${
              when(holder.expires)
            }; your lease id: stormlock${
              flags.config ? ` -c ${shellQuote(String(flags.config))}` : ""
            } current --id-only ${shellQuote(holder.resource)}`,
          );
          return EXIT.held;
        }
        if (wait === undefined) throw error;
        complain(
          `Gave up after waiting ${wait}: ${
            error instanceof LimitMismatchError
              ? error.message
              : heldMessage(holder, Date.now(), error)
          }`,
        );
        return EXIT.held;
      }
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
    examples: [
      'stormlock release deploy-prod "$id"',
      'stormlock release --json deploy-prod "$id"',
    ],
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
    examples: [
      'stormlock renew -t 1h deploy-prod "$id"',
      'stormlock renew -r "still patching" deploy-prod "$id"',
    ],
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
        const { requestNote } = await import("./lib/apps/run.ts");
        complain(requestNote(request));
      }
      if (flags.json) print(safeJson(leaseJson({ ...lease, request })));
      return EXIT.ok;
    },
  },
  current: {
    args: ["RESOURCE"],
    examples: [
      "stormlock current -l deploy-prod",
      "stormlock current --id-only deploy-prod",
    ],
    flags: ["id-only", "long", "json", "format"],
    excludes: [
      ["id-only", "json"],
      ["id-only", "long"],
      ["long", "json"],
      ["format", "id-only"],
      ["format", "long"],
      ["format", "json"],
    ],
    summary:
      "Print the current lease: principal, created time (ISO 8601) and lease\n" +
      "id, tab-separated. Exit 1 if the resource is free (--json prints null).\n" +
      "--format takes the original Stormlock's formats; its json is the\n" +
      "original's three fields, where --json is ours.",
    async run({ lock, args: [resource], flags }) {
      const format = flags.format as string | undefined;
      const known = ORIGINAL_FORMATS.find((name) => name === format);
      if (format !== undefined && !known) {
        throw new UsageError(
          `--format ${
            JSON.stringify(shorten(format))
          } is not a format; use one of ${ORIGINAL_FORMATS.join(", ")}`,
        );
      }
      const opened = await lock();
      const lease = await opened.current();
      if (!lease) {
        if (flags.json) print("null");
        complain(`no current lease on "${shorten(resource)}"`);
        return EXIT.no;
      }
      // Slots or shared holds: every holder, one row (or block) each.
      const all = lease.limit === undefined
        ? [lease]
        : await opened.holders().then((found) =>
          found.length > 0 ? found : [lease]
        );
      const free = freeSlots(all);
      if (known) print(originalFormat(lease, known));
      else if (flags["id-only"]) print(all.map((held) => held.id).join("\n"));
      else if (flags.json || flags.long) {
        const waiting = await opened.waiting();
        const request = await opened.handOverRequest(lease);
        if (flags.json) {
          print(safeJson({
            ...leaseJson({ ...lease, waiting, request }),
            ...(lease.limit !== undefined
              ? { holders: all.map((held) => leaseJson(held)), free }
              : {}),
          }));
        } else {
          print(all.map(leaseDetails).join("\n\n"));
          if (lease.limit !== undefined) {
            print(
              `${"slots:".padEnd(10)}${
                lease.limit === 0
                  ? `shared, ${all.length} holding`
                  : `${free} of ${lease.limit} free`
              }`,
            );
          }
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
        for (const held of all) {
          print(
            [printable(held.principal), isoTime(held.created), held.id]
              .join("\t"),
          );
        }
      }
      return EXIT.ok;
    },
  },
  "is-held": {
    args: ["RESOURCE", "LEASE_ID"],
    examples: [
      'stormlock is-held deploy-prod "$id" && echo still mine',
      'stormlock is-held --json deploy-prod "$id"',
    ],
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
    examples: [
      "stormlock list",
      "stormlock list --json deploy-",
    ],
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
      const missing: string[] = [];
      const leases = await locks.list(prefix, {
        onUnavailable: (backend, error) => {
          missing.push(backend);
          warn(
            `backend "${backend}" is down, so its locks are not listed: ${error.message}`,
          );
        },
      });
      if (flags.json) {
        print(safeJson(leases.map(leaseJson)));
        return EXIT.ok; // the warning names what is missing
      }
      if (leases.length === 0) {
        complain(
          `No live locks${
            prefix ? ` whose name starts with "${shorten(prefix)}"` : ""
          }${
            missing.length > 0
              ? ` on the backends that answered (not ${missing.join(", ")})`
              : ""
          }`,
        );
        return EXIT.ok;
      }
      const now = Date.now();
      const soon = (lease: Lease) => lease.expires.getTime() - now < 5 * 60_000;
      const created = leases.map((lease) => lease.created);
      const expires = leases.map((lease) => lease.expires);
      const colours = coloursFor(Deno.stdout);
      const many = new Set(leases.map((lease) => lease.backend)).size > 1;
      printTable(
        [
          ...(many
            ? [{ title: "BACKEND", cells: leases.map((l) => l.backend) }]
            : []),
          {
            title: "RESOURCE",
            cells: leases.map((l) => l.resource),
            shrink: 12,
          },
          {
            title: "HOLDER",
            cells: leases.map((l) => l.principal),
            shrink: 10,
          },
          // Slots and shared holds: how many hold, of how many.
          ...(leases.some((l) => l.limit !== undefined)
            ? [{
              title: "SLOTS",
              cells: leases.map((l) => {
                if (l.limit === undefined) return "";
                const holding = leases.filter((other) =>
                  other.resource === l.resource && other.backend === l.backend
                ).length;
                return l.limit === 0
                  ? `shared ${holding}`
                  : `${holding}/${l.limit}`;
              }),
            }]
            : []),
          {
            title: "HOST",
            cells: leases.map((l) =>
              l.host && !l.principal.endsWith(`@${l.host}`) ? l.host : ""
            ),
            optional: 2,
            shrink: 8,
          },
          {
            title: "REASON",
            cells: leases.map((l) => l.reason ?? ""),
            shrink: 8,
          },
          {
            title: timeTitle("SINCE", created),
            cells: leases.map((l) => timeCell(l.created, created, now)),
            optional: 1,
          },
          {
            title: timeTitle("EXPIRES", expires),
            cells: leases.map((l) => timeCell(l.expires, expires, now)),
          },
          {
            title: "FENCE",
            cells: leases.map((l) => String(l.fence)),
            optional: 0,
          },
          {
            title: "WAITING",
            cells: leases.map((l) =>
              l.waiting.length > 0 ? String(l.waiting.length) : ""
            ),
            optional: 3,
          },
          {
            title: "REQUESTED BY",
            cells: leases.map((l) => l.request?.principal ?? ""),
            optional: 3,
          },
          {
            title: "LINK",
            cells: leases.map((l) => l.link ?? ""),
            optional: 4,
            shrink: 20,
          },
        ],
        (column, row, text) =>
          column === "HOLDER"
            ? colours.bold(text)
            : column.startsWith("EXPIRES") && soon(leases[row])
            ? colours.yellow(text)
            : text,
      );
      return EXIT.ok; // 69 only when every backend is down
    },
  },
  run: {
    args: ["RESOURCE", "-- COMMAND", "[ARGS...]"],
    examples: [
      "stormlock run -t 5m deploy-prod -- ./deploy.sh",
      "stormlock run -w 30m -r nightly backup -- pg_dump -f dump.sql",
    ],
    flags: [
      "ttl",
      "wait",
      "slots",
      "shared",
      "reason",
      "link",
      "kill-after",
      "max-hold",
    ],
    excludes: [["slots", "shared"]],
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
      "If run itself dies, even by SIGKILL, COMMAND's group is stopped too.\n" +
      "On Windows neither holds: only COMMAND itself is stopped on a loss.",
    async run({ lock, args: [, ...command], flags }) {
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      try {
        const { commandArgv, runCommand } = await import("./lib/apps/run.ts");
        return await runCommand(await lock(), commandArgv(Deno.args, command), {
          ttl: flags.ttl as string | undefined,
          wait,
          ...holderFlags(flags),
          reason: flags.reason as string | undefined,
          link: (flags.link as string | undefined) ?? await ciLink(),
          killAfter: flags["kill-after"] as string | undefined,
          maxHold: flags["max-hold"] as string | undefined,
          warn: complain,
          onWait: reporter.onWait,
          onRetry: reporter.onRetry,
        });
      } catch (error) {
        const { LeaseLostError } = await import("./lib/composition/hold.ts");
        if (!(error instanceof LeaseLostError)) throw error;
        complain(error.message);
        return EXIT.lost;
      }
    },
  },
  break: {
    args: ["RESOURCE", "[LEASE_ID]"],
    examples: [
      'stormlock break deploy-prod --reason "job died"',
      'stormlock break -y -r "host gone" deploy-prod LEASE_ID',
    ],
    flags: ["reason", "yes", "json"],
    summary:
      "End someone else's lease, recording who broke it and why (--reason is\n" +
      "required). Without LEASE_ID, show the holder and ask first; with no\n" +
      "terminal, --yes is needed. Never ends a lease taken after you looked.",
    async run({ lock, args: [resource, leaseId], flags }) {
      const reason = flags.reason as string | undefined;
      if (reason === undefined || reason.trim() === "") {
        throw new UsageError(
          `"break" needs --reason TEXT: say why the lease is stale, e.g. stormlock break ${resource} --reason "job died"`,
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
        const holders = holder.limit === undefined
          ? 1
          : (await opened.holders()).length;
        if (holders > 1) {
          throw new UsageError(
            `"${
              shorten(resource)
            }" has ${holders} holders; name the lease to break: stormlock break ${
              printable(shellQuote(resource))
            } LEASE_ID (the ids: stormlock current ${
              printable(shellQuote(resource))
            })`,
          );
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
    examples: [
      "stormlock history deploy-prod",
      "stormlock history -n 100 --json deploy-prod",
    ],
    flags: ["limit", "json"],
    summary:
      "List the lock's events, newest first: acquired, renewed, released,\n" +
      "reason-changed, expired, broken.",
    async run({ lock, args: [resource], flags }) {
      const events = await (await lock()).history(
        parseLimit(flags.limit as string | undefined),
      );
      if (flags.json) {
        print(safeJson(events.map(eventJson)));
        return EXIT.ok;
      }
      if (events.length === 0) {
        complain(
          `No events for "${
            shorten(resource)
          }": it was never locked here, or its history has been pruned`,
        );
        return EXIT.ok;
      }
      const now = Date.now();
      const at = events.map((event) => event.at);
      const colours = coloursFor(Deno.stdout);
      printTable(
        [
          {
            title: timeTitle("WHEN", at),
            cells: events.map((event) => timeCell(event.at, at, now)),
          },
          { title: "EVENT", cells: events.map((event) => event.kind) },
          {
            title: "FENCE",
            cells: events.map((event) => String(event.fence)),
            optional: 0,
          },
          {
            title: "HOLDER",
            cells: events.map((event) => event.principal),
            shrink: 10,
          },
          {
            title: "HOST",
            cells: events.map((event) =>
              event.host && !event.principal.endsWith(`@${event.host}`)
                ? event.host
                : ""
            ),
            optional: 1,
            shrink: 8,
          },
          {
            title: "REASON",
            cells: events.map((event) => event.reason ?? ""),
            shrink: 8,
          },
          {
            title: "BY",
            cells: events.map((event) =>
              event.by ? `${event.by.principal}: ${event.by.reason}` : ""
            ),
            optional: 2,
            shrink: 12,
          },
          {
            title: "LINK",
            cells: events.map((event) => event.link ?? ""),
            optional: 3,
            shrink: 20,
          },
        ],
        (column, row, text) =>
          column === "EVENT" && events[row].kind === "broken"
            ? colours.red(text)
            : column === "EVENT" && events[row].kind === "expired"
            ? colours.yellow(text)
            : text,
      );
      return EXIT.ok;
    },
  },
  init: {
    args: ["[RESOURCE]"],
    examples: [
      "stormlock init",
      "stormlock -c team.cfg init deploy-prod",
    ],
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
    examples: [
      "stormlock serve",
      "stormlock serve --listen 0.0.0.0:7878 --tokens tokens.json --tls-cert cert.pem --tls-key key.pem",
    ],
    flags: ["listen", "token", "allow-break", "tokens", "tls-cert", "tls-key"],
    summary:
      "Run the lock server: a live status page, and a JSON API that the http\n" +
      "backend uses to take, renew, release and break leases on the configured\n" +
      "store. Callers are named by tokens (--tokens FILE, or tokens in [serve])\n" +
      "or OIDC rules ([oidc.NAME]); a shared --token names nobody. Loopback\n" +
      "only unless one of those is set. Delivers the config's [hook.NAME]\n" +
      "sections (one serve at a time does). Stops on Ctrl-C.",
    async run({ locks, flags }) {
      const { openServer } = await import("./lib/apps/serve/config.ts");
      const given = flags.token as string | undefined;
      const server = await openServer(locks, {
        listen: flags.listen as string | undefined,
        token: given ?? (Deno.env.get("STORMLOCK_SERVE_TOKEN") || undefined),
        allowBreak: flags["allow-break"] === true,
        tokens: flags.tokens as string | undefined,
        tlsCert: flags["tls-cert"] as string | undefined,
        tlsKey: flags["tls-key"] as string | undefined,
        warn: (message) => complain(`warning: ${message}`),
        onError: (error) =>
          complain(
            `internal error in serve: ${(error as Error)?.message ?? error}`,
          ),
      });
      complain(`Now serving ${server.url} (${server.describe}); Ctrl-C stops`);
      // Hooks: one active dispatcher across every serve on this store.
      const { startDispatcher } = await import("./lib/apps/notify/dispatch.ts");
      const { localHost } = await import("./lib/composition/config.ts");
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
  token: {
    args: ["create|list|revoke", "[NAME]"],
    flags: ["tokens", "scopes", "resources", "json"],
    examples: [
      "stormlock token create ci-deploy --scopes acquire --resources 'deploy/*'",
      "stormlock token revoke ci-deploy",
    ],
    summary:
      "Manage the lock server's named tokens, in the tokens file (--tokens, else\n" +
      "tokens in the config's [serve] section). create NAME --scopes LIST\n" +
      "[--resources LIST] prints a new random token once; only its hash is\n" +
      "kept. list shows names, scopes and resources; revoke NAME removes it. A\n" +
      "running server sees changes at once. The principal is NAME.",
    async run({ locks, args: [action, name], flags }) {
      const { tokensPath } = await import("./lib/apps/serve/config.ts");
      const identity = await import("./lib/apps/serve/identity.ts");
      const path = tokensPath(locks.config, flags.tokens as string | undefined);
      if (action === "list") {
        const tokens = identity.readTokensFile(path);
        if (flags.json) {
          print(safeJson(tokens.map(({ sha256: _, ...entry }) => entry)));
        } else if (tokens.length === 0) complain(`no tokens in ${path}`);
        else {
          printTable([
            { title: "NAME", cells: tokens.map((entry) => entry.name) },
            {
              title: "SCOPES",
              cells: tokens.map((entry) => entry.scopes.join(",")),
            },
            {
              title: "RESOURCES",
              cells: tokens.map((entry) => entry.resources?.join(",") ?? "*"),
            },
            {
              title: "CREATED",
              cells: tokens.map((entry) => tableTime(new Date(entry.created))),
            },
          ]);
        }
        return EXIT.ok;
      }
      if (name === undefined || !["create", "revoke"].includes(action)) {
        throw new UsageError(
          'token takes "create NAME --scopes LIST", "list" or "revoke NAME"',
        );
      }
      if (action === "revoke") {
        if (!identity.revokeToken(path, name)) {
          complain(`no token named "${shorten(name)}" in ${path}`);
          return EXIT.no;
        }
        complain(`revoked "${shorten(name)}" in ${path}`);
        return EXIT.ok;
      }
      const scopes = flags.scopes as string | undefined;
      if (scopes === undefined) {
        throw new UsageError(
          "token create needs --scopes, e.g. --scopes read,acquire",
        );
      }
      const resources = flags.resources as string | undefined;
      const token = await identity.createToken(
        path,
        name,
        identity.parseScopes(scopes),
        resources === undefined ? undefined : identity.parsePatterns(resources),
      );
      print(flags.json ? safeJson({ name, token }) : token);
      complain(
        `token "${shorten(name)}" added to ${path}; it is shown only now`,
      );
      return EXIT.ok;
    },
  },
  config: {
    args: [],
    flags: ["json"],
    summary:
      "Show the config in use, secrets masked: the file and why it was chosen,\n" +
      "the search order, warnings, each resource section's backend, TTL and\n" +
      "principal, and each backend's store and whether it answers (within 5s).\n" +
      "Exit 69 if a backend does not answer.",
    examples: ["stormlock config", "stormlock -c team.cfg config --json"],
    async run({ locks, flags }) {
      const { configReport } = await import("./lib/apps/output/report.ts");
      const report = await configReport(locks, {
        path: flags.config as string | undefined,
      });
      const down = report.backends.some((backend) => !backend.answers);
      if (flags.json) {
        print(safeJson(report));
        return down ? EXIT.unavailable : EXIT.ok;
      }
      const colours = coloursFor(Deno.stdout);
      const p = printable;
      const state = {
        used: `  ${colours.green("<- used")}`,
        none: "  (no such file)",
        unset: "  (not set)",
        "not reached": "",
      };
      print([
        `Config file: ${p(report.file ?? "none")} (${report.why})`,
        "Searched, in order:",
        ...report.search.map((place, index) =>
          `  ${index + 1}. ${place.place.padEnd(32)}${p(place.path ?? "")}${
            state[place.state]
          }`
        ),
        `Warnings: ${report.warnings.length === 0 ? "none" : ""}`,
        ...report.warnings.map((warning) =>
          `  - ${colours.yellow(p(warning))}`
        ),
        "Resources:",
        ...report.resources.map((resource) =>
          `  [${p(resource.section)}]  backend ${
            p(resource.backend)
          }, ttl ${resource.ttl}, principal ${p(resource.principal)}`
        ),
        "Backends:",
        ...report.backends.flatMap((backend) => [
          `  ${p(backend.name)}: ${p(backend.store ?? "(not opened)")}; ${
            backend.answers
              ? colours.green(`answers (${backend.ms} ms)`)
              : colours.red(`does not answer: ${p(backend.error ?? "")}`)
          }`,
          ...Object.entries(backend.options).map(([key, value]) =>
            `    ${p(key)} = ${p(value)}`
          ),
          ...Object.entries(backend.defaults).map(([key, value]) =>
            `    ${p(key)} = ${p(value)}  ${colours.dim("(default)")}`
          ),
        ]),
      ].join("\n"));
      return down ? EXIT.unavailable : EXIT.ok;
    },
  },
  version: {
    args: [],
    flags: [],
    offline: true,
    summary: "Print the version (the same as -V or --version).",
    examples: ["stormlock version", "stormlock -V"],
    run() {
      print(VERSION);
      return Promise.resolve(EXIT.ok);
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
      const { watchCommand } = await import("./lib/apps/notify/watch.ts");
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
          : `Already requested: ${shorten(request.principal)} asked ${
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
    examples: [
      'eval "$(stormlock completions bash)"',
      "stormlock completions fish > ~/.config/fish/completions/stormlock.fish",
    ],
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
    examples: [
      "stormlock help acquire",
      "stormlock --help",
    ],
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

/** The list of commands and their one-line usage, for bare `stormlock`. */
function usageText(): string {
  return [
    "Usage:",
    ...Object.keys(COMMANDS).map((name) => `  ${usageOf(name)}`),
    "",
    'Run "stormlock --help" for the options, environment and exit codes, and',
    '"stormlock COMMAND --help" for one command.',
  ].join("\n");
}

/** One command's help: short, with examples; the shared blocks are in --help. */
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
    ...(command.examples
      ? ["Examples:", ...command.examples.map((line) => `  ${line}`), ""]
      : []),
    '-c FILE names the config file. Environment, exit codes and every command:\n"stormlock --help".',
  ].join("\n");
}

function commandNamed(name: string): string {
  if (!Object.hasOwn(COMMANDS, name)) {
    throw new UsageError(
      `Unknown command "${shorten(name, 40)}"${
        didYouMean(name, Object.keys(COMMANDS))
      }; the commands are ${Object.keys(COMMANDS).join(", ")}`,
    );
  }
  return name;
}

/** Commands whose first argument is a resource name. */
function takesResource(name: string): boolean {
  return COMMANDS[name].args[0] === "RESOURCE" ||
    COMMANDS[name].args[0] === "[RESOURCE]" ||
    (name === "list" && COMMANDS[name].args[0] === "[PREFIX]");
}

/**
 * A completion script for `shell`, from the command table: commands, each
 * command's flags (only once "-" is typed, so an empty word never becomes
 * "--"), files after -c, and resource names from `stormlock list --json`,
 * bounded to 2 seconds.
 */
function completions(shell: string): string {
  const names = Object.keys(COMMANDS);
  const flagsOf = (name: string) =>
    [...COMMANDS[name].flags, ...GLOBAL_FLAGS].map((flag) => `--${flag}`);
  const withResources = names.filter(takesResource);
  const one = (text: string) => text.split(/[.\n]/)[0].replaceAll("'", "");
  // The launcher that was completed, with -c if given; at most 2 s.
  const resources = (launcher: string, config: string) =>
    `{ if command -v timeout >/dev/null 2>&1; then timeout 2 ${launcher} \${${config}:+-c "\$${config}"} list --json; else ${launcher} \${${config}:+-c "\$${config}"} list --json; fi; } 2>/dev/null | grep -o '"resource":"[^"]*"' | cut -d'"' -f4`;
  switch (shell) {
    case "bash":
      return [
        '# stormlock completions for bash: eval "$(stormlock completions bash)"',
        "_stormlock_resources() {",
        `  local launcher=\${COMP_WORDS[0]} config=$1`,
        `  ${resources('"$launcher"', "config")}`,
        "}",
        "_stormlock() {",
        '  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd="" config="" i args=0',
        "  for ((i = 1; i < COMP_CWORD; i++)); do",
        "    case ${COMP_WORDS[i]} in",
        "      -c|--config) config=${COMP_WORDS[i+1]}; ((i++)) ;;",
        "      -*) ;;",
        "      *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; else ((args++)); fi ;;",
        "    esac",
        "  done",
        "  case $prev in",
        '    -c|--config) compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur")); return ;;',
        "    -t|--ttl|-w|--wait|-r|--reason|--link|-n|--limit|--kill-after|--max-hold|--listen|--token) COMPREPLY=(); return ;;",
        "  esac",
        "  if [[ -z $cmd ]]; then",
        `    if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "${
          GLOBAL_FLAGS.map((f) => `--${f}`).join(" ")
        }" -- "$cur")); else COMPREPLY=($(compgen -W "${
          names.join(" ")
        }" -- "$cur")); fi`,
        "    return",
        "  fi",
        "  if [[ $cur == -* ]]; then",
        '    case "$cmd" in',
        ...names.map((name) =>
          `      ${name}) COMPREPLY=($(compgen -W "${
            flagsOf(name).join(" ")
          }" -- "$cur")) ;;`
        ),
        "    esac",
        "    return",
        "  fi",
        '  case "$cmd" in',
        `    ${
          withResources.join("|")
        }) if ((args == 0)); then local IFS=$'\\n'; COMPREPLY=($(compgen -W "$(_stormlock_resources "$config")" -- "$cur")); fi ;;`,
        '    completions) ((args == 0)) && COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")) ;;',
        `    help) ((args == 0)) && COMPREPLY=($(compgen -W "${
          names.join(" ")
        }" -- "$cur")) ;;`,
        "  esac",
        "}",
        "complete -F _stormlock stormlock",
      ].join("\n");
    case "zsh":
      return [
        "#compdef stormlock",
        "# stormlock completions for zsh: stormlock completions zsh > ~/.zfunc/_stormlock",
        "_stormlock_resources() {",
        "  local launcher=${words[1]} config=$1",
        `  ${resources('"$launcher"', "config")}`,
        "}",
        "_stormlock() {",
        '  local -a commands resources; local cmd="" config="" i args=0',
        `  commands=(${
          names.map((name) => `'${name}:${one(COMMANDS[name].summary)}'`)
            .join(" ")
        })`,
        "  for ((i = 2; i < CURRENT; i++)); do",
        "    case ${words[i]} in",
        "      -c|--config) config=${words[i+1]}; ((i++)) ;;",
        "      -*) ;;",
        "      *) if [[ -z $cmd ]]; then cmd=${words[i]}; else ((args++)); fi ;;",
        "    esac",
        "  done",
        "  case ${words[CURRENT-1]} in -c|--config) _files; return ;; esac",
        "  if [[ -z $cmd ]]; then",
        "    if [[ $PREFIX == -* ]]; then compadd -- --config --help --version; else _describe command commands; fi",
        "    return",
        "  fi",
        "  if [[ $PREFIX == -* ]]; then",
        "    case $cmd in",
        ...names.map((name) =>
          `      ${name}) compadd -- ${flagsOf(name).join(" ")} ;;`
        ),
        "    esac",
        "    return",
        "  fi",
        "  case $cmd in",
        `    ${
          withResources.join("|")
        }) if ((args == 0)); then resources=(\${(f)"$(_stormlock_resources "$config")"}); compadd -a resources; fi ;;`,
        "    completions) ((args == 0)) && compadd -- bash zsh fish ;;",
        `    help) ((args == 0)) && compadd -- ${names.join(" ")} ;;`,
        "  esac",
        "}",
        'compdef _stormlock stormlock 2>/dev/null || _stormlock "$@"',
      ].join("\n");
    case "fish":
      return [
        "# stormlock completions for fish: stormlock completions fish > ~/.config/fish/completions/stormlock.fish",
        "function __stormlock_resources",
        "  set -l words (commandline -opc)",
        "  set -l config",
        "  set -l i (contains -i -- -c $words; or contains -i -- --config $words)",
        "  and set config -c $words[(math $i + 1)]",
        "  if command -q timeout",
        "    timeout 2 $words[1] $config list --json 2>/dev/null",
        "  else",
        "    $words[1] $config list --json 2>/dev/null",
        `  end | string match -ra '"resource":"[^"]*"' | string replace -r '^"resource":"(.*)"$' '$1'`,
        "end",
        "complete -c stormlock -f",
        "complete -c stormlock -s c -l config -r -F -d 'config file'",
        ...names.map((name) =>
          `complete -c stormlock -n __fish_use_subcommand -a ${name} -d '${
            one(COMMANDS[name].summary)
          }'`
        ),
        `complete -c stormlock -n '__fish_seen_subcommand_from ${
          withResources.join(" ")
        }' -a '(__stormlock_resources)'`,
        ...names.flatMap((name) =>
          COMMANDS[name].flags.map((flag) => {
            const spec: Flag = FLAGS[flag];
            return `complete -c stormlock -n '__fish_seen_subcommand_from ${name}' -l ${flag}${
              spec.short ? ` -s ${spec.short}` : ""
            }${spec.value ? " -r" : ""} -d '${one(spec.help)}'`;
          })
        ),
        "complete -c stormlock -n '__fish_seen_subcommand_from completions' -a 'bash zsh fish'",
      ].join("\n");
    default:
      throw new UsageError(
        `No completions for "${shorten(shell, 20)}"${
          didYouMean(shell, ["bash", "zsh", "fish"])
        }; choose bash, zsh or fish`,
      );
  }
}

function parse(argv: string[], parseArgs: ParseArgs) {
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
        ? `Unknown option "${shorten(unknown[1], 40)}"${
          didYouMean(
            unknown[1].replace(/^-+/, ""),
            Object.keys(FLAGS),
            (flag) => `--${flag}`,
          )
        }; run "stormlock --help" for the options (a value that starts with "-" goes as --flag=VALUE)`
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
        `"${name}" takes no --${flag}${
          didYouMean(flag, command.flags, (near) => `--${near}`)
        }; see "stormlock ${name} --help"`,
      );
    }
  }
  for (const [first, second] of command.excludes ?? []) {
    if (values[first] && values[second]) {
      throw new UsageError(
        `"${name}" takes --${first} or --${second}, not both`,
      );
    }
  }
}

async function run(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    print(VERSION);
    return EXIT.ok;
  }
  const { parseArgs } = await import("parse-args");
  const { values, positionals } = parse(argv, parseArgs) as {
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
    complain("No command given");
    try {
      console.error(usageText());
    } catch { /* the exit code still tells */ }
    return EXIT.usage;
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
      `"${name}" takes ${
        command.args.length > 0 ? command.args.join(" ") : "no arguments"
      }, but got ${args.length} argument${
        args.length === 1 ? "" : "s"
      }; usage: ${usageOf(name)}`,
    );
  }
  const zone = timeZoneProblem(Deno.env.get("TZ"));
  if (zone) warn(zone);
  if (command.offline) {
    return command.run({
      args,
      flags: values as Context["flags"],
      locks: undefined as unknown as Stormlock,
      lock: () => Promise.reject(new Error("offline command")),
    });
  }
  const { openStormlock } = await import("./lib/composition/lock.ts");
  const locks = await openStormlock({
    path: values.config,
    warn,
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
      error instanceof LockHeldError && !(error instanceof LimitMismatchError)
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
