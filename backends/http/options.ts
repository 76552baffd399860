/**
 * The `http` backend's options: the servers' URLs and the token.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSpec, SettingsOf } from "../../lib/kit/options.ts";

/** The `[backend.http]` options. */
export const options = {
  url: {
    kind: "text",
    default: "http://127.0.0.1:7878",
    doc:
      "The lock server, or several separated by commas or spaces: each call goes to the one that last answered, and fails over to the next when it can't be reached.",
  },
  token_file: {
    kind: "text",
    // Masked in reports, as it always was: it says where the token is.
    secret: true,
    doc:
      "A file holding the token (from `stormlock token create`); `STORMLOCK_TOKEN` wins over it. In GitHub Actions with `id-token: write` and neither set, the CLI asks Actions for an OIDC ID token.",
  },
  audience: {
    kind: "text",
    default: "stormlock",
    doc: "The audience of the GitHub Actions ID token the CLI requests.",
  },
  ca_cert: {
    kind: "pem",
    doc: "A PEM file of CAs to trust for `https://`, for a private CA.",
  },
  allow_plain_http: {
    kind: "boolean",
    default: false,
    doc:
      "Allow `http://` to a host that is not loopback, which sends the token in the clear. Only behind a network you trust.",
  },
  timeout: {
    kind: "duration",
    default: "10s",
    doc:
      "Bound on each call, failover included; a dead url gets its share of it.",
  },
} satisfies Record<string, OptionSpec>;

/**
 * Whether a host name only reaches this machine: loopback addresses and
 * `localhost` itself. A `*.localhost` name is not trusted here, since
 * nothing checks what it resolves to before the token is sent.
 */
function loopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return host === "localhost" || host === "::1" ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** The servers `url` names, each checked: https, or http on loopback. */
export function serverUrls(
  settings: SettingsOf<typeof options>,
  context: KitContext,
): URL[] {
  const urls = settings.url.split(/[\s,]+/).filter(Boolean).map((text) => {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw context.optionError(
        "url",
        `"${text}" is not a URL; give https://HOST[:PORT]`,
      );
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") {
      throw context.optionError(
        "url",
        `"${text}" must start with https:// (or http:// on loopback)`,
      );
    }
    if (
      url.protocol === "http:" && !loopbackHost(url.hostname) &&
      !settings.allow_plain_http
    ) {
      throw context.optionError(
        "url",
        `${url.origin} is plain http to another host, which would send the token in the clear; use https://, or set allow_plain_http = true if the network is trusted`,
      );
    }
    if (url.username || url.password) {
      throw context.optionError(
        "url",
        "put the token in token_file or STORMLOCK_TOKEN, not in the URL",
      );
    }
    return url;
  });
  if (urls.length === 0) {
    throw context.optionError("url", "it is empty; name the lock server");
  }
  return urls;
}

/** Reads the token: STORMLOCK_TOKEN, else token_file; never printed. */
export function readToken(
  tokenFile: string | undefined,
  context: KitContext,
): { token?: string; source?: string } {
  const fromEnv = Deno.env.get("STORMLOCK_TOKEN")?.trim();
  if (fromEnv) return { token: fromEnv, source: "STORMLOCK_TOKEN" };
  if (tokenFile === undefined) return {};
  const path = context.resolvePath(tokenFile);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (error) {
    throw context.optionError(
      "token_file",
      `${path} can't be read (${
        (error as Error).name
      }); write the token from "stormlock token create" there`,
    );
  }
  const token = text.trim();
  if (token === "" || /\s/.test(token)) {
    throw context.optionError(
      "token_file",
      `${path} must hold one token on one line`,
    );
  }
  return { token, source: path };
}
