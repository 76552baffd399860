/**
 * The DynamoDB backend: one item per resource in a table whose hash key is
 * `resource`. Every change is a single conditional write, so DynamoDB
 * decides atomically who wins.
 *
 * DynamoDB has no server clock to ask, so expiry uses this host's clock:
 * operators whose clocks disagree see a lease expire earlier or later by
 * that skew. Items also carry `ttl` (epoch seconds) for DynamoDB's TTL
 * sweeper, which only tidies up: an expired lease is free at once, whether
 * or not the sweeper has deleted its item yet.
 *
 * @module
 */
import {
  ConditionalCheckFailedException,
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DescribeTimeToLiveCommand,
  DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  UpdateTimeToLiveCommand,
} from "@aws-sdk/client-dynamodb";
import type {
  AttributeValue,
  DescribeTableCommandOutput,
  DescribeTimeToLiveCommandOutput,
  GetItemCommandOutput,
  UpdateItemCommandOutput,
} from "@aws-sdk/client-dynamodb";
import {
  BackendUnavailableError,
  ConfigError,
  LeaseNotHeldError,
  LockHeldError,
  StormlockError,
  UsageError,
} from "../lib/kit/errors.ts";
import { deniedPermission } from "../lib/kit/permissions.ts";
import { DeadlineError, sleep, withDeadline } from "../lib/kit/deadline.ts";
import {
  booleanOption,
  formatTimeout,
  optionError,
  textOption,
  timeoutOption,
} from "../lib/kit/options.ts";
import { newLeaseId } from "../lib/kit/lease.ts";
import type {
  Backend,
  BackendContext,
  BackendOptions,
  Lease,
} from "../lib/kit/types.ts";

/** Options of `[backend.dynamodb]`. */
export const optionNames = [
  "table",
  "region",
  "endpoint",
  "profile",
  "access_key_id",
  "secret_access_key",
  "timeout",
  "create_table",
] as const;

/** The table used when the config names none. */
export const DEFAULT_TABLE = "stormlock";
/** The attribute DynamoDB's TTL sweeper reads: expiry in epoch seconds. */
export const TTL_ATTRIBUTE = "ttl";

const DEFAULT_TIMEOUT_MS = 3000;
/** How long `init()` waits for a new table to become ACTIVE. */
const TABLE_READY_MS = 120_000;
/** DynamoDB's limit on a partition key's size. */
const MAX_KEY_BYTES = 2048;
/** A region for signing when only a local endpoint is configured. */
const LOCAL_REGION = "us-east-1";

/** The parsed, validated options of the DynamoDB backend. */
export interface DynamoDbSettings {
  /**
   * The table's name.
   * @default {"stormlock"}
   */
  table: string;
  /** The AWS region; otherwise the SDK's chain (AWS_REGION, profile). */
  region?: string;
  /** A custom endpoint such as `http://127.0.0.1:8000` (DynamoDB Local). */
  endpoint?: URL;
  /** The shared-config profile for region and credentials. */
  profile?: string;
  /** Static credentials; otherwise the SDK's default provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * Bound on each operation, in milliseconds.
   * @default {3000}
   */
  timeoutMs: number;
  /**
   * Whether a missing table is created on first use.
   * @default {false}
   */
  createTable: boolean;
}

type Item = Record<string, AttributeValue>;
type AnyCommand = Parameters<DynamoDBClient["send"]>[0];
type Send = <Output>(command: unknown) => Promise<Output>;

function sweepAt(expiresMs: number): string {
  // Rounded up, so the sweeper never deletes an item before it expires.
  return String(Math.ceil(expiresMs / 1000));
}

function toLease(item: Item): Lease {
  return {
    resource: item.resource?.S ?? "",
    id: item.lease?.S ?? "",
    principal: item.principal?.S ?? "",
    created: new Date(Number(item.created?.N)),
    expires: new Date(Number(item.expires?.N)),
  };
}

