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

/** One hit of a batch: `points` added to `id`'s window of the counter `name`, refused past `limit`. */
export interface BatchHit {
  name: string
  windowMs: number
  id: string
  points: number
  limit: number
}

/** A window checked before a batch counts anything: holding `min` points or more, it refuses the batch. */
export interface BatchGuard {
  name: string
  id: string
  min: number
}

/** What a batch did: the guard's open window when it refused (nothing counted), else the windows counted. */
export interface BatchResult {
  guard?: WindowCount
  /** The windows of `hits` in order, up to and including the first over its limit (the rest are not counted). */
  windows: WindowCount[]
}

/**
 * The failed-authentication ladder of one address bucket (docs/limits.md): count the failure in the hour's
 * window, and at its `rate`-th set the block (count `block.block`) for `blockMs`; else count it in the
 * minute's, and at its `rate`-th count a back-off and set one (count `block.backoff`) of `backoffMs`, doubled
 * per earlier back-off in the hour, at most `maxBackoffMs`. A block never replaces a longer one of the same
 * count or more. A rate of 0 is not counted.
 */
export interface FailureLadder {
  hour: { name: string; windowMs: number; rate: number }
  minute: { name: string; windowMs: number; rate: number }
  backoffs: { name: string; windowMs: number }
  block: { name: string; backoff: number; block: number }
  blockMs: number
  backoffMs: number
  maxBackoffMs: number
}

/**
 * Where rate-limit counters live: fixed windows per (counter, id). The in-memory backend (one process) is
 * `createMemoryRateLimitBackend`; a shared backend (Redis, for several nodes) implements the same calls. A
 * backend that can answer synchronously should: an admitted request then costs no promise (docs/limits.md,
 * "Cost"). A remote backend should also implement `batch` and `ladder`, so that a request costs it one round
 * trip whatever the number of windows it counts against (docs/redis.md, "Cost").
 */
export interface RateLimitBackend {
  readonly kind: string
  /** The counter `name` whose windows last `windowMs`; asked for once per counter, then kept by the caller. */
  counter(name: string, windowMs: number): CounterStore
  /**
   * Optional, atomically and in one round trip: peeks `guard` (refusing when open at `min` or more), then
   * hits each of `hits` in order, stopping after the first whose count passes its limit.
   */
  batch?(hits: readonly BatchHit[], guard?: BatchGuard): Promise<BatchResult>
  /**
   * Optional, atomically and in one round trip: one failed authentication of `bucket` up the ladder; the
   * block or back-off it set, if any.
   */
  ladder?(bucket: string, ladder: FailureLadder): Promise<{ count: number; ms: number } | undefined>
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
