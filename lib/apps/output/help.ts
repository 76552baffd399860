/**
 * Usage checks, help and shell completions, written from the CLI's command table
 * (`main.ts` declares it; this file only reads it): usage lines,
 * `--help` for everything and for one command, "did you mean" for an
 * unknown command, and completion scripts for bash, zsh and fish.
 *
 * @module
 */
import { UsageError } from "../../kit/errors.ts";
import { shorten } from "../../kit/text.ts";
import { didYouMean } from "../../kit/suggest.ts";
import { EXIT_HELP } from "./exit.ts";

// Only a type: the parser itself loads when the CLI parses.
type ParseArgs = typeof import("parse-args").parseArgs;

/** One flag: its parser type, short name, value name and help line. */
export interface FlagSpec {
  /** How the parser reads it. */
  readonly type: "string" | "boolean";
  /** The one-letter form, if any. */
  readonly short?: string;
  /** The value's name in help, e.g. `FILE`; none for a switch. */
  readonly value?: string;
  /** The help text; lines after the first are indented under it. */
  readonly help: string;
}

/** What help needs of one command. */
export interface CommandSpec {
  /** Its arguments; `[X]` is optional, `[X...]` takes the rest. */
  readonly args: readonly string[];
  /** The flags it takes. */
  readonly flags: readonly string[];
  /** What it does, a few lines. */
  readonly summary: string;
  /** Two command lines showing typical use. */
  readonly examples?: readonly [string, string];
  /** Flags that exclude each other. */
  readonly excludes?: readonly (readonly [string, string])[];
  /** Flags that need another: `[flag, needed]`. */
  readonly requires?: readonly (readonly [string, string])[];
}

/** The CLI's command table, as help reads it. */
export interface CommandTable {
  /** Every command, in help order. */
  readonly commands: Readonly<Record<string, CommandSpec>>;
  /** Every flag. */
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** The flags every command takes. */
  readonly global: readonly string[];
}

/** The environment variables, as `--help` explains them. */
const ENVIRONMENT_HELP = `Environment:
  STORMLOCK_CONFIG                   the config file, if -c is not given
  STORMLOCK_DEBUG=1                  add stack traces to errors
  STORMLOCK_ALLOW_IMPORT=HOST        let https: plugins load from HOST
  STORMLOCK_ALLOW_PACKAGE_PLUGINS=1  let npm: and jsr: plugins load
  STORMLOCK_PLUGIN_LOADER=data       load plugins as the compiled binary does
  STORMLOCK_SERVE_TOKEN=TOKEN        the token serve requires (instead of --token)
  STORMLOCK_TOKEN=TOKEN              the token the http backend sends
  TZ                                 the time zone of times shown to people`;

/** One command's usage line. */
export function usageOf(
  table: CommandTable,
  name: string,
): string {
  const command = table.commands[name];
  const flags = command.flags.map((flag) => {
    const spec: FlagSpec = table.flags[flag];
    return `[--${flag}${spec.value ? ` ${spec.value}` : ""}]`;
  });
  return ["stormlock [-c FILE]", name, ...flags, ...command.args].join(" ");
}

