import { createHash } from 'node:crypto'
import type { ActivityWindows } from '../../suspicious/index.js'
import { defineScript, type RedisClient } from './redis-client.js'

/**
 * Distinct values in a sliding window: a sorted set of values scored by when each was last seen. Drops what
 * aged out (seen at or before now - window), then, for a value not already in, the oldest until one place is
 * left under the cap, so the newest value is never the one dropped. A value seen again keeps its latest time
 * (a node whose clock lags a little does not move it back). ARGV: value, now, window ms, cap.
 */
const DISTINCT = `
local now, window, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not at then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= cap then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap) end
  redis.call('ZADD', KEYS[1], now, ARGV[1])
elseif tonumber(at) < now then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
`

/**
 * The sliding-window counter of the memory windows, as a hash (`start`, `current`, `previous`): two fixed
 * buckets, the previous one weighted by the part of it still inside the window. An event stamped before the
 * current bucket (a node whose clock lags) counts into the current one instead of rolling the buckets back.
 * Two windows without an event and the counter is gone. ARGV: now, window ms.
 */
const COUNT = `
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local bucket = math.floor(now / window) * window
local c = redis.call('HMGET', KEYS[1], 'start', 'current', 'previous')
local start, current, previous = tonumber(c[1]), tonumber(c[2]), tonumber(c[3])
if not start or bucket - start >= 2 * window then
  start, current, previous = bucket, 0, 0
elseif bucket > start then
  start, previous, current = bucket, current, 0
end
current = current + 1
redis.call('HSET', KEYS[1], 'start', start, 'current', current, 'previous', previous)
redis.call('PEXPIRE', KEYS[1], 2 * window)
if now < start then now = start end
return current + math.floor(previous * (1 - (now - start) / window))
`

/** The first claim of a window: stores when it ends, refuses until then. ARGV: now, window ms. */
const CLAIM = `
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local ends = redis.call('GET', KEYS[1])
if ends and tonumber(ends) > now then return 0 end
redis.call('SET', KEYS[1], now + window, 'PX', window)
return 1
`

/**
 * Whether a value was learnt: 0 none learnt yet, 1 known, 2 new. A look keeps the values remembered
 * (their expiry is pushed back), as a lookup in the memory windows keeps a subject recent. ARGV: value, ttl ms.
 */
const SEEN = `
if redis.call('ZCARD', KEYS[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
return 2
`

/**
 * Learns a value as the most recent (score: one past the highest), then forgets the least recently learnt
 * past `max`. ARGV: value, max, ttl ms.
 */
const LEARN = `
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local score = 1
if top[2] then score = tonumber(top[2]) + 1 end
redis.call('ZADD', KEYS[1], score, ARGV[1])
local n, max = redis.call('ZCARD', KEYS[1]), tonumber(ARGV[2])
if n > max then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - max - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return n
`

/** How long learnt values (a key's origins) are kept without a look or a lesson: 30 days. */
export const LEARNT_TTL_MS = 30 * 24 * 3600 * 1000

/** Values longer than this are stored as their SHA-256, so one subject's memory stays bounded. */
const MAX_MEMBER = 512

export interface RedisActivityWindowsOptions {
  client: RedisClient
  /** Key prefix (docs/redis.md): keys are `<prefix>suspicious:<kind>:<subject>`. */
  prefix: string
  /** How long learnt values live without being looked at, ms; default `LEARNT_TTL_MS`. */
  learntTtlMs?: number
  /**
   * Told once per outage, at the first call that failed after one that worked (or the first of all), with
   * the error's message: observations are skipped until Redis answers again.
   */
  onUnavailable?(error: string): void
}

/**
 * The suspicious-activity windows in Redis, shared by every node (docs/redis.md, "Suspicious activity"):
 * the same answers as `createMemoryWindows`, each operation one Lua script on one key, with the caller's
 * time (a manual clock in tests, the node's clock otherwise; nodes' clocks must agree to well within a
 * window). Every key expires: a window's after its length (a counter's after two), a claim's at its end,
 * learnt values after `learntTtlMs` untouched.
 *
 * Detection is an observer and never fails a request: while Redis cannot be reached (or a call fails) an
 * operation is skipped and answers what changes nothing (no distinct value, no event, no claim, a value
 * known), and the outage is reported once through `onUnavailable`. No call waits longer than the command
 * timeout, and the detector never holds a request for them anyway.
 */
export function createRedisActivityWindows(o: RedisActivityWindowsOptions): ActivityWindows {
  const { client } = o
  const distinct = defineScript(client, 'earmarkActivityDistinct', DISTINCT)
  const count = defineScript(client, 'earmarkActivityCount', COUNT)
  const claim = defineScript(client, 'earmarkActivityClaim', CLAIM)
  const seen = defineScript(client, 'earmarkActivitySeen', SEEN)
  const learn = defineScript(client, 'earmarkActivityLearn', LEARN)
  const learntTtl = String(Math.max(1, Math.round(o.learntTtlMs ?? LEARNT_TTL_MS)))
  const key = (kind: string, subject: string) => `${o.prefix}suspicious:${kind}:${subject}`
  // Windows and limits may be fractional after a division; Redis wants integers for its expiries.
  const ms = (n: number) => String(Math.max(1, Math.round(n)))
  const member = (value: string) =>
    value.length > MAX_MEMBER ? `sha256:${createHash('sha256').update(value).digest('hex')}` : value
  let down = false
  /** Runs one script; on failure reports the outage once and answers `skipped`. */
  const run = async <T>(call: () => Promise<unknown>, skipped: T): Promise<T> => {
    try {
      const reply = (await call()) as T
      down = false
      return reply
    } catch (err) {
      if (!down) {
        down = true
        o.onUnavailable?.((err as Error)?.message ?? String(err))
      }
      return skipped
    }
  }
  return {
    distinct: (subject, value, now, windowMs, cap) =>
      run(
        () =>
          distinct(
            key('distinct', subject),
            member(value),
            String(now),
            ms(windowMs),
            String(Math.max(1, cap)),
          ),
        0,
      ),
    count: (subject, now, windowMs) => run(() => count(key('count', subject), String(now), ms(windowMs)), 0),
    claim: async (subject, now, windowMs) =>
      (await run(() => claim(key('claim', subject), String(now), ms(windowMs)), 0)) === 1,
    seen: async (subject, value) => {
      const reply = await run(() => seen(key('learnt', subject), member(value), learntTtl), 1)
      return reply === 0 ? 'first' : reply === 1 ? 'known' : 'new'
    },
    learn: async (subject, value, max) => {
      await run(() => learn(key('learnt', subject), member(value), String(Math.max(1, max)), learntTtl), 0)
    },
  }
}
