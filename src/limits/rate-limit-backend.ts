import { RateLimiterMemory } from 'rate-limiter-flexible'

/** One counter's current window, as a backend reports it. */
export interface WindowCount {
  /** Points in the current window, this hit included. */
  count: number
  /** Milliseconds until the window closes and the count starts again from zero. */
  msLeft: number
}

/** The windows of one counter (one name, one window length), per id. */
export interface CounterStore {
  /** Adds `points` to `id`; returns its window after the hit (a window opens at the first hit). */
  hit(id: string, points: number): WindowCount | Promise<WindowCount>
  /** The open window of `id`, without adding to it; undefined when none is open. */
  peek(id: string): WindowCount | undefined | Promise<WindowCount | undefined>
  /** Opens a window of `ms` for `id` holding `count` (replacing any open one): how blocks are set. */
  set(id: string, count: number, ms: number): void | Promise<void>
}

/**
 * Where rate-limit counters live: fixed windows per (counter, id). The in-memory backend (one process) is
 * `createMemoryRateLimitBackend`; a shared backend (Redis, for several nodes) implements the same calls. A
 * backend that can answer synchronously should: an admitted request then costs no promise (docs/limits.md,
 * "Cost").
 */
export interface RateLimitBackend {
  readonly kind: string
  /** The counter `name` whose windows last `windowMs`; asked for once per counter, then kept by the caller. */
  counter(name: string, windowMs: number): CounterStore
}

/** The part of rate-limiter-flexible's in-memory storage the memory backend drives (see below). */
interface MemoryStorage {
  incrby(key: string, value: number, durationSec: number): { consumedPoints: number; msBeforeNext: number }
  get(key: string): { consumedPoints: number; msBeforeNext: number } | null
  set(key: string, value: number, durationSec: number): unknown
}

/** Storage keys remembered per counter before the memo starts again (ids are keys, projects, addresses). */
const MAX_REMEMBERED_KEYS = 10_000

/**
 * Counters in this process's memory, kept by rate-limiter-flexible's `RateLimiterMemory` (one limiter per
 * counter). Its `consume()` wraps one synchronous storage call (`incrby`) in a promise; the hot path makes that
 * same call directly so an admitted request stays synchronous, which is what holds the limits-on throughput
 * at the limits-off figure (docs/benchmarks.md). The limit itself is ours (compared against the count), not
 * the limiter's `points`: a key's limit can differ from its neighbour's.
 * Time is `Date.now()`, read by the library, so tests move it with node:test's `mock.timers` (docs/limits.md).
 */
export function createMemoryRateLimitBackend(): RateLimitBackend {
  return {
    kind: 'memory',
    counter(name, windowMs) {
      const limiter = new RateLimiterMemory({
        keyPrefix: name,
        points: Number.MAX_SAFE_INTEGER,
        duration: windowMs / 1000,
      })
      const storage = (limiter as unknown as { _memoryStorage: MemoryStorage })._memoryStorage
      if (typeof storage?.incrby !== 'function') {
        throw new Error('rate-limiter-flexible: RateLimiterMemory no longer exposes its storage')
      }
      const seconds = windowMs / 1000
      // The storage key of each id, built once: the same string object is hashed once, not on every hit.
      const keys = new Map<string, string>()
      const keyOf = (id: string) => {
        let key = keys.get(id)
        if (key === undefined) {
          if (keys.size >= MAX_REMEMBERED_KEYS) keys.clear()
          key = limiter.getKey(id)
          keys.set(id, key)
        }
        return key
      }
      return {
        hit(id, points) {
          const res = storage.incrby(keyOf(id), points, seconds)
          return { count: res.consumedPoints, msLeft: res.msBeforeNext }
        },
        peek(id) {
          const res = storage.get(keyOf(id))
          // An expired record lingers until its timer removes it: it is no open window.
          if (!res || res.msBeforeNext <= 0) return undefined
          return { count: res.consumedPoints, msLeft: res.msBeforeNext }
        },
        set(id, count, ms) {
          storage.set(keyOf(id), count, ms / 1000)
        },
      }
    },
  }
}
