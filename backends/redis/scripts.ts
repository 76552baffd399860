/**
 * The redis backend's Lua scripts: one per change, so its check-and-set,
 * its fence, its index entry and its history event are one atomic step
 * on the server, and the codec of the lease fields they reply with.
 *
 * A lock with slots or shared holds keeps its first holder in the lease
 * hash, as an exclusive lock does, and its further holders in a sorted
 * set beside it (`P \0holders\0 R`): each member is a holder's record as
 * JSON, scored by its fence, so the set reads in fence order with the
 * commands the least-privilege ACL already grants.
 *
 * @module
 */
import type { Script } from "./client.ts";
import type { LeaseRecord } from "../../lib/kit/contract.ts";

// Shared by every script: the field order of replies, and the lease key's
// fields, or false when there is none, or 'foreign' when it is no hash.
const COMMON = `
local FIELDS = {'id', 'principal', 'created', 'expires', 'fence', 'host', 'reason', 'link', 'limit'}
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
-- A further holder's record: the fields it has, as JSON, all strings.
local function pack(f)
  local r = {}
  for i, name in ipairs(FIELDS) do
    if f[i] then r[name] = f[i] end
  end
  return cjson.encode(r)
end
local function unpacked(member)
  local ok, r = pcall(cjson.decode, member)
  if not (ok and type(r) == 'table' and type(r.id) == 'string'
    and tonumber(r.expires)) then return nil end
  local f = {}
  for i, name in ipairs(FIELDS) do
    f[i] = type(r[name]) == 'string' and r[name]
  end
  return f
end
-- The further holders in the set at key, fence order, each {member, f};
-- members that are no record are skipped.
local function others(key)
  local out = {}
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', '+inf')) do
    local f = unpacked(m)
    if f then out[#out + 1] = {m, f} end
  end
  return out
end
local function fenceOf(f) return tonumber(f[5]) or 0 end
-- Every live holder: the lease (if any) and the set's live ones, fence
-- order. The lease key is never past its expiry; the set's may be.
local function holders(first, key, now)
  local out = {}
  if first then out[1] = first end
  for _, h in ipairs(others(key)) do
    if tonumber(h[2][4]) > now then out[#out + 1] = h[2] end
  end
  table.sort(out, function(a, b) return fenceOf(a) < fenceOf(b) end)
  return out
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

// For scripts that write: the server's clock in epoch ms (a script that
// reads TIME and then writes needs effect replication before Redis 5),
// and the writers of leases, shadows and events.
const WRITER = COMMON + `
if redis.replicate_commands then redis.replicate_commands() end
local now = clock()
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
  if f[9] then e.limit = tonumber(f[9]) end
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
-- Every writer's KEYS: lease, state, history, index, waiters, holders.
-- Makes f the lock's first holder: its lease key and shadow.
local function promote(f)
  put(KEYS[1], f)
  redis.call('PEXPIREAT', KEYS[1], f[4])
  put(KEYS[2], f)
end
-- Records what ended unseen: the first holder's expiry (its key gone,
-- its shadow past due) and each expired further holder, dropping them;
-- then, when the lease key is free, the lowest-fence live further holder
-- moves into it, so a single-holder reader still sees the lock held.
-- Returns the first holder (or false) and the live further holders, in
-- fence order, each {member, f}.
local function settle()
  local first = lease(KEYS[1])
  if not first then
    local old = redis.call('HMGET', KEYS[2], unpack(FIELDS))
    local ended = tonumber(old[4])
    if old[1] and ended and ended <= now then
      record(KEYS[3], 'expired', ended, old)
      redis.call('HDEL', KEYS[2], unpack(FIELDS))
    end
  end
  local rest = {}
  for _, h in ipairs(others(KEYS[6])) do
    local ended = tonumber(h[2][4])
    if ended > now then
      rest[#rest + 1] = h
    else
      redis.call('ZREM', KEYS[6], h[1])
      record(KEYS[3], 'expired', ended, h[2])
    end
  end
  if not first and rest[1] then
    local h = table.remove(rest, 1)
    redis.call('ZREM', KEYS[6], h[1])
    first = h[2]
    promote(first)
  end
  return first, rest
end
-- Scores the lock in the index at its latest holder's expiry (or drops
-- it), and keeps the holders set until its latest holder's expiry plus
-- the history's age, so their expiry is still recorded when seen late.
local function keep(first, rest)
  local latest, further = first and tonumber(first[4]), nil
  for _, h in ipairs(rest) do
    local e = tonumber(h[2][4])
    further = math.max(further or e, e)
    latest = math.max(latest or e, e)
  end
  if latest then
    redis.call('ZADD', KEYS[4], ms(latest), ARGV[1])
  else
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
  if further then
    redis.call('PEXPIREAT', KEYS[6], ms(further + tonumber(ARGV[3])))
  end
