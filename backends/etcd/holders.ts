/**
 * The etcd backend's reads over several holders of one lock (slots and
 * shared holds; see "Slots and shared holds" in docs/lock-models.md): the
 * first holder lives at the lock's own key `P R`, each further one at
 * `P 0xFF "holder/" R 0xFE ID` (see `keyspace.ts`).
 *
 * @module
 */
import type { Operation } from "../../lib/kit/contract.ts";
import type { Lease } from "../../lib/kit/types.ts";
import {
  b64,
  bytes,
  decoder,
  type Kv,
  prefixEnd,
  type RangeReply,
  type RequestOp,
  type TxnReply,
  unb64,
} from "./client.ts";
import type { EventValue, Holder, Keyspace, StoredLease } from "./keyspace.ts";

/** Keys per page when listing. */
const PAGE = 500;

/**
 * Further holders as others see them (`live`), and those whose etcd lease
 * is gone but whose key etcd has not swept yet (`gone`). The recorded
 * expiry decides, as for the first holder: no TTL call per holder unless
 * it is past its time.
 */
export async function sortOthers(
  keys: Keyspace,
  others: Holder[],
  op: Operation,
): Promise<{ live: Lease[]; gone: Holder[] }> {
  const seen = await Promise.all(
    others.map((other) => keys.isLive(other, op)),
  );
  return {
    live: others.filter((_, index) => seen[index]).map((one) => one.lease),
    gone: others.filter((_, index) => !seen[index]),
  };
}

/** The live further holder with the lowest fence, if any. */
export async function heirOf(
  keys: Keyspace,
  others: Holder[],
  op: Operation,
): Promise<Holder | undefined> {
  const byFence = [...others].sort((a, b) => a.lease.fence - b.lease.fence);
  for (const other of byFence) {
    if (await keys.isLive(other, op)) return other;
  }
  return undefined;
}

/**
 * Moves further holder `heir` into the lock's own key `key` (base64),
 * keeping its etcd lease; its fence moves into its value, since the key's
 * create_revision no longer is it.
 */
export function promote(
  keys: Keyspace,
  resource: string,
  key: string,
  heir: Holder,
): RequestOp[] {
  const record: StoredLease = { ...heir.record, fence: heir.lease.fence };
  return [
    {
      request_put: {
        key,
        value: b64(JSON.stringify(record)),
        lease: heir.kv.lease,
      },
    },
    { request_delete_range: { key: heir.kv.key } },
    keys.putShadow(resource, { ...record, state: "held" }),
  ];
}

/** The `expired` event of a further holder whose etcd lease ran out. */
export function expiredEvent(other: Holder): EventValue {
  return {
    ...other.record,
    fence: other.lease.fence,
    kind: "expired",
    at: other.record.expires,
  };
}

/** The holder `leaseId` of `resource`, first or further, if present. */
export async function readHolder(
  keys: Keyspace,
  resource: string,
  leaseId: string,
  op: Operation,
): Promise<Holder | undefined> {
  const reply = await keys.call<TxnReply>("/v3/kv/txn", {
    success: [
      { request_range: { key: b64(keys.leaseKey(resource)) } },
      { request_range: { key: b64(keys.holderKey(resource, leaseId)) } },
    ],
  }, op);
  for (const response of reply.responses ?? []) {
    const kv = response.response_range?.kvs?.[0];
    const holder = kv && keys.parse(resource, kv);
    if (holder && holder.record.id === leaseId) return holder;
  }
  return undefined;
}

/** Every holder's key of `resource`, live or not yet swept, at one revision. */
export async function readHolders(
  keys: Keyspace,
  resource: string,
  op: Operation,
): Promise<Holder[]> {
  const reply = await keys.call<TxnReply>("/v3/kv/txn", {
    success: [
      { request_range: { key: b64(keys.leaseKey(resource)) } },
      { request_range: keys.holders(resource) },
    ],
  }, op);
  return (reply.responses ?? []).flatMap((response) =>
    (response.response_range?.kvs ?? []).map((kv) => keys.parse(resource, kv))
  );
}

/**
 * Pages through the lease keys under the prefix at one revision, then the
 * further holders' keys at the same revision. The recorded expiry decides
 * liveness (no TTL call per lease); shadow, holder and history keys sort
 * after every lease key, outside the first range.
 */
export async function listLeases(
  keys: Keyspace,
  prefix: string,
  op: Operation,
): Promise<Lease[]> {
  const start = bytes(keys.prefix, prefix);
  const end = prefix === ""
    ? b64(bytes(keys.prefix, [0xff]))
    : b64(prefixEnd(start));
  const leases: Lease[] = [];
  const revision = await page(
    keys,
    { key: b64(start), range_end: end },
    undefined,
    (kv) => decoder.decode(unb64(kv.key).subarray(keys.prefix.length)),
    leases,
    op,
  );
  await page(
    keys,
    keys.holdersUnder(prefix),
    revision,
    (kv) => keys.holderResource(kv.key),
    leases,
    op,
  );
  return leases;
}

/**
 * Adds the leases in `range` to `leases`, a page at a time, at `revision`
 * (the first page's if not given), which it returns.
 */
async function page(
  keys: Keyspace,
  range: { key: string; range_end: string },
  revision: string | undefined,
  nameOf: (kv: Kv) => string,
  leases: Lease[],
  op: Operation,
): Promise<string> {
  let key = range.key;
  for (;;) {
    const reply: RangeReply = await keys.call("/v3/kv/range", {
      key,
      range_end: range.range_end,
      limit: PAGE,
      ...(revision ? { revision } : {}),
    }, op);
    revision ??= reply.header.revision;
    const kvs = reply.kvs ?? [];
    for (const kv of kvs) leases.push(keys.parse(nameOf(kv), kv).lease);
    if (!reply.more || kvs.length === 0) return revision;
    key = b64(bytes(unb64(kvs[kvs.length - 1].key), [0]));
  }
}
