/**
 * Lua scripts of {@link RedisPresence}: each online/offline transition, grace claim,
 * reap and resync runs atomically inside Redis, so exactly one instance sees each
 * transition (PROTOCOL §8). Keys (P = REDIS_KEY_PREFIX):
 *
 * | key | type | content |
 * |---|---|---|
 * | `P pi` | zset | instance id → last heartbeat (Redis TIME, ms) |
 * | `P pu:<user>` | hash | instance id → open connections of the user there |
 * | `P pg:<user>` | string | grace token `<instance>\|<random>` while the offline grace runs (PX bound) |
 * | `P pis:<instance>` | set | users with connections on the instance (for reaping) |
 * | `P pig:<instance>` | set | users whose grace period the instance owns |
 * | `P ip:<ip>` | hash | instance id → open connections from the IP there |
 * | `P ipi:<instance>` | set | IPs with connections on the instance |
 * | `P reaped:<instance>` | string | marker (1 h) that the instance was reaped while alive |
 *
 * Scripts that walk an instance's members build key names from the prefix (standalone
 * Redis / Sentinel; not Redis Cluster hash-slot safe).
 */
import { LuaScript } from '../fanout/redisClient.ts';

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Device cap (PROTOCOL §3 item 9) and registration in one step. KEYS pu:user, pis:inst,
 * pg:user; ARGV inst, user, max → -1 when the user already holds `max` connections in the
 * deployment (nothing changed), else registers the connection: 1 when `user_online` is due (first connection, no grace period pending), 0 otherwise.
 */
export const ADMIT = new LuaScript(`
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
if total >= tonumber(ARGV[3]) then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
local resumed = redis.call('DEL', KEYS[3])
if resumed == 1 or total > 0 then return 0 end
return 1`);

/** KEYS pu:user, pis:inst, pg:user, pig:inst; ARGV inst, user, token, px → 1 when the user has no connection left (grace started). */
export const DISCONNECT = new LuaScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur <= 0 then return 0 end
if cur > 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[4], ARGV[2])
return 1`);

/** KEYS pu:user, pg:user, pig:inst; ARGV token, user → 1 when `user_offline` is due (once). */
export const CLAIM = new LuaScript(`
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
return 1`);

/** KEYS pu:u1, pu:u2, … → 1/0 per user: has an open connection somewhere. */
export const ONLINE = new LuaScript(`
local out = {}
for i = 1, #KEYS do out[i] = redis.call('EXISTS', KEYS[i]) end
return out`);

/** KEYS pi; ARGV inst → 1 (heartbeat recorded) or 0 (not registered: resync needed). */
export const HEARTBEAT = new LuaScript(`
${NOW}
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  return 1
end
return 0`);

/**
 * Lua `drop(inst)`: forget instance `inst` (already removed from `P pi`): its connections,
 * the grace periods it owns and its IP slots. Appends to `out` the users now offline (no
 * connection anywhere and no other grace period pending). Needs `P` and `out` in scope.
 */
const DROP = `
local function drop(inst)
  for _, u in ipairs(redis.call('SMEMBERS', P .. 'pis:' .. inst)) do
    local h = P .. 'pu:' .. u
    redis.call('HDEL', h, inst)
    if redis.call('HLEN', h) == 0 and redis.call('EXISTS', P .. 'pg:' .. u) == 0 then out[#out + 1] = u end
  end
  redis.call('DEL', P .. 'pis:' .. inst)
  for _, u in ipairs(redis.call('SMEMBERS', P .. 'pig:' .. inst)) do
    local g = P .. 'pg:' .. u
    local tok = redis.call('GET', g)
    if tok and string.sub(tok, 1, #inst + 1) == inst .. '|' then
      redis.call('DEL', g)
      if redis.call('HLEN', P .. 'pu:' .. u) == 0 then out[#out + 1] = u end
    end
  end
  redis.call('DEL', P .. 'pig:' .. inst)
  for _, ip in ipairs(redis.call('SMEMBERS', P .. 'ipi:' .. inst)) do redis.call('HDEL', P .. 'ip:' .. ip, inst) end
  redis.call('DEL', P .. 'ipi:' .. inst)
end`;

/**
 * KEYS pi; ARGV prefix, ttlMs, self → users now offline because an instance silent for
 * ttlMs was reaped (its connections dropped, grace periods it owned ended). Up to 5
 * instances per call; the ZREM makes each reap happen once.
 */
export const REAP = new LuaScript(`
local P = ARGV[1]
${NOW}
local out = {}
${DROP}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 5)
for _, inst in ipairs(dead) do
  if inst ~= ARGV[3] and redis.call('ZREM', KEYS[1], inst) == 1 then
    redis.call('SET', P .. 'reaped:' .. inst, '1', 'PX', 3600000)
    drop(inst)
  end
end
return out`);

/**
 * Graceful stop of the last live instance (PROTOCOL §8: `lastSeen` persisted). KEYS pi;
 * ARGV prefix, ttlMs, self → {released, users}. When another instance heartbeat within
 * ttlMs, nothing changes and released is 0: that instance reaps this one later, which
 * ends its grace periods after clients had the chance to reconnect there. Otherwise this
 * instance and every silent one are dropped at once (released 1) and `users` are those
 * now offline, to be persisted by the caller.
 */
export const RELEASE = new LuaScript(`
local P, me = ARGV[1], ARGV[3]
${NOW}
local out = {}
${DROP}
local cutoff = now - tonumber(ARGV[2])
for _, inst in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], cutoff, '+inf')) do
  if inst ~= me then return {0, out} end