end
`;

// KEYS lease, state, history, index, waiters, holders; ARGV resource,
// kept, age, id, principal, ttl ms, host, reason, link ('' for none),
// events channel, the queue role: 'check' to refuse an acquire the lock
// admits while the waiters set (KEYS[5], the lock's) has a live member,
// 'member' to join it (KEYS[5] is then the waited-for lock's), '' for
// neither; the key prefix, and the limit asked for (1 exclusive, N
// slots, 0 shared). Refused: 'held', the lowest-fence live holder and
// how many hold.
const ACQUIRE = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
local limit = tonumber(ARGV[13])
local first, rest = settle()
-- Settled: the first holder (if any; then the rest, in fence order).
local live = {}
if first then live[1] = first end
for _, h in ipairs(rest) do live[#live + 1] = h[2] end
-- The rule, as admits() in lib/kit/holders.ts: every live holder has
-- this limit, and fewer than it hold (any number for 0).
local admitted = limit == 0 or #live < limit
for _, h in ipairs(live) do
  if (tonumber(h[9]) or 1) ~= limit then admitted = false end
end
if not admitted then
  local out = reply('held', live[1])
  out[#FIELDS + 2] = tostring(#live)
  return out
end
if ARGV[11] == 'check' then
  local waiting, ahead = 0, nil
  -- Every score is 0, so this is name (ticket) order; ZRANGEBYSCORE is
  -- already in the least-privilege ACL.
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', '+inf')) do
    local w = lease(ARGV[12] .. name)
    if type(w) == 'table' then
      waiting = waiting + 1
      ahead = ahead or w
    else
      redis.call('ZREM', KEYS[5], name)
    end
  end
  if ahead then
    local out = reply('queued', ahead)
    out[#FIELDS + 2] = tostring(waiting)
    return out
  end
end
local fence
if redis.call('HMGET', KEYS[2], 'last')[1] then
  fence = redis.call('HINCRBY', KEYS[2], 'last', 1)
else
  -- No counter: a first acquire, or one evicted. Go on from the newest
  -- fence on record, so a fence never goes back while any record remains.
  local floor = tonumber(redis.call('HMGET', KEYS[2], 'fence')[1]) or 0
  for _, h in ipairs(live) do floor = math.max(floor, fenceOf(h)) end
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
  given(ARGV[7]), given(ARGV[8]), given(ARGV[9]), limit ~= 1 and ARGV[13]}
if first then
  -- Held, and this one is admitted beside: a further holder.
  redis.call('ZADD', KEYS[6], tostring(fence), pack(f))
  rest[#rest + 1] = {false, f}
else
  first = f
  promote(f)
end
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ms(now))
keep(first, rest)
record(KEYS[3], 'acquired', now, f)
announce(ARGV[10], 'acquired')
if ARGV[11] == 'member' then redis.call('ZADD', KEYS[5], 0, ARGV[1]) end
return reply('acquired', f)
`;

// Finds holder ARGV[4] among the first and the rest settle() returned:
// its fields, and its member in the holders set (nil for the first).
const FIND = `
local function find(first, rest)
  if first and first[1] == ARGV[4] then return first, nil end
  for i, h in ipairs(rest) do
    if h[2][1] == ARGV[4] then return h[2], h[1], i end
  end
  return nil
end
`;

// KEYS as acquire; ARGV resource, kept, age, id, ttl ms, '1' to set the
// reason, the reason. Returns nil when the id is no live holder.
const RENEW = WRITER + FIND + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
local first, rest = settle()
local member
f, member = find(first, rest)
if not f then return false end
local kind = 'renewed'
if ARGV[6] == '1' and ARGV[7] ~= (f[7] or '') then
  kind = 'reason-changed'
  f[7] = ARGV[7] ~= '' and ARGV[7]
end
f[4] = ms(now + tonumber(ARGV[5]))
if member then
  redis.call('ZREM', KEYS[6], member)
  redis.call('ZADD', KEYS[6], f[5], pack(f))
else
  promote(f)
