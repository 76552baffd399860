/**
 * OIDC for CI against a real issuer on loopback: it serves a discovery
 * document and a JWKS, and signs real tokens with a real RSA key. Also
 * the GitHub Actions flow, where the CLI asks a loopback stand-in for
 * `ACTIONS_ID_TOKEN_REQUEST_URL` for its own ID token.
 */
import assert from "assert";
import { join } from "node:path";
import {
  exportJWK,
  generateKeyPair,
  type JWTPayload,
  SignJWT,
  UnsecuredJWT,
} from "jose";
import {
  BackendUnavailableError,
  ForbiddenError,
  openBackend,
  parseConfig,
  Stormlock,
} from "../mod.ts";
import { oidcRules, OidcVerifier } from "../lib/apps/serve/oidc.ts";
import type { OidcRule } from "../lib/apps/serve/oidc.ts";
import { serveStatus } from "../lib/apps/serve/server.ts";
import { uniqueResource } from "./helpers.ts";

/** A private key as jose makes it (whose CryptoKey type may be Node's). */
type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

/** A loopback OIDC issuer with rotating RSA keys. */
class Issuer implements AsyncDisposable {
  jwksFetches = 0;
  /** `answer`, or `hang` (accept and never reply), or `fail` (HTTP 500). */
  jwksMode: "answer" | "hang" | "fail" = "answer";
  keys: {
    kid: string;
    privateKey: SigningKey;
    publicJwk: JsonWebKey;
  }[] = [];
  readonly #server: Deno.HttpServer;
  readonly #hanging: (() => void)[] = [];

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      async (request) => {
        const path = new URL(request.url).pathname;
        if (path === "/.well-known/openid-configuration") {
          return Response.json({
            issuer: this.url,
            jwks_uri: `${this.url}/jwks`,
          });
        }
        if (path === "/jwks") {
          this.jwksFetches++;
          if (this.jwksMode === "hang") {
            await new Promise<void>((done) => this.#hanging.push(done));
            return new Response("late", { status: 503 });
          }
          if (this.jwksMode === "fail") {
            return new Response("down", { status: 500 });
          }
          return Response.json({
            keys: this.keys.map((key) => ({
              ...key.publicJwk,
              kid: key.kid,
              alg: "RS256",
              use: "sig",
            })),
          });
        }
        return new Response("no", { status: 404 });
      },
    );
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.addr as Deno.NetAddr).port}`;
  }

  /** Adds a new signing key; tokens are signed with the newest. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = await generateKeyPair("RS256", {
      extractable: true,
    });
    const kid = `k${this.keys.length + 1}`;
    this.keys.push({ kid, privateKey, publicJwk: await exportJWK(publicKey) });
    return kid;
  }

  /** A signed token with GitHub-like claims, changed by `claims`. */
  async sign(
    claims: JWTPayload = {},
    { kid, key }: { kid?: string; key?: CryptoKey } = {},
  ): Promise<string> {
    const newest = this.keys.at(-1)!;
    const now = Math.floor(Date.now() / 1000);
    return await new SignJWT({
      repository: "acme/app",
      repository_owner: "acme",
      ref: "refs/heads/main",
      run_id: "42",
      ...claims,
    })
      .setProtectedHeader({ alg: "RS256", kid: kid ?? newest.kid })
      .setIssuer(claims.iss ?? this.url)
      .setAudience(claims.aud ?? "stormlock")
      .setIssuedAt(now)
      .setNotBefore(claims.nbf ?? now - 5)
      .setExpirationTime(claims.exp ?? now + 300)
      .sign(key ?? newest.privateKey);
  }

  async [Symbol.asyncDispose]() {
    this.#hanging.forEach((done) => done());
    await this.#server.shutdown();
  }
}

function rule(issuer: string, extra: Partial<OidcRule> = {}): OidcRule {
  return {
    name: "github",
    issuer,
    audience: "stormlock",
    claims: { repository_owner: "acme" },
    principal: "github:{repository}@{ref}",
    scopes: ["read", "acquire"],
    resources: ["deploy/*"],
    ...extra,
  };
}

function test(name: string, fn: () => Promise<void> | void) {
  Deno.test({ name, sanitizeOps: false, sanitizeResources: false, fn });
}

async function refused(promise: Promise<unknown>, pattern: RegExp) {
  const error = await promise.then(() => undefined, (e) => e);
  assert.ok(error instanceof ForbiddenError, String(error));
  assert.match(error.message, pattern);
}

test("oidc: a valid token gives the rule's principal, scopes, resources and the run's link", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  const verifier = new OidcVerifier([rule(issuer.url)]);
  const who = await verifier.identify(await issuer.sign());
  assert.deepEqual(who, {
    principal: "github:acme/app@refs/heads/main",
    scopes: ["read", "acquire"],
    resources: ["deploy/*"],
    via: "oidc",
    link: "https://github.com/acme/app/actions/runs/42",
  });
});

test("oidc: alg none, HS256 keyed with the public key, wrong aud, expired and nbf in the future are refused", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  const verifier = new OidcVerifier([rule(issuer.url)]);
  const now = Math.floor(Date.now() / 1000);
  const unsigned = new UnsecuredJWT({ repository_owner: "acme", sub: "x" })
    .setIssuer(issuer.url).setAudience("stormlock").setExpirationTime(
      now + 300,
    ).encode();
  await refused(verifier.identify(unsigned), /not allowed|malformed/);
  // The classic confusion attack: the public key's bytes as an HMAC secret.
  const secret = new TextEncoder().encode(
    JSON.stringify(issuer.keys[0].publicJwk),
  );
  const confused = await new SignJWT({ repository_owner: "acme" })
    .setProtectedHeader({ alg: "HS256", kid: issuer.keys[0].kid })
    .setIssuer(issuer.url).setAudience("stormlock").setExpirationTime(
      now + 300,
    ).sign(secret);
  await refused(verifier.identify(confused), /algorithm is not allowed/);
  await refused(
    verifier.identify(await issuer.sign({ aud: "someone-else" })),
    /claim aud failed/,
  );
  await refused(
    verifier.identify(await issuer.sign({ exp: now - 120 })),
    /expired/,
  );
  await refused(
    verifier.identify(await issuer.sign({ nbf: now + 600 })),
    /claim nbf failed/,
  );
  // A token from an issuer no rule names is not this verifier's.
  assert.equal(
    await verifier.identify(
      await issuer.sign({ iss: "https://elsewhere.example" }),
    ),
    undefined,
  );
});

test("oidc: an unknown kid fetches the JWKS again once, then verifies with the new key", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  const verifier = new OidcVerifier([rule(issuer.url)], {
    refetchCooldownMs: 0,
  });
  await verifier.identify(await issuer.sign());
  assert.equal(issuer.jwksFetches, 1);
  await issuer.rotate();
  const who = await verifier.identify(await issuer.sign());
  assert.equal(who?.principal, "github:acme/app@refs/heads/main");
  assert.equal(issuer.jwksFetches, 2);
  // A kid the issuer never had: one more fetch, then a clear refusal.
  await refused(
    verifier.identify(await issuer.sign({}, { kid: "nope" })),
    /no key of the issuer matches/,
  );
  assert.equal(issuer.jwksFetches, 3);
});

test("oidc: a JWKS endpoint that hangs or fails gives a bounded, clear unavailable error", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  for (const mode of ["hang", "fail"] as const) {
    issuer.jwksMode = mode;
    const verifier = new OidcVerifier([rule(issuer.url)], { timeoutMs: 300 });
    const error = await verifier.identify(await issuer.sign()).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(error instanceof BackendUnavailableError, `${mode}: ${error}`);
    assert.match(error.message, /OIDC issuer's keys/);
  }
});

test("oidc: a claim condition not met is refused, naming the claim", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  const verifier = new OidcVerifier([rule(issuer.url)]);
  await refused(
    verifier.identify(await issuer.sign({ repository_owner: "evil" })),
    /claim repository_owner is "evil", not "acme"/,
  );
});

test("oidc: [oidc.NAME] sections are read, and a rule without a claim condition is refused", () => {
  const config = parseConfig(
    "[oidc.gh]\nissuer = https://token.actions.githubusercontent.com\naudience = stormlock\nprincipal = github:{repository}@{ref}\nscopes = acquire\nresources = deploy/*\nclaim.repository_owner = acme\nclaim.ref = refs/heads/*\n",
  );
  const [read] = oidcRules(config.sections);
  assert.deepEqual(read.claims, {
    repository_owner: "acme",
    ref: "refs/heads/*",
  });
  assert.deepEqual(read.scopes, ["acquire"]);
  assert.throws(
    () =>
      oidcRules(
        parseConfig(
          "[oidc.gh]\nissuer = https://x.example\naudience = a\nprincipal = p\nscopes = read\n",
        ).sections,
      ),
    /at least one claim condition/,
  );
  assert.throws(
    () =>
      oidcRules(
        parseConfig(
          "[oidc.gh]\nissuer = http://x.example\naudience = a\nprincipal = p\nscopes = read\nclaim.a = b\n",
        ).sections,
      ),
    /must be https/,
  );
});

/** A lock server over SQLite that admits the issuer's tokens. */
function oidcServer(issuerUrl: string) {
  const folder = Deno.makeTempDirSync({ prefix: "stormlock-oidc-" });
  const locks = new Stormlock(
    parseConfig(
      `[default]\nbackend = sqlite\n[backend.sqlite]\npath = ${
        join(folder, "locks.db")
      }\n`,
    ),
    { warn() {} },
  );
  const server = serveStatus(locks, {
    listen: "127.0.0.1:0",
    verifiers: [new OidcVerifier([rule(issuerUrl)])],
  });
  return {
    url: server.url,
    async [Symbol.asyncDispose]() {
      await server.shutdown();
      await locks.close();
      Deno.removeSync(folder, { recursive: true });
    },
  };
}

test("oidc: through the server, a resource outside the patterns and a missing scope are refused (77), and wrong iss is refused", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  await using server = oidcServer(issuer.url);
  const folder = Deno.makeTempDirSync();
  const open = async (token: string) => {
    const file = join(folder, crypto.randomUUID());
    Deno.writeTextFileSync(file, token);
    return await openBackend(
      { url: server.url, token_file: file, timeout: "5s" },
      { name: "http", section: "backend.http" },
    );
  };
  const ci = await open(await issuer.sign());
  try {
    const lease = await ci.acquire(`deploy/${crypto.randomUUID()}`, "x", 60);
    assert.equal(lease.principal, "github:acme/app@refs/heads/main");
    assert.equal(lease.link, "https://github.com/acme/app/actions/runs/42");
    await refused(ci.acquire("db-prod", "x", 60), /may not touch "db-prod"/);
    await refused(
      ci.breakLease(lease.resource, "", { principal: "x", reason: "y" }),
      /lacks the "break" scope/,
    );
    const stranger = await open(
      await issuer.sign({ iss: "https://elsewhere.example" }),
    );
    await refused(stranger.current("deploy/x"), /refused/);
    await stranger.close();
    const evil = await open(await issuer.sign({ repository_owner: "evil" }));
    await refused(evil.current("deploy/x"), /repository_owner/);
    await evil.close();
  } finally {
    await ci.close();
    Deno.removeSync(folder, { recursive: true });
  }
});

test("oidc: in GitHub Actions the CLI requests its own ID token, with the audience, and the run's URL goes into the lease", async () => {
  await using issuer = new Issuer();
  await issuer.rotate();
  await using server = oidcServer(issuer.url);
  const requestToken = `req-${crypto.randomUUID()}`;
  const asked: string[] = [];
  // A stand-in for GitHub's token service.
  const actions = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    async (request) => {
      const url = new URL(request.url);
      if (request.headers.get("authorization") !== `Bearer ${requestToken}`) {
        return new Response("unauthorised", { status: 401 });
      }
      asked.push(url.searchParams.get("audience") ?? "");
      return Response.json({
        value: await issuer.sign({ aud: url.searchParams.get("audience")! }),
      });
    },
  );
  const saved = Deno.env.get("STORMLOCK_TOKEN");
  Deno.env.delete("STORMLOCK_TOKEN");
  Deno.env.set(
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    `http://127.0.0.1:${
      (actions.addr as Deno.NetAddr).port
    }/token?api-version=2.0`,
  );
  Deno.env.set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", requestToken);
  const backend = await openBackend(
    { url: server.url, timeout: "5s" },
    { name: "http", section: "backend.http" },
  );
  try {
    const resource = `deploy/${uniqueResource()}`;
    const lease = await backend.acquire(resource, "runner@host", 60);
    assert.equal(lease.principal, "github:acme/app@refs/heads/main");
    assert.equal(lease.link, "https://github.com/acme/app/actions/runs/42");
    await backend.release(resource, lease.id);
    assert.deepEqual(asked, ["stormlock"], "one ID token, reused");
    // Without id-token: write, the request is refused: a clear 77.
    Deno.env.set("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong");
    const fresh = await openBackend(
      { url: server.url, timeout: "5s" },
      { name: "http", section: "backend.http" },
    );
    await refused(fresh.current(resource), /id-token: write/);
    await fresh.close();
  } finally {
    await backend.close();
    Deno.env.delete("ACTIONS_ID_TOKEN_REQUEST_URL");
    Deno.env.delete("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    if (saved !== undefined) Deno.env.set("STORMLOCK_TOKEN", saved);
    await actions.shutdown();
  }
});
