/**
 * How the mysql backend names what went wrong: by the server's `ER_…`
 * code, or the client's socket code.
 *
 * @module
 */
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";
import { UsageError } from "../../lib/kit/errors.ts";
import {
  EVENTS_SUFFIX,
  SqlFailure,
  type SqlPlace,
  sqlRemedies,
} from "../../lib/kit/sql.ts";
import { MAX_NAME_BYTES } from "./statements.ts";

/** A mysql2 failure, with the password masked out of its message. */
export class MysqlFailure extends SqlFailure {
  /**
   * @param error What mysql2 threw.
   * @param place Where, for messages.
   * @param password Masked out of the message.
   */
  constructor(error: unknown, place: SqlPlace, password: string) {
    super(error, place, password);
    this.name = "MysqlFailure";
  }

  /** Whether the server answered (an `ER_…` error with a SQLSTATE). */
  get fromServer(): boolean {
    return typeof (this.error as { sqlState?: unknown })?.sqlState ===
        "string" && this.code.startsWith("ER_");
  }
}

/** What to do about a server error, by its code; `undefined` for the default. */
function serverRemedy(failure: MysqlFailure): Classified | undefined {
  const { table, section, where } = failure.place;
  const { message } = failure;
  switch (failure.code) {
    case "ER_NO_SUCH_TABLE":
      return sqlRemedies.noTable(failure.place, message);
    case "ER_BAD_FIELD_ERROR":
      return {
        missing:
          `has a table ${table} not shaped like this Stormlock's (${message}); if the original Stormlock made it, run "stormlock init" to upgrade it; else set table in [${section}] to another name`,
      };
    case "ER_BAD_DB_ERROR":
    case "ER_NO_DB_ERROR":
      return {
        config:
          `${message}; create the database, or fix database in [${section}]`,
      };
    case "ER_ACCESS_DENIED_ERROR":
    case "ER_ACCESS_DENIED_NO_PASSWORD_ERROR":
    case "ER_HOST_NOT_PRIVILEGED":
      return {
        unavailable:
          `refused the login: ${message}; check user and password in [${section}]`,
      };
    case "ER_DBACCESS_DENIED_ERROR":
      // The server says this too when the database does not exist.
      return {
        config:
          `${message}; check database in [${section}] (it may not exist), or grant the user its rights there`,
      };
    case "ER_TABLEACCESS_DENIED_ERROR":
    case "ER_COLUMNACCESS_DENIED_ERROR":
    case "ER_SPECIFIC_ACCESS_DENIED_ERROR":
      return {
        config:
          `${message}; grant the user SELECT, INSERT, UPDATE and DELETE on ${table} and ${table}${EVENTS_SUFFIX} (and CREATE and ALTER for init)`,
      };
    case "ER_LOCK_WAIT_TIMEOUT":
    case "ER_QUERY_TIMEOUT":
    case "ER_STATEMENT_TIMEOUT":
      return "timeout";
    case "ER_LOCK_DEADLOCK":
      return { unavailable: `${message}; retry` };
    case "ER_DATA_TOO_LONG":
    case "ER_TOO_LONG_KEY":
      return new UsageError(
        `The resource name or a detail is too long for ${where} (${message}); resource names may have at most ${MAX_NAME_BYTES} bytes of UTF-8`,
        { cause: failure },
      );
    case "ER_OPTION_PREVENTS_STATEMENT":
    case "ER_READ_ONLY_MODE":
      return sqlRemedies.readOnly(message, "host", section);
    case "ER_CON_COUNT_ERROR":
    case "ER_TOO_MANY_USER_CONNECTIONS":
      return sqlRemedies.noFreeConnection(message);
  }
  return undefined;
}

/** Turns a mysql2 failure into the remedy users see. */
export function classify(error: unknown, failed: FailedOperation): Classified {
  if (!(error instanceof MysqlFailure)) {
    return sqlRemedies.notDriver(error, failed);
  }
  const { code, message } = error;
  const { section } = error.place;
  if (error.fromServer) {
    return serverRemedy(error) ??
      sqlRemedies.otherServerError(failed, message, code);
  }
  switch (code) {
    case "ETIMEDOUT":
      return "timeout";
    case "ECONNREFUSED":
      return {
        unavailable:
          `refused the connection; check that the server is up and host and port in [${section}] are right`,
      };
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return {
        unavailable:
          `is not a host name that resolves; check host in [${section}]`,
      };
    case "ENOENT":
      return {
        unavailable: `has no socket there; check unix_socket in [${section}]`,
      };
    case "HANDSHAKE_NO_SSL_SUPPORT":
      return {
        unavailable:
          `does not offer TLS; turn TLS on at the server, or remove ssl_ca and tls from [${section}]`,
      };
    case "PROTOCOL_CONNECTION_LOST":
    case "ECONNRESET":
    case "EPIPE":
      return {
        unavailable:
          `closed the connection during ${failed.action}; check that the server is up and is MySQL or MariaDB, then retry`,
      };
  }
  if (/CERT|TLS|SSL|SELF_SIGNED|VERIFY/.test(code)) {
    return {
      unavailable:
        `failed TLS (${code}): ${message}; check ssl_ca and ssl_verify_identity in [${section}]`,
    };
  }
  return sqlRemedies.otherClientError(failed, message);
}
