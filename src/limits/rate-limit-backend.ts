import { RateLimiterMemory } from 'rate-limiter-flexible'

/** One counter's current window, as a backend reports it. */
export interface WindowCount {
  /** Points in the current window, this hit included. */
  count: number
  /** Milliseconds until the window closes and the count starts again from zero. */
  msLeft: number
}

/**
 * Where rate-limit counters live: fixed windows per (counter name, id), a window opening at its first hit.
 * The in-memory backend (one process) is `createMemoryRateLimitBackend`; a shared backend (Redis, for
 * several nodes) implements the same three calls. A backend that can answer synchronously should: an
 * admitted request then costs no promise (docs/limits.md, "Cost").
 */
export interface RateLimitBackend {
  readonly kind: string
  /** Adds `points` to `id` in counter `name`, whose windows last `windowMs`; returns the window after the hit. */
  hit(name: string, windowMs: number, id: string, points: number): WindowCount | Promise<WindowCount>
  /** The open window of `id` in counter `name`, without adding to it; undefined when none is open. */
  peek(name: string, windowMs: number, id: string): WindowCount | undefined | Promise<WindowCount | undefined>
  /** Opens a window of `ms` for `id` holding `count` (replacing any open one): how blocks are set. */
  set(name: string, windowMs: number, id: string, count: number, ms: number): void | Promise<void>
}

/** The part of rate-limiter-flexible's in-memory storage the memory backend drives (see below). */
interface MemoryStorage {
  incrby(key: string, value: number, durationSec: number): { consumedPoints: number; msBeforeNext: number }
  get(key: string): { consumedPoints: number; msBeforeNext: number } | null
  set(key: string, value: number, durationSec: number): unknown
}

/**
 * Counters in this process's memory, kept by rate-limiter-flexible's `RateLimiterMemory` (one limiter per
 * counter name and window). Its `consume()` wraps one synchronous storage call (`incrby`) in a promise; the
 * hot path makes that same call directly so an admitted request stays synchronous, which is what holds the
 * limits-on throughput at the limits-off figure (docs/benchmarks.md). The limit itself is ours (compared
 * against the count), not the limiter's `points`: a key's limit can differ from its neighbour's.
 * Time is `Date.now()`, read by the library, so tests move it with node:test's `mock.timers` (docs/limits.md).
 */
export function createMemoryRateLimitBackend(): RateLimitBackend {
  const limiters = new Map<string, { limiter: RateLimiterMemory; storage: MemoryStorage }>()
  const limiterOf = (name: string, windowMs: number) => {
    const id = `${name}/${windowMs}`
    let entry = limiters.get(id)
    if (!entry) {
      const limiter = new RateLimiterMemory({
        keyPrefix: id,
        points: Number.MAX_SAFE_INTEGER,
        duration: windowMs / 1000,
      })
      const storage = (limiter as unknown as { _memoryStorage: MemoryStorage })._memoryStorage
      if (typeof storage?.incrby !== 'function') {
        throw new Error('rate-limiter-flexible: RateLimiterMemory no longer exposes its storage')
      }
      entry = { limiter, storage }
      limiters.set(id, entry)
    }
    return entry
  }
  return {
    kind: 'memory',
    hit(name, windowMs, id, points) {
      const { limiter, storage } = limiterOf(name, windowMs)
      const res = storage.incrby(limiter.getKey(id), points, windowMs / 1000)
      return { count: res.consumedPoints, msLeft: res.msBeforeNext }
    },
    peek(name, windowMs, id) {
      const { limiter, storage } = limiterOf(name, windowMs)
      const res = storage.get(limiter.getKey(id))
      // An expired record lingers until its timer removes it: it is no open window.
      if (!res || res.msBeforeNext <= 0) return undefined
      return { count: res.consumedPoints, msLeft: res.msBeforeNext }
    },
    set(name, windowMs, id, count, ms) {
      const { limiter, storage } = limiterOf(name, windowMs)
      storage.set(limiter.getKey(id), count, ms / 1000)
    },
  }
}
