/**
 * How the redis backend names what went wrong: each failure as a timeout,
 * a config mistake, or an unavailable server with its remedy.
 *
 * @module
 */
import type { Classified, FailedOperation } from "../../lib/kit/contract.ts";

/** What to do about a Redis error reply, by its leading code. */
function replyRemedy(message: string): string {
  if (/^READONLY\b/.test(message)) {
    return "point the url at the primary, not a replica";
  }
  if (/^(LOADING|BUSY|TRYAGAIN|MASTERDOWN|CLUSTERDOWN)\b/.test(message)) {
    return "the server is not ready; retry shortly";
  }
  if (/^OOM\b/.test(message)) {
    return "free memory on the server or raise its maxmemory";
  }
  if (/^MISCONF\b/.test(message)) {
    return "fix the server's persistence error (see its log)";
  }
  if (/^(ERR unknown command|ERR .*EVALSHA|NOSCRIPT)/.test(message)) {
    return "use Redis 6 or newer with Lua scripting enabled";
  }
  return "fix what the server names, or retry if it was transient";
}

/** Turns a Redis client failure into the remedy users see. */
export function classify(error: unknown, failed: FailedOperation): Classified {
  // Redis ends some messages with a period; ours continue after them.
  const message = ((error as Error)?.message ?? String(error))
    .replace(/\.$/, "");
  if (message === "Command timed out" || /ETIMEDOUT/.test(message)) {
    return "timeout";
  }
  // Within a script, the code may follow the script's name.
  if (/\bWRONGTYPE\b/.test(message)) {
    return {
      config:
        "holds data under the prefix that Stormlock did not write (WRONGTYPE); set another prefix",
    };
  }
  // Without AUTH, Redis 7 refuses a long command with a protocol error.
  if (
    /\b(WRONGPASS|NOAUTH)\b|Protocol error: unauthenticated/.test(message)
  ) {
    return {
      unavailable:
        `refused the credentials: ${message}; check the user and password in the url`,
    };
  }
  if (/\bNOPERM\b/.test(message)) {
    return {
      unavailable:
        `denied the user permission to ${failed.action}: ${message}; grant it the commands and keys (~PREFIX*) listed in docs/backends/redis.md`,
    };
  }
  // SELECT's own failure is caught where it is sent, naming the option.
  if (/DB index is out of range|invalid DB index/i.test(message)) {
    return {
      config: `has no such database: ${message}; fix the /db part of url`,
    };
  }
  if (/^Protocol error/.test(message)) {
    return {
      unavailable:
        "does not answer in the Redis protocol; check the host, the port, and redis:// versus rediss://",
    };
  }
  if ((error as Error)?.name === "ReplyError") {
    return {
      unavailable: `failed to ${failed.action}: ${message}; ${
        replyRemedy(message)
      }`,
    };
  }
  return {
    unavailable:
      `is unreachable: ${message}; check that the server is up and the url is right`,
  };
}
