/**
 * The `stormlock` CLI: one table declares every command with its
 * arguments and flags; parsing, `--help`, per-command flag checks and
 * shell completions all come from it (lib/apps/output/help.ts reads it).
 * The only place that exits; what it shows is rendered in lib/apps/output/,
 * and every error's exit status comes from lib/apps/output/exit.ts.
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
  UsageError,
} from "./lib/kit/errors.ts";
import { freeSlots, type HolderOptions } from "./lib/composition/holders.ts";
import { HierarchyConflictError } from "./lib/composition/hierarchy_error.ts";
import { printable, shellQuote, shorten } from "./lib/kit/text.ts";
import { VERSION } from "./lib/kit/version.ts";
import type { Lease } from "./lib/kit/types.ts";
import type { Lock } from "./lib/composition/lock.ts";
import type { Stormlock } from "./lib/composition/stormlock.ts";
import {
  eventJson,
  heldMessage,
  isoTime,
  leaseJson,
  leaseOrSetJson,
  noLocksMessage,
  ORIGINAL_FORMATS,
  originalFormat,
  ownLeaseMessage,
  requestMessage,
  safeJson,
} from "./lib/apps/output/format.ts";
import { timeZoneProblem } from "./lib/kit/time.ts";
import { EXIT, failure, OutputError } from "./lib/apps/output/exit.ts";
import {
  checkUsage,
  commandHelp,
  commandNamed,
  completions,
  type FlagSpec,
  mainHelp,
  parseCommandLine,
  usageText,
} from "./lib/apps/output/help.ts";
import {
  complain,
  confirmBreak,
  print,
  waitReporter,
  warn,
} from "./lib/apps/output/terminal.ts";
import {
  leaseLong,
  printHistoryTable,
  printLeaseTable,
  printTokenTable,
} from "./lib/apps/output/tables.ts";

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
  "override-freeze": {
    type: "boolean",
    help: "take it inside a freeze window; needs --reason, recorded",
  },
  from: {
    type: "string",
    value: "TIME",
    help:
      "when the freeze starts: ISO 8601 with an offset, now, or +2h\n(default: now)",
  },
  until: {
    type: "string",
    value: "TIME",
    help: "when the freeze ends: ISO 8601 with an offset, or +2h",
  },
} as const satisfies Record<string, FlagSpec>;

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
  /** Flags that need another: `[flag, needed]`. */
  requires?: [FlagName, FlagName][];
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
    args: ["RESOURCE", "[RESOURCE...]"],
    examples: [
      'stormlock acquire -t 30m -r "db patch" deploy-prod',
      "id=$(stormlock acquire --wait 10m db cache dns)",
    ],
    flags: [
      "ttl",
      "wait",
      "slots",
      "shared",
      "reason",
      "link",
      "json",
      "override-freeze",
    ],
    excludes: [["slots", "shared"]],
    requires: [["override-freeze", "reason"]],
    summary:
      "Take the lock and print only the lease id (or the lease, with --json).\n" +
      "If someone else holds it, print nothing on stdout, name the holder on\n" +
      "stderr and exit 2. Several resources are a lock set: all or none, under\n" +
      "one lease id. Inside a freeze window it exits 2 too, naming the window.\n" +
      "--slots N and --shared let more than one hold it.",
    async run({ locks, args, flags }) {
      const { openLockOrSet } = await import("./lib/composition/lockset.ts");
      const opened = await openLockOrSet(locks, args);
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      let lease: Lease;
      try {
        lease = await opened.acquire(flags.ttl as string | undefined, {
          wait,
          ...holderFlags(flags),
          reason: flags.reason as string | undefined,
          overrideFreeze: flags["override-freeze"]
            ? flags.reason as string
            : undefined,
          link: (flags.link as string | undefined) ?? await ciLink(),
          onWait: reporter.onWait,
          onRetry: reporter.onRetry,
        }).finally(reporter.done);
      } catch (error) {
        if (!(error instanceof LockHeldError)) throw error;
        const holder = error.holder;
        if (
          !error.queued && holder.principal === opened.settings.principal &&
          error.holders === 1 && !(error instanceof LimitMismatchError) &&
          !(error instanceof HierarchyConflictError)
        ) {
          complain(ownLeaseMessage(holder, flags.config as string | undefined));
          return EXIT.held;
        }
        if (wait === undefined) throw error;
        complain(
          `Gave up after waiting ${wait}: ${
            error instanceof LimitMismatchError ||
              error instanceof HierarchyConflictError
              ? error.message
              : heldMessage(holder, Date.now(), error)
          }`,
        );
        return EXIT.held;
      }
      try {
        print(flags.json ? safeJson(leaseOrSetJson(lease)) : lease.id);
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
    args: ["RESOURCE", "[RESOURCE...]", "LEASE_ID"],
    examples: [
      'stormlock release deploy-prod "$id"',
      'stormlock release --json deploy-prod "$id"',
    ],
    flags: ["json"],
    summary: "Release the lease. Exit 3 if it is not the current lease.",
    async run({ locks, args, flags }) {
      const [resources, leaseId] = [args.slice(0, -1), args.at(-1)!];
      const resource = resources.join(" ");
      const { openLockOrSet } = await import("./lib/composition/lockset.ts");
      await (await openLockOrSet(locks, resources)).release(leaseId);
      if (flags.json) {
        print(safeJson({ resource, id: leaseId, released: true }));
      }
      return EXIT.ok;
    },
  },
  renew: {
    args: ["RESOURCE", "[RESOURCE...]", "LEASE_ID"],
    examples: [
      'stormlock renew -t 1h deploy-prod "$id"',
      'stormlock renew -r "still patching" deploy-prod "$id"',
    ],
    flags: ["ttl", "reason", "json"],
    summary:
      "Make the lease expire TTL from now, and change its reason if --reason\n" +
      "is given. Exit 3 if it is not the current lease.",
    async run({ locks, args, flags }) {
      const leaseId = args.at(-1)!;
      const reason = flags.reason as string | undefined;
      const { openLockOrSet } = await import("./lib/composition/lockset.ts");
      const opened = await openLockOrSet(locks, args.slice(0, -1));
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
      if (flags.json) print(safeJson(leaseOrSetJson({ ...lease, request })));
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
    async run({ lock, locks, args: [resource], flags }) {
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
      if (!known && !flags["id-only"]) {
        const { noteFreezes } = await import("./lib/apps/output/freezes.ts");
        await noteFreezes(locks, resource);
      }
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
          print(leaseLong(lease, waiting, request));
          for (const held of all.slice(1)) {
            print(`\n${leaseLong(held, [], null)}`);
          }
          if (lease.limit !== undefined) {
            print(
              `${"slots:".padEnd(10)}${
                lease.limit === 0
                  ? `shared, ${all.length} holding`
                  : `${free} of ${lease.limit} free`
              }`,
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
    args: ["RESOURCE", "[RESOURCE...]", "LEASE_ID"],
    examples: [
      'stormlock is-held deploy-prod "$id" && echo still mine',
      'stormlock is-held --json deploy-prod "$id"',
    ],
    flags: ["json"],
    summary:
      "Exit 0 if the lease is the current one, else 1; exit 3 if it was\n" +
      "broken, naming who broke it. Prints nothing without --json.",
    async run({ locks, args, flags }) {
      const leaseId = args.at(-1)!;
      const { openLockOrSet } = await import("./lib/composition/lockset.ts");
      const opened = await openLockOrSet(locks, args.slice(0, -1));
      const held = await opened.isHeld(leaseId);
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
      if (!flags.json) {
        const { noteFreezes } = await import("./lib/apps/output/freezes.ts");
        await noteFreezes(locks, undefined);
      }
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
        complain(noLocksMessage(prefix, missing));
        return EXIT.ok;
      }
      printLeaseTable(leases);
      return EXIT.ok; // 69 only when every backend is down
    },
  },
  run: {
    args: ["RESOURCE", "[RESOURCE...]", "-- COMMAND", "[ARGS...]"],
    examples: [
      "stormlock run -t 5m deploy-prod -- ./deploy.sh",
      "stormlock run -w 30m -r nightly backup -- pg_dump -f dump.sql",
    ],
    flags: [
      "ttl",
      "wait",
      "reason",
      "link",
      "kill-after",
      "max-hold",
      "slots",
      "shared",
      "override-freeze",
    ],
    excludes: [["slots", "shared"]],
    requires: [["override-freeze", "reason"]],
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
    async run({ locks, args, flags }) {
      const wait = flags.wait as string | undefined;
      const reporter = waitReporter(wait ?? "");
      const { runCommand, runWords } = await import("./lib/apps/run.ts");
      const { resources, command } = runWords(Deno.args, args);
      const { openLockOrSet } = await import("./lib/composition/lockset.ts");
      // A lost lease (75) is thrown, and mapped with every other error.
      return await runCommand(await openLockOrSet(locks, resources), command, {
        ttl: flags.ttl as string | undefined,
        wait,
        ...holderFlags(flags),
        reason: flags.reason as string | undefined,
        overrideFreeze: flags["override-freeze"]
          ? flags.reason as string
          : undefined,
        link: (flags.link as string | undefined) ?? await ciLink(),
        killAfter: flags["kill-after"] as string | undefined,
        maxHold: flags["max-hold"] as string | undefined,
        warn: complain,
        onWait: reporter.onWait,
        onRetry: reporter.onRetry,
      });
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
        if (!flags.yes && !await confirmBreak(holder)) return EXIT.no;
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
      printHistoryTable(events);
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
          printTokenTable(tokens);
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
      const { configReport, configReportText } = await import(
        "./lib/apps/output/report.ts"
      );
      const report = await configReport(locks, {
        path: flags.config as string | undefined,
      });
      const down = report.backends.some((backend) => !backend.answers);
      if (flags.json) {
        print(safeJson(report));
        return down ? EXIT.unavailable : EXIT.ok;
      }
      print(configReportText(report));
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
      complain(requestMessage(resource, asked));
      return mine ? EXIT.ok : EXIT.held;
    },
  },
  freeze: {
    args: ["PATTERN"],
    examples: [
      'stormlock freeze "prod/*" --until +2h --reason "release 4.2"',
      "stormlock freeze db --from 2026-12-24T18:00+01:00 --until +3d -r holidays",
    ],
    flags: ["from", "until", "reason", "json"],
    summary:
      "Freeze the resources PATTERN matches (* is any text) from --from (default\n" +
      "now) until --until: acquire and run refuse them with exit 2, unless\n" +
      "--override-freeze. Kept in the [default] backend's store and recorded in\n" +
      "its history; exit 2 if PATTERN is frozen already.",
    async run({ locks, args: [pattern], flags }) {
      const { freeze, freezeStore, parseFreezeTime, windowJson, windowLine } =
        await import("./lib/composition/freeze.ts");
      const reason = flags.reason as string | undefined;
      const until = flags.until as string | undefined;
      if (until === undefined || reason === undefined) {
        throw new UsageError(
          `"freeze" needs --until TIME and --reason TEXT, e.g. stormlock freeze ${
            shellQuote(pattern)
          } --until +2h --reason "release 4.2"`,
        );
      }
      const now = new Date();
      const window = await freeze(await freezeStore(locks), pattern, {
        from: parseFreezeTime((flags.from as string) ?? "now", now, "--from"),
        until: parseFreezeTime(until, now),
        reason,
        principal: (await locks.lock("default")).settings.principal,
      }, now);
      if (flags.json) print(safeJson(windowJson(window)));
      else complain(`froze: ${windowLine(window)}`);
      return EXIT.ok;
    },
  },
  unfreeze: {
    args: ["PATTERN"],
    examples: [
      'stormlock unfreeze "prod/*"',
      'stormlock unfreeze "prod/*" --reason "release done"',
    ],
    flags: ["reason", "json"],
    summary:
      "End the one-off freeze of PATTERN (as given to freeze), recording who\n" +
      "ended it. Exit 1 if PATTERN has none. Config windows stay.",
    async run({ locks, args: [pattern], flags }) {
      const { freezeStore, unfreeze, windowJson, windowLine } = await import(
        "./lib/composition/freeze.ts"
      );
      const principal = (await locks.lock("default")).settings.principal;
      const ended = await unfreeze(await freezeStore(locks), pattern, {
        principal,
        reason: (flags.reason as string | undefined)?.trim() ||
          `unfrozen by ${principal}`,
      });
      if (flags.json) print(safeJson(ended ? windowJson(ended) : null));
      if (!ended) {
        complain(`no one-off freeze of "${shorten(pattern)}"`);
        return EXIT.no;
      }
      if (!flags.json) complain(`unfroze: ${windowLine(ended)}`);
      return EXIT.ok;
    },
  },
  freezes: {
    args: ["[RESOURCE]"],
    examples: ["stormlock freezes", "stormlock freezes --json prod/db"],
    flags: ["json"],
    summary:
      "Show the freeze windows in force and those starting within a week\n" +
      "(config [freeze.NAME] windows and one-off freezes), or only those that\n" +
      "cover RESOURCE. Exit 1 if RESOURCE is frozen now.",
    async run({ locks, args: [resource], flags }) {
      const { freezeWindows, splitWindows, windowJson, windowLine } =
        await import("./lib/composition/freeze.ts");
      const now = new Date();
      const { active, upcoming } = splitWindows(
        await freezeWindows(locks, now),
        resource,
        now,
      );
      if (flags.json) {
        print(safeJson({
          active: active.map(windowJson),
          upcoming: upcoming.map(windowJson),
        }));
      } else {
        for (const window of active) print(`frozen: ${windowLine(window)}`);
        for (const window of upcoming) print(`upcoming: ${windowLine(window)}`);
        if (active.length + upcoming.length === 0) {
          complain("No freeze windows now or within a week");
        }
      }
      return resource !== undefined && active.length > 0 ? EXIT.no : EXIT.ok;
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
      const script = completions(TABLE, shell);
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
      print(
        name === undefined
          ? mainHelp(TABLE)
          : commandHelp(TABLE, commandNamed(TABLE, name)),
      );
      return Promise.resolve(EXIT.ok);
    },
  },
};

/** The table as help and completions read it. */
const TABLE = { commands: COMMANDS, flags: FLAGS, global: GLOBAL_FLAGS };

async function run(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === "--version" || argv[0] === "-V")) {
    print(VERSION);
    return EXIT.ok;
  }
  const { parseArgs } = await import("parse-args");
  const { values, positionals } = parseCommandLine(TABLE, argv, parseArgs) as {
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
      print(mainHelp(TABLE));
      return EXIT.ok;
    }
    complain("No command given");
    try {
      console.error(usageText(TABLE));
    } catch { /* the exit code still tells */ }
    return EXIT.usage;
  }
  const name = commandNamed(TABLE, given);
  const command = COMMANDS[name];
  if (values.help) {
    print(commandHelp(TABLE, name));
    return EXIT.ok;
  }
  checkUsage(TABLE, name, values, args);
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
  const { openStormlock } = await import("./lib/composition/stormlock.ts");
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
    const { status: code, message } = failure(error);
    complain(message);
    status = code;
  }
  Deno.exit(status);
}
