/**
 * The DynamoDB backend's options, and the checks the schema can't say.
 *
 * @module
 */
import type { KitContext } from "../../lib/kit/contract.ts";
import type { OptionSpec, SettingsOf } from "../../lib/kit/options.ts";

/** A region for signing when only a local endpoint is configured. */
export const LOCAL_REGION = "us-east-1";
/** What an AWS region's name looks like: us-east-1, us-gov-west-1. */
export const REGION = /^[a-z]{2}(-[a-z]+)+-\d{1,2}$/;

/** The `[backend.dynamodb]` options. */
export const options = {
  table: {
    kind: "text",
    default: "stormlock",
    doc: "The table; its hash key is `resource` (type S).",
  },
  region: {
    kind: "text",
    doc:
      "The AWS region, e.g. `eu-west-1`. Default: `AWS_REGION` or the profile's region; with `endpoint`, `us-east-1`.",
  },
  endpoint: {
    kind: "url",
    schemes: ["http:", "https:"],
    doc:
      "A custom endpoint, e.g. `http://127.0.0.1:8000` for DynamoDB Local; without credentials in it.",
  },
  profile: {
    kind: "text",
    doc: "The AWS shared-config profile for region and credentials.",
  },
  access_key_id: {
    kind: "text",
    secret: true,
    doc: "Static credentials; otherwise the AWS default credential chain.",
  },
  secret_access_key: {
    kind: "text",
    secret: true,
    doc: "The secret of `access_key_id`; never shown in any message.",
  },
  timeout: {
    kind: "duration",
    default: "3s",
    doc: "Bound on each operation, every request in it included.",
  },
  create_table: {
    kind: "boolean",
    default: false,
    doc: "Create a missing table on first use, as `stormlock init` does.",
  },
} satisfies Record<string, OptionSpec>;

/** Pairs of `[backend.dynamodb]` options set together. */
export const together = [
  ["access_key_id", "secret_access_key"],
] as const;

/** The settings the options yield. */
export type DynamoDbSettings = SettingsOf<typeof options>;

/** Refuses a table name, endpoint or region DynamoDB would not take. */
export function checkSettings(
  settings: DynamoDbSettings,
  context: KitContext,
): void {
  const { table, endpoint } = settings;
  if (!/^[A-Za-z0-9_.-]{3,255}$/.test(table)) {
    throw context.optionError(
      "table",
      `"${
        table.slice(0, 60)
      }" is not a DynamoDB table name (3 to 255 of A-Z, a-z, 0-9, _ . -)`,
    );
  }
  if (endpoint && (endpoint.username || endpoint.password)) {
    throw context.optionError(
      "endpoint",
      "it holds credentials; set access_key_id and secret_access_key instead",
    );
  }
  if (settings.region !== undefined && !REGION.test(settings.region)) {
    throw context.optionError(
      "region",
      `"${
        settings.region.slice(0, 60)
      }" is not an AWS region; use a name like us-east-1 or eu-west-1`,
    );
  }
}
