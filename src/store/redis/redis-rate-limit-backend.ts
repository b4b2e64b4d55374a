import type {
  BatchResult,
  CounterStore,
  FailureLadder,
  RateLimitBackend,
  WindowCount,
} from '../../limits/index.js'
import { defineScript, type RedisClient, redisUnavailable } from './redis-client.js'
import { defineMultiKeyScript } from './redis-scripts.js'

/**
 * One hit, atomically: add the points; a key without an expiry is a window that has just opened, so it gets
 * one (PTTL -1). Returns the count and the milliseconds left.
 */
const HIT = `
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}
`

/** The open window, without counting: nil when none is open. */
const PEEK = `
local count = redis.call('GET', KEYS[1])
if not count then return nil end
return {tonumber(count), redis.call('PTTL', KEYS[1])}
`

/**
 * A request's windows in one call (docs/redis.md, "Cost"). ARGV[1] = 1: KEYS[1] is a guard, refusing when
 * open at ARGV[2] points or more (nothing is counted; reply {1, count, ms left}). Then each further key is
 * hit as HIT does, with ARGV[a], ARGV[a + 1], ARGV[a + 2] its points, window and limit; the hits stop after
 * the first whose count passes its limit. Reply {0, count, ms left, count, ms left, ...}.
 */
const BATCH = `
local first = 1
if ARGV[1] == '1' then
  local open = tonumber(redis.call('GET', KEYS[1]) or '0')
  if open >= tonumber(ARGV[2]) then
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then return {1, open, ttl} end
  end
  first = 2
end
local reply = {0}
for i = first, #KEYS do
  local a = 3 + (i - first) * 3
  local count = redis.call('INCRBY', KEYS[i], ARGV[a])
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl < 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[a + 1])
    ttl = tonumber(ARGV[a + 1])
  end
  reply[#reply + 1] = count
  reply[#reply + 1] = ttl
  if count > tonumber(ARGV[a + 2]) then break end
end
return reply
`

/**
 * One failed authentication up the ladder (FailureLadder in src/limits/rate-limit-backend.ts, which the
 * in-memory path runs as single calls). KEYS: the hour's, the minute's, the back-offs' and the block's
 * windows. ARGV: the hour's rate and window, the minute's rate and window, the back-offs' window, the
 * block's two counts (back-off, block), blockMs, backoffMs, maxBackoffMs. Reply: {count, ms} of the block
 * it set, or {0, 0}.
 */
const LADDER = `
local function hit(key, ms)
  local count = redis.call('INCRBY', key, 1)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, ms) end
  return count
end
local function block(kind, ms)
  local open = tonumber(redis.call('GET', KEYS[4]) or '0')
  if open >= kind and redis.call('PTTL', KEYS[4]) >= ms then return {0, 0} end
  redis.call('SET', KEYS[4], kind, 'PX', ms)
  return {kind, ms}
end
local perHour, perMinute = tonumber(ARGV[1]), tonumber(ARGV[3])
if perHour > 0 and hit(KEYS[1], ARGV[2]) >= perHour then
  return block(tonumber(ARGV[7]), tonumber(ARGV[8]))
end
if perMinute <= 0 or hit(KEYS[2], ARGV[4]) < perMinute then return {0, 0} end
-- Each back-off in the hour doubles the last, up to the cap.
local n = hit(KEYS[3], ARGV[5])
local ms = math.min(tonumber(ARGV[10]), tonumber(ARGV[9]) * 2 ^ math.min(30, n - 1))
return block(tonumber(ARGV[6]), math.floor(ms))
`

export interface RedisRateLimitBackendOptions {
  client: RedisClient
  /** Key prefix (docs/redis.md): keys are `<prefix>rl:<counter>:<id>`. */
  prefix: string
  /** Admit while Redis cannot be reached (`EARMARK_REDIS_FAIL_OPEN=rate-limits`); default false: 503. */
  failOpen?: boolean
  /** Told about each failed call (the request still gets its answer). */
  onError?(err: unknown): void
}

type Reply = [number, number] | null

