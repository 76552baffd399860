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

/** How Stormlock is running, for advice on granting a permission. */
function runningAs(): "launcher" | "binary" | "library" {
  if ((Deno.build as { standalone?: boolean }).standalone) return "binary";
  try {
    if (Deno.env.get("STORMLOCK_LAUNCHER") === "1") return "launcher";
  } catch {
    // Without env access, this is not the launcher, which grants it.
  }
  return "library";
}

/**
 * What to do about a missing permission, fitting how Stormlock runs: the
 * launcher and the compiled binary grant fixed permissions, and a library
 * caller starts Deno itself.
 *
 * @param flag The `--allow-*` flag that grants it.
 * @example
 * ```ts
 * import { permissionAdvice } from "./permissions.ts";
 * console.log(permissionAdvice("--allow-net=db:5432"));
 * // "start Deno with --allow-net=db:5432"
 * ```
 */
export function permissionAdvice(flag: string): string {
  switch (runningAs()) {
    case "launcher":
      return `scripts/stormlock grants network, reading, and writing only under the state folder ($XDG_STATE_HOME/stormlock); keep files there, or run Deno yourself with ${flag}`;
    case "binary":
      return `the stormlock binary does not grant it; keep files under the state folder ($XDG_STATE_HOME/stormlock), or run from source with ${flag}`;
    default:
      return `start Deno with ${flag}`;
  }
}
