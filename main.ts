/**
 * The `stormlock` CLI: parses arguments, calls the library, and maps
 * errors to exit codes. The only place that writes to the terminal or exits.
 *
 * @module
 */
import { parseArgs } from "parse-args";
import {
  LockHeldError,
  openLock,
  StormlockError,
  UsageError,
  VERSION,
} from "./mod.ts";
import type { Lease, Lock, StormlockErrorCode } from "./mod.ts";

/** Exit statuses; documented in `--help` and the README. */
const EXIT = {
  ok: 0,
  no: 1,
  held: 2,
  notHeld: 3,
  usage: 64,
  internal: 70,
  unavailable: 69,
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
  3   the lease is expired or not current; nothing was changed
  64  usage error
  69  backend unavailable
  70  internal error
  78  config error`;

const GLOBAL_HELP = `Options for every command:
  -c, --config FILE  config file; otherwise $STORMLOCK_CONFIG, ./.stormlock.cfg,
                     $XDG_CONFIG_HOME/stormlock.cfg, ~/.stormlock.cfg, or none
                     (embedded SQLite, principal $USER@hostname, ttl 1h)
  -h, --help         show help
  -V, --version      show the version

Environment:
  STORMLOCK_CONFIG                   the config file, if -c is not given
  STORMLOCK_DEBUG=1                  add stack traces to errors
  STORMLOCK_ALLOW_IMPORT=HOST        let https: plugins load from HOST
  STORMLOCK_ALLOW_PACKAGE_PLUGINS=1  let npm: and jsr: plugins load
  STORMLOCK_PLUGIN_LOADER=data       load plugins as the compiled binary does`;

interface Command {
  usage: string;
  summary: string;
  options?: string;
  args: string[];
  run(lock: Lock, args: string[], flags: Flags): Promise<number>;
}

interface Flags {
  ttl?: string;
  wait?: string;
  "id-only"?: boolean;
  json?: boolean;
}

const TTL_OPTION =
  "  -t, --ttl TTL      lease duration, e.g. 30s, 10m, 1h30m, 2 days, 1w\n" +
  "                     (default: the config's ttl, else 1h; at most 365 days)";

function print(line: string): void {
  console.log(line);
}

/**
 * Shows text from others (principals, resource names) without letting its
 * control characters move the cursor, recolour the terminal or break lines.
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

function printable(text: string): string {
  return text.replace(
    CONTROL,
    (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** Writes one line to stderr; multi-line client messages are folded. */
function complain(message: string): void {
  console.error(`stormlock: ${printable(message.replace(/\s*\n\s*/g, " "))}`);
}

function describeHolder(lease: Lease): string {
  return `"${lease.resource}" is held by ${lease.principal} since ${
    isoWithOffset(lease.created)
  }, until ${isoWithOffset(lease.expires)}`;
}

/** ISO 8601 in UTC with an explicit `+00:00` offset. */
function isoWithOffset(date: Date): string {
  return date.toISOString().replace("Z", "+00:00");
}

const COMMANDS: Record<string, Command> = {
  acquire: {
    usage: "acquire [--ttl TTL] [--wait TIME] RESOURCE",
    summary:
      "Take the lock and print only the lease id. If someone else holds it,\n" +
      "print nothing on stdout, name the holder on stderr and exit 2.",
    options: TTL_OPTION + "\n" +
      "  -w, --wait TIME    if the lock is held, wait up to TIME for it (e.g. 10m),\n" +
      "                     saying on stderr whom it waits for",
    args: ["RESOURCE"],
    async run(lock, _args, flags) {
      let waitingFor = "";
      const lease = await lock.acquire(flags.ttl, {
        wait: flags.wait,
        onWait(holder) {
          if (holder.id === waitingFor) return;
          waitingFor = holder.id;
          complain(`waiting up to ${flags.wait}: ${describeHolder(holder)}`);
        },
      });
      print(lease.id);
      return EXIT.ok;
    },
  },
  release: {
    usage: "release RESOURCE LEASE_ID",
    summary: "Release the lease. Exit 3 if it is not the current lease.",
    args: ["RESOURCE", "LEASE_ID"],
    async run(lock, [, leaseId]) {
      await lock.release(leaseId);
      return EXIT.ok;
    },
  },
  renew: {
    usage: "renew [--ttl TTL] RESOURCE LEASE_ID",
    summary:
      "Make the lease expire TTL from now. Exit 3 if it is not the current lease.",
    options: TTL_OPTION,
    args: ["RESOURCE", "LEASE_ID"],
    async run(lock, [, leaseId], flags) {
      await lock.renew(leaseId, flags.ttl);
      return EXIT.ok;
    },
  },
  current: {
    usage: "current [--id-only | --json] RESOURCE",
    summary:
      "Print the current lease: principal, created time (ISO 8601) and lease\n" +
      "id, tab-separated. Exit 1 if the resource is free.",
    options: "  -i, --id-only      print only the lease id\n" +
      "      --json         print the lease as JSON, with its expiry",
    args: ["RESOURCE"],
    async run(lock, _args, flags) {
      const lease = await lock.current();
      if (!lease) {
        complain(`no current lease on "${lock.resource}"`);
        return EXIT.no;
      }
      if (flags["id-only"]) print(lease.id);
      else if (flags.json) {
        print(JSON.stringify({
          resource: lease.resource,
          id: lease.id,
          principal: lease.principal,
          created: isoWithOffset(lease.created),
          expires: isoWithOffset(lease.expires),
        }));
      } else {
        print(
          [
            printable(lease.principal),
            isoWithOffset(lease.created),
            lease.id,
          ].join("\t"),
        );
      }
      return EXIT.ok;
    },
  },
  "is-held": {
    usage: "is-held RESOURCE LEASE_ID",
    summary: "Exit 0 if the lease is the current one, else 1. Prints nothing.",
    args: ["RESOURCE", "LEASE_ID"],
    async run(lock, [, leaseId]) {
      return (await lock.isHeld(leaseId)) ? EXIT.ok : EXIT.no;
    },
  },
  init: {
    usage: "init [RESOURCE]",
    summary:
      "Create what the backend needs on its server, such as a table, if it is\n" +
      "missing. Safe to run again. Uses RESOURCE's backend, else [default]'s.",
    args: ["[RESOURCE]"],
    async run(lock) {
      const backend = lock.settings.backend;
      const needed = await lock.init();
      complain(
        `backend "${backend}" ${needed ? "is ready" : "needs no setup"}`,
      );
      return EXIT.ok;
    },
  },
};

function mainHelp(): string {
  const commands = Object.values(COMMANDS).map((command) =>
    `  stormlock [-c FILE] ${command.usage}`
  );
  return [
    "stormlock: a lease-based lock for operators and scripts",
    "",
    "Usage:",
    ...commands,
    "",
    'Run "stormlock COMMAND --help" (or "stormlock help COMMAND") for one command.',
    "",
    GLOBAL_HELP,
    "",
    EXIT_HELP,
  ].join("\n");
}

function commandHelp(name: string, command: Command): string {
  return [
    `Usage: stormlock [-c FILE] ${command.usage}`,
    "",
    command.summary,
    "",
    ...(command.options ? ["Options:", command.options, ""] : []),
    GLOBAL_HELP,
    "",
    EXIT_HELP,
  ].join("\n").replace("COMMAND", name);
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        config: { type: "string", short: "c" },
        help: { type: "boolean", short: "h" },
        version: { type: "boolean", short: "V" },
        ttl: { type: "string", short: "t" },
        wait: { type: "string", short: "w" },
        "id-only": { type: "boolean", short: "i" },
        json: { type: "boolean" },
      },
    });
  } catch (error) {
    const message = (error as Error).message;
    const ambiguous = /Option '(--[\w-]+)' argument is ambiguous/.exec(message);
    throw new UsageError(
      ambiguous
        ? `${ambiguous[1]} needs a value; write ${
          ambiguous[1]
        }=VALUE for a value that starts with "-"`
        : `${message}; run "stormlock --help" for usage`,
    );
  }
}

function unknownCommand(name: string): UsageError {
  return new UsageError(
    `Unknown command "${name}"; choose one of ${
      Object.keys(COMMANDS).join(", ")
    }`,
  );
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  const [name, ...args] = positionals;
  if (values.version) {
    print(VERSION);
    return EXIT.ok;
  }
  if (name === "help") {
    if (args[0] === undefined) {
      print(mainHelp());
      return EXIT.ok;
    }
    if (!Object.hasOwn(COMMANDS, args[0])) throw unknownCommand(args[0]);
    print(commandHelp(args[0], COMMANDS[args[0]]));
    return EXIT.ok;
  }
  if (name === undefined) {
    if (values.help) {
      print(mainHelp());
      return EXIT.ok;
    }
    throw new UsageError('No command given; run "stormlock --help" for usage');
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw unknownCommand(name);
  if (values.help) {
    print(commandHelp(name, command));
    return EXIT.ok;
  }
  if (values.wait !== undefined && name !== "acquire") {
    throw new UsageError(
      `${name} takes no --wait; see "stormlock ${name} --help"`,
    );
  }
  if (values.ttl !== undefined && !command.options?.includes("--ttl")) {
    throw new UsageError(
      `${name} takes no --ttl; see "stormlock ${name} --help"`,
    );
  }
  for (const flag of ["id-only", "json"] as const) {
    if (values[flag] && name !== "current") {
      throw new UsageError(
        `${name} takes no --${flag}; see "stormlock ${name} --help"`,
      );
    }
  }
  if (values["id-only"] && values.json) {
    throw new UsageError("current takes --id-only or --json, not both");
  }
  const required = command.args.filter((arg) => !arg.startsWith("["));
  if (args.length < required.length || args.length > command.args.length) {
    throw new UsageError(
      `${name} takes ${
        command.args.join(" ")
      }, but got ${args.length} argument${
        args.length === 1 ? "" : "s"
      }; usage: stormlock ${command.usage}`,
    );
  }
  const lock = await openLock(args[0] ?? "default", {
    path: values.config,
    warn: (message) => complain(`warning: ${message}`),
    allowPackagePlugins:
      Deno.env.get("STORMLOCK_ALLOW_PACKAGE_PLUGINS") === "1",
  });
  try {
    return await command.run(lock, args, values);
  } finally {
    await lock.close().catch(() => {});
  }
}

function exitCodeFor(error: unknown): number {
  if (error instanceof StormlockError) {
    complain(
      error instanceof LockHeldError
        ? describeHolder(error.holder)
        : error.message,
    );
    return EXIT_BY_CODE[error.code];
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
    if (Deno.env.get("STORMLOCK_DEBUG") === "1") console.error(error);
    status = exitCodeFor(error);
  }
  Deno.exit(status);
}
