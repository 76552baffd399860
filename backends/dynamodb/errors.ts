/**
 * The DynamoDB backend's failures, and how `classify` words them.
 *
 * @module
 */
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";
import { ConfigError, UsageError } from "../../lib/kit/errors.ts";
import { scrubSecrets } from "../../lib/kit/options.ts";
import { shorten } from "../../lib/kit/text.ts";

/** What a failure needs for its message besides the store's label. */
export interface Where {
  table: string;
  section: string;
  profile?: string;
}

/**
 * An SDK or network failure, carrying what `classify` needs to name a
 * remedy. Its message has the configured secrets scrubbed.
 */
export class AwsFailure extends Error {
  constructor(
    override readonly cause: unknown,
    readonly where: Where,
    secrets: readonly string[],
  ) {
    super(scrubSecrets(String((cause as Error)?.message ?? cause), secrets), {
      cause,
    });
    this.name = "AwsFailure";
  }
}

/** Walks an error and its causes. */
export function* causes(error: unknown): Generator<unknown> {
  for (let e = error, depth = 0; e && depth < 6; depth++) {
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/** The SDK's name for a failure, through an {@linkcode AwsFailure}. */
export function awsName(error: unknown): string | undefined {
  const inner = error instanceof AwsFailure ? error.cause : error;
  return (inner as Error)?.name;
}

const AUTH_ERRORS = new Set([
  "UnrecognizedClientException",
  "InvalidSignatureException",
  "AccessDeniedException",
  "ExpiredTokenException",
  "IncompleteSignatureException",
  "MissingAuthenticationTokenException",
]);

/** Errors that mean "too many requests": retrying later helps. */
const THROTTLED = new Set([
  "ProvisionedThroughputExceededException",
  "ThrottlingException",
  "RequestLimitExceeded",
  "LimitExceededException",
]);

/** Replies that are not HTTP, or not DynamoDB's: a wrong port or host. */
const NO_HTTP =
  /Parse Error|Expected HTTP|invalid HTTP|HPE_|wrong version number|packet length too long|record layer failure|corrupt message|InvalidData/i;
/** HTTP replies that are not DynamoDB's JSON. */
const NOT_DYNAMODB = /Deserialization error|Unexpected token|not valid JSON/i;

/**
 * Words the SDK's failures, wrapped in {@linkcode AwsFailure}; the kit
 * handles the rest.
 *
 * @example
 * ```ts
 * import { classifyDynamoDbError } from "./errors.ts";
 * classifyDynamoDbError(new Error("x"), { action: "read", label: "DynamoDB" }); // undefined
 * ```
 */
export function classifyDynamoDbError(
  error: unknown,
  failed: FailedOperation,
): Classified | undefined {
  if (!(error instanceof AwsFailure)) return undefined;
  const { table, section, profile } = error.where;
  const inner = error.cause as Error & {
    $metadata?: { httpStatusCode?: number };
    $response?: { statusCode?: number };
  };
  const name = inner?.name ?? "Error";
  // One line: the SDK adds advice on lines of its own.
  const message = shorten(error.message.split("\n")[0].replace(/\.$/, ""));
  const status = inner?.$metadata?.httpStatusCode ??
    inner?.$response?.statusCode;
  const all = [...causes(inner)];
  const text = all.map((e) =>
    `${(e as Error)?.message} ${(e as { code?: unknown })?.code}`
  ).join(" ");
  if (name === "ResourceNotFoundException") {
    // With create_table, the kit creates it with init and retries.
    return {
      missing:
        `has no table "${table}": it does not exist; run \`stormlock init\` or set create_table = true in [${section}]`,
    };
  }
  if (name === "CredentialsProviderError") {
    return new ConfigError(
      `No AWS credentials found for ${failed.label}${
        profile ? ` in profile "${profile}"` : ""
      }: set access_key_id and secret_access_key in [${section}], a profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a credential_process profile also needs --allow-run)`,
      { cause: inner },
    );
  }
  // Before timeouts: a parser giving up is no timeout.
  if (NO_HTTP.test(text)) {
    return {
      unavailable:
        `does not speak HTTP/DynamoDB at that endpoint (${message}); check endpoint and its port in [${section}]`,
    };
  }
  if (
    NOT_DYNAMODB.test(text) || name === "UnknownOperationException" ||
    name === "Unknown" || name === "UnknownError"
  ) {
    return {
      unavailable:
        `does not speak HTTP/DynamoDB at that endpoint: it answered HTTP ${
          status ?? "?"
        }, not as DynamoDB does; check endpoint and its port in [${section}]`,
    };
  }
  if (
    name === "TimeoutError" || name === "RequestTimeout" ||
    /ETIMEDOUT|timed? ?out/i.test(text)
  ) {
    return "timeout";
  }
  // Node's system errors: ECONNREFUSED, ENOTFOUND, ECONNRESET…
  const code = all.map((e) => (e as { code?: unknown })?.code).find((c) =>
    typeof c === "string" && /^E[A-Z]+$/.test(c)
  );
  if (code) {
    return {
      unavailable:
        `could not be reached (${code}); check endpoint and region in [${section}]`,
    };
  }
  if (AUTH_ERRORS.has(name)) {
    return {
      unavailable: `refused the credentials (${name}): ${message}; ${
        name === "AccessDeniedException"
          ? `give them IAM access to table "${table}"`
          : `check the credentials and region in [${section}]`
      }`,
    };
  }
  if (THROTTLED.has(name)) {
    return {
      unavailable:
        `is throttling requests (${name}); retry later, or raise the table's capacity`,
    };
  }
  if (name === "ValidationException" && /size/i.test(message)) {
    return new UsageError(
      `The lease item for "${
        (failed.resource ?? "").slice(0, 100)
      }" is too large for DynamoDB (at most 400 KB per item): ${message}; keep principal, host, reason and link small`,
      { cause: inner },
    );
  }
  if (name === "ValidationException") {
    return {
      config:
        `rejected the request to ${failed.action} on table "${table}": ${message}; ${
          /key element|key schema|hash key|partition key/i.test(message)
            ? "the table's hash key must be resource (type S), or choose another table"
            : "choose a table of Stormlock's own"
        } in [${section}]`,
    };
  }
  return {
    unavailable:
      `failed to ${failed.action} (${name}): ${message}; fix what the service names, or retry if it was transient`,
  };
}
