/**
 * `stormlock serve` as the CLI starts it: its flags and the config's
 * `[serve]` and `[oidc.NAME]` sections, resolved into
 * {@linkcode ServeOptions}.
 *
 * @module
 */
import { dirname } from "node:path";
import type { Config } from "../../composition/config.ts";
import { resolveConfigPath } from "../../kit/paths.ts";
import { UsageError } from "../../kit/errors.ts";
import { TokenStore } from "./identity.ts";
import { oidcRules, OidcVerifier } from "./oidc.ts";
import {
  type ServeOptions,
  serveStatus,
  type ServeStore,
  type StatusServer,
} from "./server.ts";
import type { Stormlock } from "../../composition/stormlock.ts";

const SERVE_KEYS = [
  "tokens",
  "listen",
  "tls_cert",
  "tls_key",
  "rate",
  "burst",
];

/**
 * What the CLI passes to {@linkcode openServer}.
 * @example
 * ```ts
 * import type { ServeFlags } from "./config.ts";
 * const flags: ServeFlags = { tokens: "/etc/stormlock/tokens.json" };
 * ```
 */
export interface ServeFlags {
  /** `--listen`; else `listen` in `[serve]`. */
  listen?: string;
  /** The shared `--token`. */
  token?: string;
  /** `--allow-break`, for the shared token. */
  allowBreak?: boolean;
  /** `--tokens`; else `tokens` in `[serve]`. */
  tokens?: string;
  /** `--tls-cert`; else `tls_cert` in `[serve]`. */
  tlsCert?: string;
  /** `--tls-key`; else `tls_key` in `[serve]`. */
  tlsKey?: string;
  /** Operator warnings. */
  warn?: (message: string) => void;
  /** Unexpected errors. */
  onError?: (error: unknown) => void;
}

/**
 * The tokens file: `--tokens`, else `tokens` in `[serve]` (relative to the
 * config file's folder).
 * @throws {UsageError} when neither names one.
 * @example
 * ```ts ignore
 * const path = tokensPath(config, undefined);
 * ```
 */
export function tokensPath(config: Config, flag: string | undefined): string {
  const given = flag ?? config.sections.serve?.tokens?.trim();
  if (!given) {
    throw new UsageError(
      "Name the tokens file: --tokens FILE, or tokens = FILE in the config's [serve] section",
    );
  }
  return resolveConfigPath(given, {
    name: "serve",
    section: "serve",
    configPath: config.path,
    configDir: config.path ? dirname(config.path) : undefined,
  });
}

function readPem(path: string, what: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (error) {
    throw new UsageError(
      `${what} ${path} can't be read (${
        (error as Error).name
      }); give a PEM file`,
    );
  }
}

/**
 * A running server, and how it was started, for its one status line.
 * @example
 * ```ts ignore
 * const server = await openServer(locks, {});
 * console.error(server.url, server.describe);
 * ```
 */
export interface OpenedServer extends StatusServer {
  /** E.g. `2 named tokens, 1 OIDC rule, TLS`. */
  readonly describe: string;
}

/**
 * Starts `serve` from flags and config.
 * @throws {UsageError} on bad flags; {@linkcode ConfigError} on a bad
 * `[serve]` or `[oidc.NAME]` section.
 * @example
 * ```ts ignore
 * const server = await openServer(await openStormlock(), { listen: "0.0.0.0:7878" });
 * await server.finished;
 * ```
 */
export function openServer(
  locks: Stormlock | (ServeStore & { config: Config }),
  flags: ServeFlags,
): Promise<OpenedServer> {
  const config = locks.config;
  const section = config.sections.serve ?? {};
  for (const key of Object.keys(section)) {
    if (!SERVE_KEYS.includes(key)) {
      flags.warn?.(
        `${
          config.path ?? "<config>"
        } [serve] ${key}: unknown key, ignored (known: ${
          SERVE_KEYS.join(", ")
        })`,
      );
    }
  }
  const tokensFile = flags.tokens ?? section.tokens?.trim();
  const tokens = tokensFile
    ? new TokenStore(tokensPath(config, tokensFile))
    : undefined;
  const rules = oidcRules(config.sections, config.path);
  // Paths in [serve] are relative to the config file's folder.
  const fromConfig = (value: string | undefined) =>
    value?.trim()
      ? resolveConfigPath(value.trim(), {
        name: "serve",
        section: "serve",
        configPath: config.path,
        configDir: config.path ? dirname(config.path) : undefined,
      })
      : undefined;
  const certFile = flags.tlsCert ?? fromConfig(section.tls_cert);
  const keyFile = flags.tlsKey ?? fromConfig(section.tls_key);
  const perSecond = Number(section.rate ?? 20);
  const burst = Number(section.burst ?? 120);
  if (!(perSecond > 0) || !(burst >= 1)) {
    throw new UsageError(
      "[serve] rate and burst must be positive numbers (requests per second, and at once)",
    );
  }
  const options: ServeOptions = {
    listen: flags.listen ?? section.listen?.trim(),
    token: flags.token,
    allowBreak: flags.allowBreak,
    tokens,
    verifiers: rules.length > 0 ? [new OidcVerifier(rules)] : [],
    tlsCert: certFile ? readPem(certFile, "--tls-cert") : undefined,
    tlsKey: keyFile ? readPem(keyFile, "--tls-key") : undefined,
    rate: { perSecond, burst },
    onWarn: flags.warn,
    onError: flags.onError,
  };
  const server = serveStatus(locks, options);
  const parts = [
    ...(tokens ? [`named tokens from ${tokens.path}`] : []),
    ...(rules.length > 0
      ? [`${rules.length} OIDC rule${rules.length === 1 ? "" : "s"}`]
      : []),
    ...(flags.token
      ? [
        `shared token: ${
          flags.allowBreak ? "read, acquire, break" : "read, acquire"
        }`,
      ]
      : []),
    ...(options.tlsCert ? ["TLS"] : []),
  ];
  return Promise.resolve({
    ...server,
    url: server.url,
    finished: server.finished,
    shutdown: () => server.shutdown(),
    describe: parts.length > 0 ? parts.join(", ") : "no tokens: read-only",
  });
}