/** The lease in `item` if it is still live at `now` (our clock). */
function liveLease(item: Item | undefined, now: number): Lease | null {
  if (!item) return null;
  const lease = toLease(item);
  return lease.expires.getTime() > now ? lease : null;
}

/** Walks an error and its causes. */
function* causes(error: unknown): Generator<unknown> {
  for (let e = error, depth = 0; e && depth < 5; depth++) {
    yield e;
    e = (e as { cause?: unknown }).cause;
  }
}

/** A lock store in a DynamoDB table. Expiry uses this host's clock. */
export class DynamoDbBackend implements Backend {
  readonly #settings: DynamoDbSettings;
  readonly #section: string;
  #client?: DynamoDBClient;
  #region?: string;
  #closed = false;

  /**
   * Prepares the backend; nothing is sent until the first operation.
   * @param settings Validated options.
   * @param section The config section, for messages.
   */
  constructor(settings: DynamoDbSettings, section = "backend.dynamodb") {
    this.#settings = settings;
    this.#section = section;
    this.#region = settings.region;
  }

  /** `host:port` of the server, never with credentials. */
  get #where(): string {
    const { endpoint } = this.#settings;
    if (endpoint) {
      const port = endpoint.port ||
        (endpoint.protocol === "https:" ? "443" : "80");
      return `DynamoDB at ${endpoint.hostname}:${port}`;
    }
    return `DynamoDB at dynamodb.${this.#region ?? "?"}.amazonaws.com:443`;
  }

  #makeClient(region: string | undefined): DynamoDBClient {
    const { endpoint, profile, credentials, timeoutMs } = this.#settings;
    return new DynamoDBClient({
      region,
      endpoint: endpoint?.href,
      profile,
      credentials,
      // One attempt: a retry storm would break the timeout bound.
      maxAttempts: 1,
      // Without throwOnRequestTimeout the SDK only warns and keeps waiting;
      // #send's own timer is the bound either way.
      requestHandler: {
        connectionTimeout: timeoutMs,
        requestTimeout: timeoutMs,
        throwOnRequestTimeout: true,
        logger: SILENT,
      },
      // The SDK's default user agent reads the OS release, which would need
      // --allow-sys=osRelease; it is only telemetry, so leave it out.
      defaultUserAgentProvider: () =>
        Promise.resolve([["aws-sdk-js"], ["lang/js"], ["md/stormlock"]]),
      // The SDK must not write to the terminal (it warns on stderr about,
      // e.g., a profile and AWS_ACCESS_KEY_ID both set); errors reach the
      // user through #translate instead.
      logger: SILENT,
    });
  }

  /** The client, built on first use once the region is known. */
  async #ready(): Promise<DynamoDBClient> {
    if (this.#closed) {
      throw new UsageError("The dynamodb backend is closed; open a new one");
    }
    if (this.#client) return this.#client;
    let client = this.#makeClient(this.#settings.region);
    if (!this.#region) {
      try {
        this.#region = await client.config.region();
      } catch (error) {
        client.destroy();
        if (!this.#settings.endpoint) {
          throw new ConfigError(
            `No AWS region for DynamoDB: set region in [${this.#section}], AWS_REGION, or a region in your AWS profile`,
            { cause: error },
          );
        }
        // A local endpoint (dynalite, DynamoDB Local) ignores the region;
        // any valid one will do for signing.
        this.#region = LOCAL_REGION;
        client = this.#makeClient(LOCAL_REGION);
      }
    }
    this.#client = client;
    return client;
  }

  /** Sends one command, rejecting at `deadline` whatever the SDK does. */
  async #send<Output>(command: unknown, deadline: number): Promise<Output> {
    const client = await this.#ready();
    return await withDeadline(
      Math.max(0, deadline - Date.now()),
      (signal) => client.send(command as AnyCommand, { abortSignal: signal }),
    ) as Output;
  }

  /**
   * Runs one operation within the timeout, translating errors. With
   * `create_table`, a missing table is created and the operation retried
   * once.
   */
  async #op<T>(action: string, body: (send: Send) => Promise<T>): Promise<T> {
    const attempt = () => {
      const deadline = Date.now() + this.#settings.timeoutMs;
      return body((command) => this.#send(command, deadline));
    };
    try {
      try {
        return await attempt();
      } catch (error) {
        if (!this.#settings.createTable || !isMissingTable(error)) throw error;
        await this.init();
        return await attempt();
      }
    } catch (error) {
      throw this.#translate(error, action);
    }
  }

  /** The one place where SDK and network errors become ours. */
  #translate(error: unknown, action: string): Error {
    if (error instanceof StormlockError) return error;
    const { table, timeoutMs } = this.#settings;
    const all = [...causes(error)];
    const denied = deniedPermission(
      all.find((e) => e instanceof Deno.errors.NotCapable),
    );
    if (denied) {
      return new ConfigError(
        `The DynamoDB client lacks a Deno permission: it needs ${denied.need}; run main.ts with ${denied.flag}`,
        { cause: error },
      );
    }
    const name = (error as Error)?.name ?? "Error";
    const message = this.#scrub((error as Error)?.message ?? String(error));
    if (isMissingTable(error)) {
      return new ConfigError(
        `DynamoDB table "${table}" does not exist; run \`stormlock init RESOURCE\` or set create_table = true in [${this.#section}]`,
        { cause: error },
      );
    }
    if (name === "CredentialsProviderError") {
      return new ConfigError(
        `No AWS credentials found for DynamoDB${
          this.#settings.profile
            ? ` in profile "${this.#settings.profile}"`
            : ""
        }: set access_key_id and secret_access_key in [${this.#section}], a profile, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a credential_process profile also needs --allow-run)`,
        { cause: error },
      );
    }
    if (
      error instanceof DeadlineError || name === "AbortError" ||
      name === "TimeoutError" ||
      all.some((e) => /ETIMEDOUT|timed? ?out/i.test(`${(e as Error)?.message}`))
    ) {
      return new BackendUnavailableError(
        `${this.#where} did not answer within ${
          formatTimeout(timeoutMs)
        }; check that it is up and reachable, or raise timeout in [${this.#section}]`,
        { cause: error },
      );
    }
    // Node's system errors: ECONNREFUSED, ENOTFOUND, ECONNRESET…
    const code = all.map((e) => (e as { code?: unknown })?.code).find((c) =>
      typeof c === "string" && /^E[A-Z]+$/.test(c)
    );
    if (code) {
      return new BackendUnavailableError(
        `${this.#where} could not be reached (${code}); check endpoint and region in [${this.#section}]`,
        { cause: error },
      );
    }
    if (AUTH_ERRORS.has(name)) {
      return new BackendUnavailableError(
        `${this.#where} refused the credentials (${name}): ${message}; ${
          name === "AccessDeniedException"
            ? `give them IAM access to table "${table}"`
            : `check the credentials and region in [${this.#section}]`
        }`,
        { cause: error },
      );
    }
    const status = (error as { $metadata?: { httpStatusCode?: number } })
      ?.$metadata?.httpStatusCode;
    if (name === "Unknown" || name === "UnknownOperationException") {
      // Something answered HTTP, but not as DynamoDB does.
      return new BackendUnavailableError(
        `${this.#where} answered HTTP ${
          status ?? "?"
        } to ${action}, not as DynamoDB does; check endpoint in [${this.#section}]`,
        { cause: error },
      );
    }
    if (name === "ValidationException") {
      return new ConfigError(
        `${this.#where} rejected the request to ${action} on table "${table}": ${message}; the table's hash key must be resource (type S)`,
        { cause: error },
      );
    }
    return new BackendUnavailableError(
      `${this.#where} failed to ${action} (${name}): ${message}; ${
        THROTTLED.has(name)
          ? "retry later, or raise the table's capacity"
          : "fix what the service names, or retry if it was transient"
      }`,
      { cause: error },
    );
  }

  /** Removes configured credentials from text that reaches the user. */
  #scrub(text: string): string {
    const secrets = Object.values(this.#settings.credentials ?? {});
    return secrets.reduce(
      (out, secret) => secret ? out.replaceAll(secret, "***") : out,
      text,
    );
  }

  #key(resource: string): Item {
    const bytes = new TextEncoder().encode(resource).length;
    if (bytes > MAX_KEY_BYTES) {
      throw new UsageError(
        `The resource name is ${bytes} bytes; DynamoDB keys hold at most ${MAX_KEY_BYTES}, so use a shorter name`,
      );
    }
    return { resource: { S: resource } };
  }

  #get(send: Send, resource: string): Promise<Item | undefined> {
    return send<GetItemCommandOutput>(
      new GetItemCommand({
        TableName: this.#settings.table,
        Key: this.#key(resource),
        ConsistentRead: true,
      }),
    ).then((output) => output.Item);
  }

  acquire(
    resource: string,
    principal: string,
    ttlSeconds: number,
  ): Promise<Lease> {
    return this.#op("acquire", async (send) => {
      // Each round ends in a win or a live holder, unless the holder left
      // between our write and our read; three rounds are plenty.
      for (let round = 0; round < 3; round++) {
        const now = Date.now();
        const lease: Lease = {
          resource,
          id: newLeaseId(),
          principal,
          created: new Date(now),
          expires: new Date(now + ttlSeconds * 1000),
        };
        try {
          await send(
            new PutItemCommand({
              TableName: this.#settings.table,
              Item: {
                ...this.#key(resource),
                lease: { S: lease.id },
                principal: { S: principal },
                created: { N: String(now) },
                expires: { N: String(lease.expires.getTime()) },
                [TTL_ATTRIBUTE]: { N: sweepAt(lease.expires.getTime()) },
              },
              ConditionExpression:
                "attribute_not_exists(#resource) OR #expires <= :now",
              ExpressionAttributeNames: {
                "#resource": "resource",
                "#expires": "expires",
              },
              ExpressionAttributeValues: { ":now": { N: String(now) } },
              // DynamoDB returns the holder with the failure; emulators
              // such as dynalite don't, so we read it then.
              ReturnValuesOnConditionCheckFailure: "ALL_OLD",
            }),
          );
          return lease;
        } catch (error) {
          if (!(error instanceof ConditionalCheckFailedException)) throw error;
          const holder = liveLease(
            error.Item ?? await this.#get(send, resource),
            Date.now(),
          );
          if (holder) throw new LockHeldError(holder);
        }
      }
      throw new BackendUnavailableError(
        `The lock on "${resource}" kept changing hands; try again`,
      );
    });
  }

  release(resource: string, leaseId: string): Promise<void> {
    return this.#op("release", async (send) => {
      await ifHeld(
        resource,
        leaseId,
        send(
          new DeleteItemCommand({
            TableName: this.#settings.table,
            Key: this.#key(resource),
            // An expired lease is not released: someone may hold it anew.
            ConditionExpression: "#lease = :lease AND #expires > :now",
            ExpressionAttributeNames: {
              "#lease": "lease",
              "#expires": "expires",
            },
            ExpressionAttributeValues: {
              ":lease": { S: leaseId },
              ":now": { N: String(Date.now()) },
            },
          }),
        ),
      );
    });
  }

  renew(resource: string, leaseId: string, ttlSeconds: number): Promise<Lease> {
    return this.#op("renew", async (send) => {
      const now = Date.now();
      const expires = now + ttlSeconds * 1000;
      const output = await ifHeld(
        resource,
        leaseId,
        send<UpdateItemCommandOutput>(
          new UpdateItemCommand({
            TableName: this.#settings.table,
            Key: this.#key(resource),
            UpdateExpression: "SET #expires = :expires, #ttl = :ttl",
            ConditionExpression: "#lease = :lease AND #expires > :now",
            ExpressionAttributeNames: {
              "#lease": "lease",
              "#expires": "expires",
              "#ttl": TTL_ATTRIBUTE,
            },
            ExpressionAttributeValues: {
              ":lease": { S: leaseId },
              ":now": { N: String(now) },
              ":expires": { N: String(expires) },
              ":ttl": { N: sweepAt(expires) },
            },
            ReturnValues: "ALL_NEW",
          }),
        ),
      );
      return toLease(output.Attributes ?? {});
    });
  }

  current(resource: string): Promise<Lease | null> {
    return this.#op("read", async (send) => {
      return liveLease(await this.#get(send, resource), Date.now());
    });
  }

  async isHeld(resource: string, leaseId: string): Promise<boolean> {
    return (await this.current(resource))?.id === leaseId;
  }

  /**
   * Creates the table (on-demand capacity) if it is missing, waits until
   * it is ACTIVE, and turns on DynamoDB's TTL sweeper for `ttl`. Idempotent.
   *
   * @throws {ConfigError} when the table exists with another key schema
   * or its TTL is set on another attribute.
   */
  async init(): Promise<void> {
    const { table, timeoutMs } = this.#settings;
    const send: Send = (command) => this.#send(command, Date.now() + timeoutMs);
    try {
      try {
        await send(
          new CreateTableCommand({
            TableName: table,
            BillingMode: "PAY_PER_REQUEST",
            AttributeDefinitions: [
              { AttributeName: "resource", AttributeType: "S" },
            ],
            KeySchema: [{ AttributeName: "resource", KeyType: "HASH" }],
          }),
        );
      } catch (error) {
        // Someone else created it, now or long ago.
        if ((error as Error)?.name !== "ResourceInUseException") throw error;
      }
      await this.#waitUntilActive(send);
      await this.#enableTtl(send);
    } catch (error) {
      throw this.#translate(error, "create the table");
    }
  }

  async #waitUntilActive(send: Send): Promise<void> {
    const { table } = this.#settings;
    const giveUp = Date.now() + TABLE_READY_MS;
    while (true) {
      const { Table } = await send<DescribeTableCommandOutput>(
        new DescribeTableCommand({ TableName: table }),
      );
      const hash = Table?.KeySchema?.find((key) => key.KeyType === "HASH");
      const type = Table?.AttributeDefinitions?.find((attribute) =>
        attribute.AttributeName === hash?.AttributeName
      )?.AttributeType;
      if (
        Table?.KeySchema?.length !== 1 || hash?.AttributeName !== "resource" ||
        type !== "S"
      ) {
        throw new ConfigError(
          `DynamoDB table "${table}" exists but its key is not the hash key resource (type S); choose another table in [${this.#section}]`,
        );
      }
      if (Table.TableStatus === "ACTIVE") return;
      if (Date.now() > giveUp) {
        throw new BackendUnavailableError(
          `DynamoDB table "${table}" is still ${Table.TableStatus} after ${
            formatTimeout(TABLE_READY_MS)
          }; run \`stormlock init\` again later`,
        );
      }
      await sleep(500);
    }
  }

  async #enableTtl(send: Send): Promise<void> {
    const { table } = this.#settings;
    try {
      const { TimeToLiveDescription: ttl } = await send<
        DescribeTimeToLiveCommandOutput
      >(new DescribeTimeToLiveCommand({ TableName: table }));
      const status = ttl?.TimeToLiveStatus ?? "DISABLED";
      if (status === "ENABLED" || status === "ENABLING") {
        if (ttl?.AttributeName === TTL_ATTRIBUTE) return;
        throw new ConfigError(
          `DynamoDB table "${table}" has TTL on "${ttl?.AttributeName}", but Stormlock writes expiry in epoch seconds to "${TTL_ATTRIBUTE}"; disable TTL on the table and run \`stormlock init\` again`,
        );
      }
      await send(
        new UpdateTimeToLiveCommand({
          TableName: table,
          TimeToLiveSpecification: {
            AttributeName: TTL_ATTRIBUTE,
            Enabled: true,
          },
        }),
      );
    } catch (error) {
      // Emulators such as dynalite lack the TTL API. The sweeper only
      // tidies up expired items, which acquire overwrites anyway.
      if ((error as Error)?.name === "UnknownOperationException") return;
      throw error;
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    this.#client?.destroy();
    this.#client = undefined;
    return Promise.resolve();
  }
}

