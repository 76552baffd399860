/**
 * The INI dialect of Stormlock's config, compatible with the original's
 * (Python's configparser): `[section]` headers, `key = value` or
 * `key: value`, and whole-line `#` or `;` comments. A value is taken as
 * written, `#` and `;` included; one pair of surrounding quotes is removed.
 *
 * Strict on purpose: a malformed line, a continuation line, or a repeated
 * section or key is an error with its line number, never silently read as
 * something else.
 *
 * @module
 */
import { ConfigError } from "../kit/errors.ts";

/**
 * Sections by name (`default`, `backend.redis`, …), each key to value.
 *
 * @example
 * ```ts
 * import { type IniSections, parseConfig } from "@stormlock/stormlock";
 * const sections: IniSections = parseConfig("[backend.redis]\nurl = redis://h:6379\n").sections;
 * console.log(sections["backend.redis"].url); // "redis://h:6379"
 * ```
 */
export type IniSections = Record<string, Record<string, string>>;

const SECTION = /^\[([^\]]+)\]$/;
const QUOTED = /^(["'])(.*)\1$/;

/**
 * Parses config text.
 *
 * @param text The file's contents.
 * @param source The file name, used in error messages.
 * @returns Every section by name. Keys are lowercase, as in configparser.
 * @throws {ConfigError} naming `source:line` for a malformed line, a key
 * outside any section, or a repeated section or key.
 */
export function parseIni(text: string, source: string): IniSections {
  const sections: IniSections = Object.create(null);
  let current: Record<string, string> | undefined;
  text.replace(/^\uFEFF/, "").split(/\r?\n/).forEach((raw, index) => {
    const where = `${source}:${index + 1}`;
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    if (/^\s/.test(raw)) {
      throw new ConfigError(
        `${where}: indented line; continuation lines are not supported, so put the whole value on one line`,
      );
    }
    if (line.startsWith("[")) {
      const name = SECTION.exec(line)?.[1].trim();
      if (!name) {
        throw new ConfigError(
          `${where}: malformed section header "${line}"; write it as [name]`,
        );
      }
      if (name in sections) {
        throw new ConfigError(
          `${where}: section [${name}] appears twice; merge the two`,
        );
      }
      current = sections[name] = Object.create(null);
      return;
    }
    const split = line.search(/[=:]/);
    // The line is not echoed: it may be a value, such as a password URL.
    if (split <= 0) {
      throw new ConfigError(
        `${where}: expected "key = value", a [section] or a # comment`,
      );
    }
    const key = line.slice(0, split).trim().toLowerCase();
    if (!/^[\w.-]+$/.test(key)) {
      throw new ConfigError(
        `${where}: expected "key = value" with a key of letters, digits, _ . or -`,
      );
    }
    if (!current) {
      throw new ConfigError(
        `${where}: "${key}" comes before any [section]; put it under [default]`,
      );
    }
    if (key in current) {
      throw new ConfigError(`${where}: "${key}" is set twice in its section`);
    }
    const value = line.slice(split + 1).trim();
    current[key] = QUOTED.exec(value)?.[2] ?? value;
  });
  return sections;
}
