/**
 * OIDC rules for the lock server: a CI job (GitHub Actions, say) proves
 * who it is with an ID token signed by its issuer, and an `[oidc.NAME]`
 * rule turns the token's claims into a principal, scopes and resources.
 * Signatures are checked by `jose` against the issuer's JWKS (fetched,
 * cached and bounded in time), with `iss`, `aud`, `exp` and `nbf`.
 *
 * @module
 */
import {
  createRemoteJWKSet,
  decodeJwt,
  errors as joseErrors,
  type JWTPayload,
  jwtVerify,
} from "jose";
import {
  BackendUnavailableError,
  ConfigError,
  ForbiddenError,
} from "../../kit/errors.ts";
import { shorten } from "../../kit/text.ts";
import {
  type Identity,
  parsePatterns,
  parseScopes,
  resourceAllowed,
  type Scope,
} from "./identity.ts";
import type { TokenVerifier } from "./auth.ts";

/** Asymmetric algorithms only: never `none`, never a shared secret. */
const ALGORITHMS = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
];

/**
 * One `[oidc.NAME]` rule.
 * @example
 * ```ts ignore
 * import type { OidcRule } from "./oidc.ts";
 * const rule: OidcRule = {
 *   name: "github",
 *   issuer: "https://token.actions.githubusercontent.com",
 *   audience: "stormlock",
 *   claims: { repository_owner: "acme" },
 *   principal: "github:{repository}@{ref}",
 *   scopes: ["acquire"],
 * };
 * ```
 */
export interface OidcRule {
  /** The rule's name, from its section. */
  name: string;
  /** The `iss` the token must carry. */
  issuer: string;
  /** The `aud` the token must carry. */
  audience: string;
  /** Claims the token must have, by name; `*` in a value is any text. */
  claims: Record<string, string>;
  /** The principal, with `{claim}` replaced by the claim's value. */
  principal: string;
  /** What the rule grants. */
  scopes: Scope[];
  /** Resource patterns it grants; all when absent. */
  resources?: string[];
  /**
   * The link put into leases, with `{claim}`s; by default the GitHub run
   * (`https://github.com/{repository}/actions/runs/{run_id}`) when the
   * token has those claims.
   */
  link?: string;
  /** Where the keys are; by default from the issuer's discovery document. */
  jwksUrl?: string;
}

/**
 * How the verifier fetches keys.
 * @example
 * ```ts ignore
 * import type { OidcOptions } from "./oidc.ts";
 * const options: OidcOptions = { timeoutMs: 5000, refetchCooldownMs: 10_000 };
 * ```
 */
export interface OidcOptions {
  /**
   * Bound on fetching a discovery document or a JWKS.
   * @default 5000
   */
  timeoutMs?: number;
  /**
   * The least time between two JWKS fetches for an unknown key id.
   * @default 10000
   */
  refetchCooldownMs?: number;
  /**
   * Clock skew allowed on `exp` and `nbf`, in seconds.
   * @default 30
   */
  skewSeconds?: number;
}

const KNOWN_KEYS = new Set([
  "issuer",
  "audience",
  "principal",
  "scopes",
  "resources",
  "link",
  "jwks_url",
]);

/**
 * Reads the `[oidc.NAME]` sections of a config.
 * @throws {ConfigError} on a missing or bad key, naming the section.
 * @example
 * ```ts ignore
 * import { oidcRules } from "./oidc.ts";
 * import { parseConfig } from "@stormlock/stormlock";
 * const config = parseConfig("[oidc.gh]\nissuer = https://token.actions.githubusercontent.com\naudience = stormlock\nprincipal = github:{repository}\nscopes = acquire\nclaim.repository_owner = acme\n");
 * console.log(oidcRules(config.sections)[0].claims); // { repository_owner: "acme" }
 * ```
 */