const SILENT = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};

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

function isMissingTable(error: unknown): boolean {
  return (error as Error)?.name === "ResourceNotFoundException";
}

/**
 * Awaits a write conditional on `leaseId` holding the resource; a failed
 * condition means it does not.
 */
async function ifHeld<T>(
  resource: string,
  leaseId: string,
  write: Promise<T>,
): Promise<T> {
  try {
    return await write;
  } catch (error) {
    if (error instanceof ConditionalCheckFailedException) {
      throw new LeaseNotHeldError(resource, leaseId);
    }
    throw error;
  }
}

/**
 * Parses `[backend.dynamodb]` into settings.
 *
 * @throws {ConfigError} naming the file, section and key of a bad value.
 *
 * @example
 * ```ts
 * import { parseDynamoDbOptions } from "./dynamodb.ts";
 * const settings = parseDynamoDbOptions(
 *   { endpoint: "http://127.0.0.1:8000", timeout: "500ms" },
 *   { name: "dynamodb", section: "backend.dynamodb" },
 * );
 * console.log(settings.table, settings.timeoutMs); // "stormlock" 500
 * ```
 */
export function parseDynamoDbOptions(
  options: BackendOptions,
  context: BackendContext,
): DynamoDbSettings {
  const fail = (key: string, why: string) => optionError(context, key, why);
  const text = (key: string) => textOption(options, key);

  const table = text("table") ?? DEFAULT_TABLE;
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw fail(
      "table",
      `"${table}" is not a DynamoDB table name (3 to 255 of A-Z, a-z, 0-9, _ . -)`,
    );
  }

  let endpoint: URL | undefined;
  const endpointText = text("endpoint");
  if (endpointText !== undefined) {
    endpoint = URL.canParse(endpointText) ? new URL(endpointText) : undefined;
    if (
      !endpoint || !["http:", "https:"].includes(endpoint.protocol) ||
      endpoint.username || endpoint.password
    ) {
      throw fail(
        "endpoint",
        "expected a URL like http://127.0.0.1:8000 or https://dynamodb.eu-west-1.amazonaws.com, without credentials",
      );
    }
  }

  const accessKeyId = text("access_key_id");
  const secretAccessKey = text("secret_access_key");
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw fail(
      accessKeyId ? "secret_access_key" : "access_key_id",
      "set both access_key_id and secret_access_key, or neither to use the AWS credential chain",
    );
  }

  return {
    table,
    region: text("region"),
    endpoint,
    profile: text("profile"),
    credentials: accessKeyId && secretAccessKey
      ? { accessKeyId, secretAccessKey }
      : undefined,
    timeoutMs: timeoutOption(options, context, DEFAULT_TIMEOUT_MS),
    createTable: booleanOption(options, context, "create_table", false),
  };
}

/**
 * Builds the backend from `[backend.dynamodb]`: `table` (default
 * `stormlock`), `region`, `endpoint`, `profile`, `access_key_id` and
 * `secret_access_key` (otherwise the AWS default credential chain),
 * `timeout` (default 3s) and `create_table` (default false).
 */
export function createBackend(
  options: BackendOptions,
  context: BackendContext,
): Backend {
  return new DynamoDbBackend(
    parseDynamoDbOptions(options, context),
    context.section,
  );
}
