/**
 * The redis backend's Lua scripts: one per change, so its check-and-set,
 * its fence, its index entry and its history event are one atomic step
 * on the server, and the codec of the lease fields they reply with.
 *
 * @module
 */
import type { Script } from "./client.ts";
import type { LeaseRecord } from "../../lib/kit/contract.ts";

// Shared by every script: the field order of replies, and the lease key's
// fields, or false when there is none, or 'foreign' when it is no hash.
const COMMON = `
local FIELDS = {'id', 'principal', 'created', 'expires', 'fence', 'host', 'reason', 'link'}
local function lease(key)
  local kind = redis.call('TYPE', key).ok
  if kind == 'none' then return false end
  if kind ~= 'hash' then return 'foreign' end
  return redis.call('HMGET', key, unpack(FIELDS))
end
local function reply(status, f)
  local out = {status}
  for i = 1, #FIELDS do out[i + 1] = f[i] end
  return out
end
`;

// For scripts that write: the server's clock in epoch ms (a script that
// reads TIME and then writes needs effect replication before Redis 5),
// and the writers of leases, shadows and events.
const WRITER = COMMON + `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(n) return string.format('%.0f', n) end
local function put(key, f)
  redis.call('HDEL', key, unpack(FIELDS))
  local args = {}
  for i, name in ipairs(FIELDS) do
    if f[i] then args[#args + 1] = name; args[#args + 1] = f[i] end
  end
  redis.call('HSET', key, unpack(args))
end
-- Tells watchers of the resource (ARGV[1]) that its lock changed. A user
-- whose ACL predates events (no PUBLISH) still changes locks; watch fails
-- for it, and waiters poll.
local function announce(channel, kind)
  redis.pcall('PUBLISH', channel, kind)
end
-- ARGV[1..3] of every writer: resource, events kept, their age in ms.
local function record(key, kind, at, f, by)
  local e = {kind = kind, at = at, id = f[1], principal = f[2],
    created = tonumber(f[3]), expires = tonumber(f[4]), by = by}
  if f[5] then e.fence = tonumber(f[5]) end
  if f[6] then e.host = f[6] end
  if f[7] then e.reason = f[7] end
  if f[8] then e.link = f[8] end
  redis.call('LPUSH', key, cjson.encode(e))
  redis.call('LTRIM', key, 0, tonumber(ARGV[2]) - 1)
  local cutoff = now - tonumber(ARGV[3])
  while true do
    local last = redis.call('LINDEX', key, -1)
    if not last then break end
    local ok, old = pcall(cjson.decode, last)
    if not (ok and type(old) == 'table' and tonumber(old.at)
      and tonumber(old.at) < cutoff) then break end
    redis.call('RPOP', key)
  end
  redis.call('PEXPIRE', key, ARGV[3])
end
`;

