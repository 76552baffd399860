/**
 * The DynamoDB client, set up so it never writes to the terminal, never
 * retries on its own, and asks no instance metadata unless told to.
 *
 * @module
 */
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { KitContext } from "../../lib/kit/contract.ts";
import { ConfigError } from "../../lib/kit/errors.ts";
import { causes } from "./errors.ts";
import { type DynamoDbSettings, LOCAL_REGION, REGION } from "./options.ts";

/** A logger that says nothing. */
export const SILENT = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The region from the SDK's chain (AWS_REGION, the profile); with only a
 * local endpoint, any region does for signing.
 */
async function chainRegion(
  profile: string | undefined,
  hasEndpoint: boolean,
  context: KitContext,
): Promise<string> {
  const probe = new DynamoDBClient({
    profile,
    defaultsMode: "standard",
    logger: SILENT,
  });
  let region: string | undefined;
  try {
    region = await probe.config.region();
  } catch (error) {
    // A missing permission is the kit's to name; anything else: no region.
    if ([...causes(error)].some((e) => e instanceof Deno.errors.NotCapable)) {
      throw error;
    }
  } finally {
    probe.destroy();
  }
  if (region && (hasEndpoint || REGION.test(region))) return region;
  if (hasEndpoint) return LOCAL_REGION;
  throw new ConfigError(
    region
      ? `The AWS region "${
        region.slice(0, 60)
      }" (from AWS_REGION or the profile) is not an AWS region; set region in [${context.section}], e.g. region = us-east-1`
      : `No AWS region for DynamoDB: set region in [${context.section}], AWS_REGION, or a region in your AWS profile`,
  );
}

/**
 * A client for the configured table's region and endpoint, and the
 * store's label.
 */
export async function openClient(
  settings: DynamoDbSettings,
  context: KitContext,
): Promise<{ client: DynamoDBClient; label: string }> {
  const { endpoint, profile } = settings;
  const credentials = settings.access_key_id && settings.secret_access_key
    ? {
      accessKeyId: settings.access_key_id,
      secretAccessKey: settings.secret_access_key,
    }
    : undefined;
  const region = settings.region ??
    await chainRegion(profile, endpoint !== undefined, context);
  const client = new DynamoDBClient({
    region,
    endpoint: endpoint?.href,
    profile,
    // Static credentials are used as they are; otherwise the SDK's chain
    // (environment, profile, SSO, then container or instance roles,
    // which AWS_EC2_METADATA_DISABLED=true turns off).
    credentials,
    // "standard", not "auto": auto asks the instance metadata service.
    defaultsMode: "standard",
    // One attempt: the kit bounds the operation, and retrying belongs to
    // the wait loop above it, not to a storm of SDK retries.
    maxAttempts: 1,
    requestHandler: { logger: SILENT },
    // The default user agent reads the OS release, which would need
    // --allow-sys=osRelease; it is only telemetry.
    defaultUserAgentProvider: () =>
      Promise.resolve([["aws-sdk-js"], ["lang/js"], ["md/stormlock"]]),
    // The SDK must not write to the terminal; failures reach the user
    // through classify.
    logger: SILENT,
  });
  const label = endpoint
    ? `DynamoDB at ${endpoint.hostname}:${
      endpoint.port || (endpoint.protocol === "https:" ? "443" : "80")
    }`
    : `DynamoDB at dynamodb.${region}.amazonaws.com:443`;
  return { client, label };
}
