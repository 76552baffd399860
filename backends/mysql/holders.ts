/**
 * The mysql backend's taking of a lock once admitted: the holders'
 * bookkeeping, apart from mod.ts to keep each file short.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { AcquireRequest } from "../../lib/kit/contract.ts";
import { EXCLUSIVE } from "../../lib/kit/holders.ts";
import { type Connection, exec } from "./client.ts";
import type { Row, statements } from "./statements.ts";

/**
 * Takes resource `key` for `request`, in the transaction that locked its
 * row (`old`, with its further holders `others`) and found the acquire
 * admitted: records and drops the expired further holders, bumps the
 * fence counter, and takes the row when it is free (recording a lapsed
 * lease at its expiry), else adds a row of the holders table. Returns the
 * new holder's columns and the last event number written.
 */
export async function take(
  connection: Connection,
  sql: ReturnType<typeof statements>,
  key: Buffer,
  request: AcquireRequest,
  old: Row,
  others: Row[],
): Promise<{ held: Partial<Row>; n: number }> {
  const limit = request.limit ?? EXCLUSIVE;
  let n = Number(old.events);
  let fence = Math.max(Number(old.fence), Number(old.top_fence ?? 0));
  if (n === 0) {
    const [counts] = await exec<Row[]>(connection, sql.counts, [
      key,
    ]);
    n = Number(counts.events);
    fence = Math.max(fence, Number(counts.fence));
  }
  // Expired further holders are recorded at their expiry, first.
  for (const row of others.filter((row) => !Number(row.live))) {
    n++;
    await exec(connection, sql.recordHolder, [
      n,
      "expired",
      row.expires,
      null,
      null,
      null,
      key,
      row.lease,
    ]);
    await exec(connection, sql.dropHolder, [key, row.lease]);
  }
  fence++;
  const held = {
    lease: request.id,
    principal: request.principal,
    host: request.host ?? null,
    reason: request.reason ?? null,
    link: request.link ?? null,
    fence,
    created: old.now!,
    expires: new Date(old.now!.getTime() + request.ttlSeconds * 1000),
    holder_limit: limit,
  };
  if (Number(old.live)) {
    // Beside the row's holder: a row of the holders table.
    n++;
    await exec(connection, sql.addHolder, [
      key,
      request.id,
      held.principal,
      held.host,
      held.reason,
      held.link,
      fence,
      old.now,
      old.now,
      request.ttlSeconds,
      limit,
    ]);
    await exec(connection, sql.count, [fence, n, key]);
    await exec(connection, sql.recordHolder, [
      n,
      "acquired",
      null,
      null,
      null,
      null,
      key,
      request.id,
    ]);
  } else {
    if (Number(old.used)) {
      // The lease that lapsed is recorded at its expiry, first.
      n++;
      await exec(connection, sql.recordOld, [
        n,
        "expired",
        old.expires,
        null,
        null,
        null,
        key,
      ]);
    }
    n++;
    await exec(connection, sql.take, [
      request.id,
      held.principal,
      held.host,
      held.reason,
      held.link,
      fence,
      fence,
      n,
      old.now,
      old.now,
      request.ttlSeconds,
      limit,
      key,
    ]);
    await exec(connection, sql.recordRow, [
      "acquired",
      null,
      null,
      null,
      null,
      key,
    ]);
  }
  return { held, n };
}