/** The help lines of `names`, aligned. */
export function flagHelp(
  table: CommandTable,
  names: readonly string[],
): string {
  return names.map((name) => {
    const spec: FlagSpec = table.flags[name];
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

/** `stormlock --help`: every command, the global options, environment and exit codes. */
export function mainHelp(table: CommandTable): string {
  return [
    "stormlock: a lease-based lock for operators and scripts",
    "",
    "Usage:",
    ...Object.keys(table.commands).map((name) => `  ${usageOf(table, name)}`),
    "",
    'Run "stormlock COMMAND --help" (or "stormlock help COMMAND") for one command.',
    "",
    "Options for every command:",
    flagHelp(table, table.global),
    "",
    ENVIRONMENT_HELP,
    "",
    EXIT_HELP,
  ].join("\n");
}

/** The list of commands and their one-line usage, for bare `stormlock`. */
export function usageText(table: CommandTable): string {
  return [
    "Usage:",
    ...Object.keys(table.commands).map((name) => `  ${usageOf(table, name)}`),
    "",
    'Run "stormlock --help" for the options, environment and exit codes, and',
    '"stormlock COMMAND --help" for one command.',
  ].join("\n");
}

/** One command's help: short, with examples; the shared blocks are in --help. */
export function commandHelp(
  table: CommandTable,
  name: string,
): string {
  const command = table.commands[name];
  return [
    `Usage: ${usageOf(table, name)}`,
    "",
    command.summary,
    "",
    ...(command.flags.length > 0
      ? ["Options:", flagHelp(table, command.flags), ""]
      : []),
    ...(command.examples
      ? ["Examples:", ...command.examples.map((line) => `  ${line}`), ""]
      : []),
    '-c FILE names the config file. Environment, exit codes and every command:\n"stormlock --help".',
  ].join("\n");
}

/** `name` when it is a command; else a usage error with a suggestion. */
export function commandNamed(
  table: CommandTable,
  name: string,
): string {
  if (!Object.hasOwn(table.commands, name)) {
    throw new UsageError(
      `Unknown command "${shorten(name, 40)}"${
        didYouMean(name, Object.keys(table.commands))
      }; the commands are ${Object.keys(table.commands).join(", ")}`,
    );
  }
  return name;
}

/** Commands whose first argument is a resource name. */
export function takesResource(
  table: CommandTable,
  name: string,
): boolean {
  return table.commands[name].args[0] === "RESOURCE" ||
    table.commands[name].args[0] === "[RESOURCE]" ||
    (name === "list" && table.commands[name].args[0] === "[PREFIX]");
}

/**
 * A completion script for `shell`, from the command table: commands, each
 * command's flags (only once "-" is typed, so an empty word never becomes
 * "--"), files after -c, and resource names from `stormlock list --json`,
 * bounded to 2 seconds.
 */
export function completions(
  table: CommandTable,
  shell: string,
): string {
  const names = Object.keys(table.commands);
  const flagsOf = (name: string) =>
    [...table.commands[name].flags, ...table.global].map((flag) => `--${flag}`);
  const withResources = names.filter((name) => takesResource(table, name));
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
          table.global.map((f) => `--${f}`).join(" ")
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
          names.map((name) => `'${name}:${one(table.commands[name].summary)}'`)
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
            one(table.commands[name].summary)
          }'`
        ),
        `complete -c stormlock -n '__fish_seen_subcommand_from ${
          withResources.join(" ")
        }' -a '(__stormlock_resources)'`,
        ...names.flatMap((name) =>
          table.commands[name].flags.map((flag) => {
            const spec: FlagSpec = table.flags[flag];
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

/**
 * Parses the command line with every flag of the table, turning the
 * parser's complaints into usage errors that say what to do.
 */
export function parseCommandLine(
  table: CommandTable,
  argv: string[],
  parseArgs: ParseArgs,
): ReturnType<ParseArgs> {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: Object.fromEntries(
        Object.entries(table.flags).map(([name, spec]) => [
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
            Object.keys(table.flags),
            (flag) => `--${flag}`,
          )
        }; run "stormlock --help" for the options (a value that starts with "-" goes as --flag=VALUE)`
        : `${message.replace(/\.$/, "")}; run "stormlock --help" for usage`,
    );
  }
}

/**
 * Refuses flags the command does not take, conflicting ones, and the
 * wrong number of arguments.
 */
export function checkUsage(
  table: CommandTable,
  name: string,
  values: Readonly<Record<string, unknown>>,
  args: readonly string[],
): void {
  const command = table.commands[name];
  for (const [flag, value] of Object.entries(values)) {
    if (value === undefined || table.global.includes(flag)) {
      continue;
    }
    if (!command.flags.includes(flag)) {
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
  for (const [flag, needed] of command.requires ?? []) {
    if (values[flag] && values[needed] === undefined) {
      const value = table.flags[needed]?.value;
      throw new UsageError(
        `--${flag} needs --${needed}${
          value ? ` ${value}` : ""
        }; see "stormlock ${name} --help"`,
      );
    }
  }
  const required = command.args.filter((arg) => !arg.startsWith("["));
  // A variadic argument may stand in the middle (RESOURCE [RESOURCE...]
  // LEASE_ID): any count from the required ones up is then accepted.
  const variadic = command.args.some((arg) => arg.endsWith("...]"));
  if (
    args.length < required.length ||
    (!variadic && args.length > command.args.length)
  ) {
    throw new UsageError(
      `"${name}" takes ${
        command.args.length > 0 ? command.args.join(" ") : "no arguments"
      }, but got ${args.length} argument${
        args.length === 1 ? "" : "s"
      }; usage: ${usageOf(table, name)}`,
    );
  }
}