// KEYS lease, state, history, index, waiters; ARGV resource, kept, age,
// id, principal, ttl ms, host, reason, link ('' for none), events
// channel, and the queue role: 'check' to refuse a free lock while the
// waiters set (KEYS[5], the lock's) has a live member, 'member' to join
// it (KEYS[5] is then the waited-for lock's), '' for neither.
const ACQUIRE = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if f then return reply('held', f) end
if ARGV[11] == 'check' then
  local waiting, first = 0, nil
  -- Every score is 0, so this is name (ticket) order; ZRANGEBYSCORE is
  -- already in the least-privilege ACL.
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '+inf')) do
    local w = lease(ARGV[12] .. name)
    if type(w) == 'table' then
      waiting = waiting + 1
      first = first or w
    else
      redis.call('ZREM', KEYS[5], name)
    end
  end
  if first then
    local out = reply('queued', first)
    out[#FIELDS + 2] = tostring(waiting)
    return out
  end
end
local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local ended = tonumber(old[4])
if old[1] and ended and ended <= now then
  record(KEYS[3], 'expired', ended, old)
end
local fence
if redis.call('HMGET', KEYS[2], 'last')[1] then
  fence = redis.call('HINCRBY', KEYS[2], 'last', 1)
else
  -- No counter: a first acquire, or one evicted. Go on from the newest
  -- fence on record, so a fence never goes back while any record remains.
  local floor = tonumber(old[5]) or 0
  local ok, e = pcall(cjson.decode, redis.call('LINDEX', KEYS[3], 0) or '')
  if ok and type(e) == 'table' and tonumber(e.fence) then
    floor = math.max(floor, tonumber(e.fence))
  end
  fence = floor + 1
  redis.call('HSET', KEYS[2], 'last', fence)
end
local function given(s) if s == '' then return false end return s end
local expires = ms(now + tonumber(ARGV[6]))
f = {ARGV[4], ARGV[5], ms(now), expires, tostring(fence),
  given(ARGV[7]), given(ARGV[8]), given(ARGV[9])}
put(KEYS[1], f)
redis.call('PEXPIREAT', KEYS[1], expires)
put(KEYS[2], f)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ms(now))
redis.call('ZADD', KEYS[4], expires, ARGV[1])
record(KEYS[3], 'acquired', now, f)
announce(ARGV[10], 'acquired')
if ARGV[11] == 'member' then redis.call('ZADD', KEYS[5], 0, ARGV[1]) end
return reply('acquired', f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, ttl ms, '1' to set the
// reason, the reason. Returns nil when the id is not the live lease.
const RENEW = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f or f[1] ~= ARGV[4] then return false end
local kind = 'renewed'
if ARGV[6] == '1' and ARGV[7] ~= (f[7] or '') then
  kind = 'reason-changed'
  f[7] = ARGV[7] ~= '' and ARGV[7]
end
f[4] = ms(now + tonumber(ARGV[5]))
put(KEYS[1], f)
redis.call('PEXPIREAT', KEYS[1], f[4])
put(KEYS[2], f)
redis.call('ZADD', KEYS[4], f[4], ARGV[1])
record(KEYS[3], kind, now, f)
return reply(kind, f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, kind ('released' or
// 'broken'), then the breaker's principal, host and reason, the events
// channel, and 'member' for a waiter's registration (leaving KEYS[5]).
// Returns nil when the id is not the live lease.
const END = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f or f[1] ~= ARGV[4] then return false end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], unpack(FIELDS))
redis.call('ZREM', KEYS[4], ARGV[1])
if ARGV[10] == 'member' then redis.call('ZREM', KEYS[5], ARGV[1]) end
local by = nil
if ARGV[5] == 'broken' then
  by = {principal = ARGV[6], reason = ARGV[8]}
  if ARGV[7] ~= '' then by.host = ARGV[7] end
end
record(KEYS[3], ARGV[5], now, f, by)
announce(ARGV[9], ARGV[5])
return reply(ARGV[5], f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, events channel. Records
// the expiry of lease id (gone from KEYS[1], its shadow past its expiry)
// and clears the shadow; 1 if it did, 0 when renewed, ended or not due.
const EXPIRE = WRITER + `
local f = lease(KEYS[1])
if f then return 0 end
local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
local ended = tonumber(old[4])
if old[1] ~= ARGV[4] or not ended or ended > now then return 0 end
record(KEYS[3], 'expired', ended, old)
redis.call('HDEL', KEYS[2], unpack(FIELDS))
redis.call('ZREM', KEYS[4], ARGV[1])
announce(ARGV[5], 'expired')
return 1
`;

// KEYS lease. Redis never returns a key past its expiry.
const READ = COMMON + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
if not f then return false end
return reply('lease', f)
`;

// KEYS history; ARGV how many. Returns the server's time, then the events.
const HISTORY = `
local t = redis.call('TIME')
local out = {t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  out[#out + 1] = e
end
return out
`;

// KEYS index; ARGV key prefix, name prefix. Returns, for each live lease
// whose name starts with the name prefix, its name and fields. The lease
// keys are named by the index, so they can't be passed as KEYS: this is
// why the backend needs one server, not a cluster.
const LIST = WRITER + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now))
local out = {}
local p = ARGV[2]
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now), '+inf')) do
  if string.sub(name, 1, #p) == p then
    local f = lease(ARGV[1] .. name)
    if not f then
      redis.call('ZREM', KEYS[1], name)
    else
      if f == 'foreign' then f = {} end
      out[#out + 1] = name
      for i = 1, #FIELDS do out[#out + 1] = f[i] or false end
    end
  end
end
return out
`;

/** How many lease fields a reply holds after its status. */
export const FIELD_COUNT = 8;

/** A script's reply: a status, then the lease's fields in FIELDS order. */
export type ScriptReply = (string | null)[];

/** The scripts, each sent by its SHA-1 (EVAL the first time). */
export const SCRIPTS = {
  acquire: { lua: ACQUIRE, keys: 5 },
  renew: { lua: RENEW, keys: 5 },
  end: { lua: END, keys: 5 },
  expire: { lua: EXPIRE, keys: 5 },
  read: { lua: READ, keys: 1 },
  history: { lua: HISTORY, keys: 1 },
  list: { lua: LIST, keys: 1 },
} satisfies Record<string, Script>;

/** Epoch ms as Stormlock writes them; anything else reads as missing. */
function digits(value: string | null | undefined): string | undefined {
  return value && /^\d{1,16}$/.test(value) ? value : undefined;
}

/** The record in a reply's fields, from `offset` on. */
export function toRecord(fields: (string | null)[], offset = 1): LeaseRecord {
  const [id, principal, created, expires, fence, host, reason, link] = fields
    .slice(offset, offset + FIELD_COUNT);
  return {
    id,
    principal,
    // The kit also takes ISO text; here it can only be another tool's.
    created: digits(created),
    expires: digits(expires),
    fence,
    host,
    reason,
    link,
  };
}