export function oidcRules(
  sections: Record<string, Record<string, string>>,
  file = "<config>",
): OidcRule[] {
  const rules: OidcRule[] = [];
  for (const [section, values] of Object.entries(sections)) {
    if (!section.startsWith("oidc.")) continue;
    const where = `${file} [${section}]`;
    const need = (key: string) => {
      const value = values[key]?.trim();
      if (!value) {
        throw new ConfigError(
          `${where}: ${key} is missing; see "run a team server" in docs/team-server.md`,
        );
      }
      return value;
    };
    const claims: Record<string, string> = {};
    for (const [key, value] of Object.entries(values)) {
      if (key.startsWith("claim.")) claims[key.slice(6)] = value.trim();
      else if (!KNOWN_KEYS.has(key)) {
        throw new ConfigError(
          `${where}: unknown key ${key} (known: ${
            [...KNOWN_KEYS].join(", ")
          }, claim.NAME)`,
        );
      }
    }
    const issuer = need("issuer");
    checkUrl(issuer, `${where}: issuer`);
    if (values.jwks_url) checkUrl(values.jwks_url, `${where}: jwks_url`);
    if (Object.keys(claims).length === 0) {
      throw new ConfigError(
        `${where}: give at least one claim condition, e.g. claim.repository_owner = acme; without one, every token from the issuer would be let in`,
      );
    }
    let scopes: Scope[];
    let resources: string[] | undefined;
    try {
      scopes = parseScopes(need("scopes"));
      resources = values.resources === undefined
        ? undefined
        : parsePatterns(values.resources);
    } catch (error) {
      throw new ConfigError(`${where}: ${(error as Error).message}`);
    }
    rules.push({
      name: section.slice(5),
      issuer,
      audience: need("audience"),
      claims,
      principal: need("principal"),
      scopes,
      resources,
      link: values.link?.trim() || undefined,
      jwksUrl: values.jwks_url?.trim() || undefined,
    });
  }
  return rules;
}

/** https, or http on loopback only (for tests and local issuers). */
function checkUrl(text: string, where: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(`${where}: "${shorten(text)}" is not a URL`);
  }
  const loopback = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/.test(
    url.hostname,
  );
  if (url.protocol !== "https:" && !(url.protocol === "http:" && loopback)) {
    throw new ConfigError(`${where}: must be https://`);
  }
  return url;
}

/** Whether a claim's value matches a condition (`*` is any text). */
function claimMatches(value: unknown, wanted: string): boolean {
  if (typeof value !== "string" && typeof value !== "number") return false;
  return resourceAllowed(String(value), [wanted]);
}

/** Fills `{claim}`s; `undefined` when a claim is missing. */
function fill(template: string, claims: JWTPayload): string | undefined {
  let missing = false;
  const text = template.replace(/\{([A-Za-z0-9_.-]+)\}/g, (_, name) => {
    const value = claims[name];
    if (typeof value !== "string" && typeof value !== "number") {
      missing = true;
      return "";
    }
    return String(value);
  });
  return missing ? undefined : text;
}

type KeySet = ReturnType<typeof createRemoteJWKSet>;

/**
 * Verifies OIDC ID tokens against a set of rules.
 * @example
 * ```ts ignore
 * const verifier = new OidcVerifier(oidcRules(config.sections));
 * const who = await verifier.identify(idToken);
 * ```
 */
export class OidcVerifier implements TokenVerifier {
  readonly #rules: OidcRule[];
  readonly #options: Required<OidcOptions>;
  readonly #keys = new Map<string, Promise<KeySet>>();

