/**
 * Naming the Deno permission an operation lacked, so every backend's
 * message can say exactly which `--allow-*` flag grants it.
 *
 * @module
 */

/**
 * The permission Deno refused, from a `NotCapable` error anywhere in
 * `error`'s cause chain: `need` as `write access to "PATH"`, and `flag`,
 * the `--allow-*` flag that grants just that. Undefined when none is found.
 *
 * @example
 * ```ts
 * import { deniedPermission } from "./permissions.ts";
 * const error = new Deno.errors.NotCapable('Requires write access to "/x/db"');
 * console.log(deniedPermission(error));
 * // { need: 'write access to "/x/db"', flag: "--allow-write=/x/db" }
 * ```
 */
export function deniedPermission(
  error: unknown,
): { need: string; flag: string } | undefined {
  for (
    let current = error, depth = 0;
    current && depth < 8;
    current = (current as { cause?: unknown }).cause, depth++
  ) {
    const message = String((current as Error)?.message ?? "");
    const asked = /Requires (\w+) access(?: to ("[^"]*"|[^\s,]+))?/.exec(
      message,
    );
    if (!asked) {
      if (current instanceof Deno.errors.NotCapable) {
        return {
          need: `a permission (${message.split("\n")[0]})`,
          flag: "the --allow-* flag that grants it",
        };
      }
      continue;
    }
    const [, kind, target] = asked;
    const value = target?.replace(/^"(.*)"$/, "$1");
    return {
      need: `${kind} access${target ? ` to ${target}` : ""}`,
      flag: `--allow-${kind}${value ? `=${value}` : ""}`,
    };
  }
  return undefined;
}