/**
 * Rate-limit counters in Redis, shared by every node (docs/redis.md): fixed windows, one key per (counter,
 * id) that expires when its window closes. Each hit is one Lua script (INCRBY, then PEXPIRE when the window
 * is new), so concurrent hits from any number of nodes count exactly. The window starts at its first hit and
 * lasts `windowMs` by Redis's clock, which every node shares. While Redis is unreachable a call either fails
 * with a 503 `SERVICE_UNAVAILABLE` (default) or, when `failOpen`, admits: an empty window.
 */
export function createRedisRateLimitBackend(o: RedisRateLimitBackendOptions): RateLimitBackend {
  const { client } = o
  const hitScript = defineScript(client, 'earmarkRateHit', HIT)
  const peekScript = defineScript(client, 'earmarkRatePeek', PEEK)
  const batchScript = defineMultiKeyScript(client, 'earmarkRateBatch', BATCH)
  const ladderScript = defineMultiKeyScript(client, 'earmarkRateLadder', LADDER)
  const failed = (err: unknown): never => {
    o.onError?.(err)
    throw redisUnavailable('Rate limits')
  }
  const key = (name: string, id: string) => `${o.prefix}rl:${name}:${id}`
  const ms = (windowMs: number) => String(Math.max(1, Math.round(windowMs)))
  return {
    kind: 'redis',
    async batch(hits, guard): Promise<BatchResult> {
      const keys = guard ? [key(guard.name, guard.id)] : []
      const args = guard ? ['1', String(guard.min)] : ['0', '0']
      for (const h of hits) {
        keys.push(key(h.name, h.id))
        args.push(String(h.points), ms(h.windowMs), String(h.limit))
      }
      let reply: number[]
      try {
        reply = (await batchScript(keys, ...args)) as number[]
      } catch (err) {
        if (!o.failOpen) return failed(err)
        o.onError?.(err)
        return { windows: [] }
      }
      if (reply[0] === 1) return { guard: { count: reply[1] ?? 0, msLeft: reply[2] ?? 0 }, windows: [] }
      const windows: WindowCount[] = []
      for (let i = 1; i + 1 < reply.length; i += 2) {
        windows.push({ count: reply[i] ?? 0, msLeft: reply[i + 1] ?? 0 })
      }
      return { windows }
    },
    async ladder(bucket, l: FailureLadder) {
      let reply: [number, number]
      try {
        reply = (await ladderScript(
          [
            key(l.hour.name, bucket),
            key(l.minute.name, bucket),
            key(l.backoffs.name, bucket),
            key(l.block.name, bucket),
          ],
          String(l.hour.rate),
          ms(l.hour.windowMs),
          String(l.minute.rate),
          ms(l.minute.windowMs),
          ms(l.backoffs.windowMs),
          String(l.block.backoff),
          String(l.block.block),
          ms(l.blockMs),
          ms(l.backoffMs),
          ms(l.maxBackoffMs),
        )) as [number, number]
      } catch (err) {
        if (!o.failOpen) return failed(err)
        o.onError?.(err)
        return undefined
      }
      return reply[0] > 0 ? { count: reply[0], ms: reply[1] } : undefined
    },
    counter(name, windowMs): CounterStore {
      const base = `${o.prefix}rl:${name}:`
      const window = ms(windowMs)
      return {
        async hit(id, points): Promise<WindowCount> {
          try {
            const [count, msLeft] = (await hitScript(base + id, String(points), window)) as [number, number]
            return { count, msLeft }
          } catch (err) {
            if (!o.failOpen) return failed(err)
            o.onError?.(err)
            return { count: 0, msLeft: windowMs }
          }
        },
        async peek(id): Promise<WindowCount | undefined> {
          try {
            const reply = (await peekScript(base + id)) as Reply
            if (!reply || reply[1] <= 0) return undefined
            return { count: reply[0], msLeft: reply[1] }
          } catch (err) {
            if (!o.failOpen) return failed(err)
            o.onError?.(err)
            return undefined
          }
        },
        async set(id, count, setMs): Promise<void> {
          try {
            await client.set(base + id, String(count), 'PX', Math.max(1, Math.round(setMs)))
          } catch (err) {
            if (!o.failOpen) failed(err)
            o.onError?.(err)
          }
        },
      }
    },
  }
}
