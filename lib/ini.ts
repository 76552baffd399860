/**
 * INI parsing behind one function, so the parser (`ini` in the import map)
 * can be swapped for `@std/ini` without touching callers.
 *
 * @module
 */
import ini from "ini";
import { ConfigError } from "./errors.ts";

/**
 * Sections by name (`default`, `backend.redis`, …), each key to value.
 * @example
 * ```ts
 * import { type IniSections, parseConfig } from "@stormlock/stormlock";
 * const sections: IniSections = parseConfig("[backend.redis]\nurl = redis://h:6379\n").sections;
 * console.log(sections["backend.redis"].url); // "redis://h:6379"
 * ```
 */
export type IniSections = Record<string, Record<string, string>>;

/**
 * Parses INI text strictly: a malformed line is an error with its line
 * number, never silently read as something else.
 *
 * @param text The file's contents.
 * @param source The file name, used in error messages.
 * @returns Every section, with keys outside any section under `""`.
 * @throws {ConfigError} on a malformed line.
 */
export function parseIni(text: string, source: string): IniSections {
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = raw.trim();
    const where = `${source}:${index + 1}`;
    if (line === "" || line.startsWith("#") || line.startsWith(";")) return;
    if (line.startsWith("[")) {
      if (!/^\[[^\]]+\]$/.test(line)) {
        throw new ConfigError(
          `${where}: malformed section header "${line}"; write it as [name]`,
        );
      }
      return;
    }
    const equals = line.indexOf("=");
    if (equals <= 0) {
      // The line is not echoed: it may be a value, such as a password URL.
      throw new ConfigError(
        `${where}: expected "key = value", a [section] or a # comment`,
      );
    }
    const value = line.slice(equals + 1).trim();
    const quoted = /^(".*"|'.*')$/.test(value);
    // The parser would cut an unquoted value at # or ; without a word.
    if (!quoted && /[#;]/.test(value)) {
      throw new ConfigError(
        `${where}: the value contains # or ;, which start a comment; wrap the value in double quotes`,
      );
    }
  });

  const sections: IniSections = {};
  const flatten = (name: string, node: Record<string, unknown>) => {
    for (const [key, value] of Object.entries(node)) {
      if (
        value !== null && typeof value === "object" && !Array.isArray(value)
      ) {
        flatten(
          name === "" ? key : `${name}.${key}`,
          value as Record<string, unknown>,
        );
      } else {
        (sections[name] ??= {})[key] = String(value);
      }
    }
    sections[name] ??= {};
  };
  flatten("", ini.parse(text));
  if (Object.keys(sections[""]).length === 0) delete sections[""];
  return sections;
}
