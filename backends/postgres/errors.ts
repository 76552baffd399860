/**
 * How the postgres backend names what went wrong: by SQLSTATE for the
 * server's errors, by the client's code for the rest.
 *
 * @module
 */
import postgres from "postgres";
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";
import { UsageError } from "../../lib/kit/errors.ts";
import {
  EVENTS_SUFFIX,
  SqlFailure,
  type SqlPlace,
  sqlRemedies,
} from "../../lib/kit/sql.ts";

/** A postgres.js failure; its message has the password masked. */
export class PostgresFailure extends SqlFailure {
  /**
   * @param error What postgres.js threw.
   * @param place Where, for messages.
   * @param password Masked out of the message.
   */
  constructor(error: unknown, place: SqlPlace, password: string) {
    super(error, place, password);
    this.name = "PostgresFailure";
  }
}

/** The remedy for a table another Stormlock (or someone else) made. */
function wrongShape(table: string, section: string, message: string): string {
  return `has a table ${table} not shaped like this Stormlock's (${message}); if Stormlock 0.1 made it, run "stormlock init" to upgrade it (or set create_table = true in [${section}]); else set table in [${section}] to another name`;
}

/** What to do about a server error, by SQLSTATE; `undefined` for the default. */
function serverRemedy(
  code: string,
  message: string,
  failure: PostgresFailure,
): Classified | undefined {
  const { table, section } = failure.place;
  const events = `${table}${EVENTS_SUFFIX}`;
  const urlSetting = /parameter/i.test(message);
  switch (code) {
    case "42P01":
      return sqlRemedies.noTable(failure.place, message);
    case "42703":
      return { missing: wrongShape(table, section, message) };
    case "42P10":
    case "42804":
    case "42883":
      return { config: wrongShape(table, section, message) };
    case "3F000":
      return { config: `${message}; create the schema of table ${table}` };
    case "3D000":
      return {
        config: `${message}; create it, or fix the url in [${section}]`,
      };
    case "42501":
      return urlSetting
        ? {
          config:
            `${message}; remove that setting from the url in [${section}]`,
        }
        : {
          config:
            `${message}; grant the role SELECT, INSERT, UPDATE and DELETE on ${table} and ${events} (and CREATE on the schema for init)`,
        };
    case "42704":
    case "22023":
    case "55P02":
      if (!urlSetting) return undefined;
      return {
        config:
          `rejected a server setting in the url: ${message}; fix or remove that parameter in the url in [${section}]`,
      };
    case "28P01":
    case "28000":
      return {
        unavailable:
          `refused the login: ${message}; check the user and password in the url in [${section}]`,
      };
    case "57014":
      return "timeout";
    case "54000":
      return new UsageError(
        `The resource name is too long for ${failure.place.where}: its index entry would take more than PostgreSQL's 2704 bytes even compressed (${message}); names of up to 2,684 bytes always fit, so use a shorter one`,
        { cause: failure },
      );
    case "22021":
      return new UsageError(
        `PostgreSQL can't store this text (${message}): resource names and reasons must not contain NUL characters`,
        { cause: failure },
      );
    case "22P02":
      return new UsageError(
        `${message}; check the lease id (the 32 hex digits printed by "stormlock acquire") and the TTL`,
        { cause: failure },
      );
    case "25006":
      return sqlRemedies.readOnly(message, "the url", section);
    case "53300":
      return sqlRemedies.noFreeConnection(message);
  }
  return undefined;
}

/** Turns a postgres.js failure into the remedy users see. */
export function classify(error: unknown, failed: FailedOperation): Classified {
  if (!(error instanceof PostgresFailure)) {
    return sqlRemedies.notDriver(error, failed);
  }
  const code = error.code;
  const { message } = error;
  const { section } = error.place;
  if (error.error instanceof postgres.PostgresError) {
    return serverRemedy(code, message, error) ??
      sqlRemedies.otherServerError(failed, message, `SQLSTATE ${code}`);
  }
  switch (code) {
    case "CONNECT_TIMEOUT":
      return "timeout";
    case "ECONNREFUSED":
      return {
        unavailable:
          `refused the connection; check that the server is up and the url's host and port in [${section}] are right`,
      };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return {
        unavailable:
          `is not a host name that resolves; check the host in the url in [${section}]`,
      };
    case "STORMLOCK_CLOSED_EARLY":
      return {
        unavailable:
          "closed the connection during startup; check that it is a PostgreSQL server and that sslmode in the url matches what it expects",
      };
  }
  if (/CERT|TLS|SSL/.test(code)) {
    return {
      unavailable:
        `failed TLS: ${message}; check sslmode and sslrootcert in the url in [${section}]`,
    };
  }
  return sqlRemedies.otherClientError(failed, message);
}