  /**
   * @param rules The `[oidc.NAME]` rules.
   * @param options Fetch bounds and clock skew.
   */
  constructor(rules: OidcRule[], options: OidcOptions = {}) {
    this.#rules = rules;
    this.#options = {
      timeoutMs: options.timeoutMs ?? 5000,
      refetchCooldownMs: options.refetchCooldownMs ?? 10_000,
      skewSeconds: options.skewSeconds ?? 30,
    };
  }

  /** The key set of an issuer, from its discovery document once. */
  #keySet(rule: OidcRule): Promise<KeySet> {
    const key = rule.jwksUrl ?? rule.issuer;
    let keys = this.#keys.get(key);
    if (!keys) {
      keys = (async () => {
        let url = rule.jwksUrl;
        if (url === undefined) {
          const discovery = `${
            rule.issuer.replace(/\/$/, "")
          }/.well-known/openid-configuration`;
          let document: { jwks_uri?: unknown };
          try {
            const reply = await fetch(discovery, {
              signal: AbortSignal.timeout(this.#options.timeoutMs),
            });
            document = await reply.json();
          } catch (error) {
            throw new BackendUnavailableError(
              `The OIDC issuer's discovery document at ${discovery} could not be read (${
                (error as Error).name
              }) within ${this.#options.timeoutMs} ms; check that the issuer is reachable from the server`,
            );
          }
          if (typeof document?.jwks_uri !== "string") {
            throw new BackendUnavailableError(
              `The OIDC issuer's discovery document at ${discovery} names no jwks_uri`,
            );
          }
          url = document.jwks_uri;
          checkUrl(url, `[oidc.${rule.name}] the issuer's jwks_uri`);
        }
        return createRemoteJWKSet(new URL(url), {
          timeoutDuration: this.#options.timeoutMs,
          cooldownDuration: this.#options.refetchCooldownMs,
          cacheMaxAge: 10 * 60_000,
        });
      })();
      // A failed discovery is not cached: the next token tries again.
      keys.catch(() => this.#keys.delete(key));
      this.#keys.set(key, keys);
    }
    return keys;
  }

  /**
   * The identity a token's rule grants, or `undefined` when the token is
   * not a JWT from a configured issuer.
   * @throws {ForbiddenError} when it is, but is refused, saying why.
   * @throws {BackendUnavailableError} when the issuer's keys can't be read.
   */
  async identify(token: string): Promise<Identity | undefined> {
    if (!/^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)) return undefined;
    let unverified: JWTPayload;
    try {
      unverified = decodeJwt(token);
    } catch {
      return undefined;
    }
    const rules = this.#rules.filter((rule) => rule.issuer === unverified.iss);
    if (rules.length === 0) return undefined;
    const reasons: string[] = [];
    for (const rule of rules) {
      let claims: JWTPayload;
      try {
        ({ payload: claims } = await jwtVerify(
          token,
          await this.#keySet(rule),
          {
            issuer: rule.issuer,
            audience: rule.audience,
            algorithms: ALGORITHMS,
            clockTolerance: this.#options.skewSeconds,
            requiredClaims: ["exp"],
          },
        ));
      } catch (error) {
        reasons.push(`[oidc.${rule.name}]: ${this.#why(error)}`);
        continue;
      }
      const unmet = Object.entries(rule.claims).find(([name, wanted]) =>
        !claimMatches(claims[name], wanted)
      );
      if (unmet) {
        reasons.push(
          `[oidc.${rule.name}]: claim ${unmet[0]} is ${
            JSON.stringify(shorten(String(claims[unmet[0]] ?? "missing"), 80))
          }, not ${JSON.stringify(unmet[1])}`,
        );
        continue;
      }
      const principal = fill(rule.principal, claims);
      if (!principal) {
        reasons.push(
          `[oidc.${rule.name}]: the token lacks a claim its principal template ${rule.principal} needs`,
        );
        continue;
      }
      const link = rule.link
        ? fill(rule.link, claims)
        : fill("https://github.com/{repository}/actions/runs/{run_id}", claims);
      return {
        principal,
        scopes: rule.scopes,
        resources: rule.resources,
        via: "oidc",
        ...(link && /^https?:\/\//.test(link) ? { link } : {}),
      };
    }
    throw new ForbiddenError(
      `The OIDC token was refused: ${reasons.join("; ")}`,
    );
  }

  #why(error: unknown): string {
    if (error instanceof BackendUnavailableError) throw error;
    if (error instanceof ConfigError) throw error;
    if (error instanceof joseErrors.JWKSTimeout) {
      throw new BackendUnavailableError(
        `The OIDC issuer's keys did not arrive within ${this.#options.timeoutMs} ms; check that the issuer is reachable from the server`,
      );
    }
    if (
      error instanceof joseErrors.JOSEError &&
        (error.code === "ERR_JWKS_INVALID" ||
          /^Expected 200 OK from the JSON Web Key Set/.test(error.message)) ||
      (error as Error)?.name === "TypeError" ||
      (error as Error)?.name === "AbortError"
    ) {
      throw new BackendUnavailableError(
        `The OIDC issuer's keys could not be fetched (${
          (error as Error).message
        }); check that the issuer is reachable from the server`,
      );
    }
    if (error instanceof joseErrors.JWTExpired) return "the token has expired";
    if (error instanceof joseErrors.JWTClaimValidationFailed) {
      return `claim ${error.claim} failed: ${error.reason}`;
    }
    if (error instanceof joseErrors.JOSEAlgNotAllowed) {
      return "its algorithm is not allowed (asymmetric signatures only)";
    }
    if (error instanceof joseErrors.JWKSNoMatchingKey) {
      return "no key of the issuer matches its kid, even after fetching the keys again";
    }
    if (error instanceof joseErrors.JWSSignatureVerificationFailed) {
      return "its signature does not verify";
    }
    if (error instanceof joseErrors.JOSEError) {
      return `it is malformed (${error.code})`;
    }
    return "it could not be verified";
  }
}
