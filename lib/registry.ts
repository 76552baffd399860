/**
 * Which module implements a backend: a static map of lazy imports for the
 * built-ins, so a command evaluates only the client it uses.
 *
 * @module
 */
import { ConfigError } from "./errors.ts";
import type {
  Backend,
  BackendContext,
  BackendModule,
  BackendOptions,
} from "./types.ts";

/** Every built-in backend, by name, as a lazy import. */
export const builtinBackends: Record<string, () => Promise<BackendModule>> = {
  sqlite: () => import("../backends/sqlite.ts"),
  redis: () => import("../backends/redis.ts"),
  etcd: () => import("../backends/etcd.ts"),
  postgres: () => import("../backends/postgres.ts"),
  dynamodb: () => import("../backends/dynamodb.ts"),
};

/** The names of the built-in backends, for messages and docs. */
export function builtinBackendNames(): string[] {
  return Object.keys(builtinBackends);
}

const BACKEND_METHODS = [
  "acquire",
  "release",
  "renew",
  "current",
  "isHeld",
  "close",
] as const;

/**
 * Checks that a factory returned something with every {@linkcode Backend}
 * method, naming what is missing.
 *
 * @throws {ConfigError} when a method is missing.
 */
export function assertBackend(value: unknown, origin: string): Backend {
  const missing = BACKEND_METHODS.filter((method) =>
    typeof (value as Record<string, unknown> | null)?.[method] !== "function"
  );
  if (missing.length > 0) {
    throw new ConfigError(
      `Backend ${origin} is not a Backend: it lacks ${missing.join(", ")}`,
    );
  }
  return value as Backend;
}

async function loadModule(name: string): Promise<BackendModule> {
  const load = Object.hasOwn(builtinBackends, name)
    ? builtinBackends[name]
    : undefined;
  if (!load) {
    throw new ConfigError(
      `Unknown backend "${name}"; choose one of ${
        builtinBackendNames().join(", ")
      }`,
    );
  }
  return await load();
}

/**
 * Loads a backend by name and builds it from its options. Unknown option
 * names are reported through `warn`, not ignored silently.
 *
 * @param options The `[backend.NAME]` section.
 * @param context Where the options came from.
 * @param warn Receives warnings; defaults to dropping them.
 * @throws {ConfigError} for an unknown backend or a bad option.
 *
 * @example
 * ```ts ignore
 * import { openBackend } from "./registry.ts";
 * const backend = await openBackend({ path: "/tmp/locks.db" }, {
 *   name: "sqlite",
 *   section: "backend.sqlite",
 * });
 * await backend.close();
 * ```
 */
export async function openBackend(
  options: BackendOptions,
  context: BackendContext,
  warn: (message: string) => void = () => {},
): Promise<Backend> {
  const module = await loadModule(context.name);
  if (module.optionNames) {
    for (const key of Object.keys(options)) {
      if (!module.optionNames.includes(key)) {
        warn(
          `${
            context.configPath ?? "<config>"
          } [${context.section}] ${key}: unknown option, ignored (known: ${
            module.optionNames.join(", ")
          })`,
        );
      }
    }
  }
  return assertBackend(
    await module.createBackend(options, context),
    `"${context.name}"`,
  );
}