end
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
gone[#gone + 1] = me
for _, inst in ipairs(gone) do
  redis.call('ZREM', KEYS[1], inst)
  drop(inst)
end
return {1, out}`);

/**
 * KEYS pi; ARGV prefix, inst, nUsers, (user, count)…, nIps, (ip, count)… → {online, offline}.
 * Replaces this instance's registrations with its local state (after a reconnect or a
 * Redis restart). Transitions are reported only when Redis still knew the instance or
 * had reaped it; after data loss (nothing known) nothing is announced.
 */
export const RESYNC = new LuaScript(`
local P, inst = ARGV[1], ARGV[2]
${NOW}
local known = redis.call('ZSCORE', KEYS[1], inst)
local reaped = redis.call('DEL', P .. 'reaped:' .. inst)
redis.call('ZADD', KEYS[1], now, inst)
local announce = (known ~= false) or reaped == 1
local nu = tonumber(ARGV[3])
local here = {}
for i = 0, nu - 1 do here[ARGV[4 + 2 * i]] = ARGV[5 + 2 * i] end
local online, offline = {}, {}
local sis = P .. 'pis:' .. inst
for _, u in ipairs(redis.call('SMEMBERS', sis)) do
  if not here[u] then
    local h = P .. 'pu:' .. u
    redis.call('HDEL', h, inst)
    redis.call('SREM', sis, u)
    if announce and redis.call('HLEN', h) == 0 and redis.call('EXISTS', P .. 'pg:' .. u) == 0 then offline[#offline + 1] = u end
  end
end
for u, n in pairs(here) do
  local h = P .. 'pu:' .. u
  local before = redis.call('HLEN', h)
  redis.call('HSET', h, inst, n)
  redis.call('SADD', sis, u)
  if before == 0 then
    local resumed = redis.call('DEL', P .. 'pg:' .. u)
    if announce and resumed == 0 then online[#online + 1] = u end
  end
end
local ipi = P .. 'ipi:' .. inst
local base = 4 + 2 * nu
local ni = tonumber(ARGV[base])
local ips = {}
for i = 0, ni - 1 do ips[ARGV[base + 1 + 2 * i]] = ARGV[base + 2 + 2 * i] end
for _, ip in ipairs(redis.call('SMEMBERS', ipi)) do
  if not ips[ip] then redis.call('HDEL', P .. 'ip:' .. ip, inst) end
end
redis.call('DEL', ipi)
for ip, n in pairs(ips) do
  redis.call('HSET', P .. 'ip:' .. ip, inst, n)
  redis.call('SADD', ipi, ip)
end
return {online, offline}`);

/** KEYS ip:<ip>, ipi:inst; ARGV inst, ip, max → 1 when a slot was taken (fewer than max open deployment-wide). */
export const IP_ACQUIRE = new LuaScript(`
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
if total >= tonumber(ARGV[3]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('SADD', KEYS[2], ARGV[2])
return 1`);

/** KEYS ip:<ip>, ipi:inst; ARGV inst, ip → 1. Gives one slot back. */
export const IP_RELEASE = new LuaScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur <= 1 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[2])
else
  redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
end
return 1`);

/** Every script (loaded with SCRIPT LOAD after each reconnect, before anything else runs). */
export const ALL_SCRIPTS = [ADMIT, DISCONNECT, CLAIM, ONLINE, HEARTBEAT, REAP, RELEASE, RESYNC, IP_ACQUIRE, IP_RELEASE];
