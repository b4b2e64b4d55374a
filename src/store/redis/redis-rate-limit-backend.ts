import type { CounterStore, RateLimitBackend, WindowCount } from '../../limits/index.js'
import { defineScript, type RedisClient, redisUnavailable } from './redis-client.js'

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
  const failed = (err: unknown): never => {
    o.onError?.(err)
    throw redisUnavailable('Rate limits')
  }
  return {
    kind: 'redis',
    counter(name, windowMs): CounterStore {
      const base = `${o.prefix}rl:${name}:`
      const ms = String(Math.max(1, Math.round(windowMs)))
      return {
        async hit(id, points): Promise<WindowCount> {
          try {
            const [count, msLeft] = (await hitScript(base + id, String(points), ms)) as [number, number]
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