end
keep(first, rest)
record(KEYS[3], kind, now, f)
return reply(kind, f)
`;

// KEYS as acquire; ARGV resource, kept, age, id, kind ('released' or
// 'broken'), then the breaker's principal, host and reason, the events
// channel, and 'member' for a waiter's registration (leaving KEYS[5]).
// Ends that one holder; when it was the first, the next moves up.
// Returns nil when the id is no live holder.
const END = WRITER + FIND + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
local first, rest = settle()
local member, at
f, member, at = find(first, rest)
if not f then return false end
if member then
  redis.call('ZREM', KEYS[6], member)
  table.remove(rest, at)
else
  redis.call('DEL', KEYS[1])
  redis.call('HDEL', KEYS[2], unpack(FIELDS))
  first = false
  if rest[1] then
    local h = table.remove(rest, 1)
    redis.call('ZREM', KEYS[6], h[1])
    first = h[2]
    promote(first)
  end
end
keep(first, rest)
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
// the expiry of holder id (gone from KEYS[1] with its shadow past its
// expiry, or past its expiry in the holders set), with any other expiry
// due; 1 if it did, 0 when renewed, ended or not due.
const EXPIRE = WRITER + `
local f = lease(KEYS[1])
if f == 'foreign' then return 0 end
local due = false
if not f then
  local old = redis.call('HMGET', KEYS[2], 'id', 'expires')
  local ended = tonumber(old[2])
  due = old[1] == ARGV[4] and ended ~= nil and ended <= now
end
for _, h in ipairs(others(KEYS[6])) do
  if h[2][1] == ARGV[4] and tonumber(h[2][4]) <= now then due = true end
end
if not due then return 0 end
keep(settle())
announce(ARGV[5], 'expired')
return 1
`;

// KEYS lease, holders. The lowest-fence live holder.
const READ = COMMON + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
f = holders(f, KEYS[2], clock())[1]
if not f then return false end
return reply('lease', f)
`;

// KEYS lease, holders. Every live holder's fields, one after another;
// 'foreign' when the lease key is no hash.
const HOLDERS = COMMON + `
local f = lease(KEYS[1])
if f == 'foreign' then return {'foreign'} end
local out = {}
for _, h in ipairs(holders(f, KEYS[2], clock())) do
  for i = 1, #FIELDS do out[#out + 1] = h[i] or false end
end
return out
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

// KEYS index; ARGV key prefix, name prefix. Returns, for each live holder
// of a lock whose name starts with the name prefix, its name and fields.
// The lease keys are named by the index, so they can't be passed as
// KEYS: this is why the backend needs one server, not a cluster.
const LIST = WRITER + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms(now))
local out = {}
local p = ARGV[2]
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ms(now), '+inf')) do
  if string.sub(name, 1, #p) == p then
    local f = lease(ARGV[1] .. name)
    local live = {}
    if f == 'foreign' then
      live = {{}}
    else
      live = holders(f, ARGV[1] .. '\\0holders\\0' .. name, now)
    end
    if not live[1] then redis.call('ZREM', KEYS[1], name) end
    for _, h in ipairs(live) do
      out[#out + 1] = name
      for i = 1, #FIELDS do out[#out + 1] = h[i] or false end
    end
  end
end
return out
`;

/** How many lease fields a reply holds after its status. */
export const FIELD_COUNT = 9;

/** A script's reply: a status, then the lease's fields in FIELDS order. */
export type ScriptReply = (string | null)[];

/** The scripts, each sent by its SHA-1 (EVAL the first time). */
export const SCRIPTS = {
  acquire: { lua: ACQUIRE, keys: 6 },
  renew: { lua: RENEW, keys: 6 },
  end: { lua: END, keys: 6 },
  expire: { lua: EXPIRE, keys: 6 },
  read: { lua: READ, keys: 2 },
  holders: { lua: HOLDERS, keys: 2 },
  history: { lua: HISTORY, keys: 1 },
  list: { lua: LIST, keys: 1 },
} satisfies Record<string, Script>;

/** Epoch ms as Stormlock writes them; anything else reads as missing. */
function digits(value: string | null | undefined): string | undefined {
  return value && /^\d{1,16}$/.test(value) ? value : undefined;
}

/** The record in a reply's fields, from `offset` on. */
export function toRecord(fields: (string | null)[], offset = 1): LeaseRecord {
  const [id, principal, created, expires, fence, host, reason, link, limit] =
    fields.slice(offset, offset + FIELD_COUNT);
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
    // Absent on an exclusive lease, as before slots.
    limit,
  };
}
