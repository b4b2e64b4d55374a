import {
  type CounterStore,
  createMemoryRateLimitBackend,
  type RateLimitBackend,
  type WindowCount,
} from './rate-limit-backend.js'

/** A value now, or later: backends that can answer synchronously do, and callers stay synchronous with them. */
export type Maybe<T> = T | Promise<T>

function isPromise<T>(value: Maybe<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

/** Applies `f` to `value` now when it is here, else when it arrives. */
export function andThen<T, R>(value: Maybe<T>, f: (v: T) => Maybe<R>): Maybe<R> {
  return isPromise(value) ? value.then(f) : f(value)
}

/** A named counter and the length of its windows; keep one object per counter (it is looked up by identity). */
export interface Counter {
  name: string
  windowMs: number
}

/** What `consume` decided. */
export interface RateDecision {
  allowed: boolean
  /** Points in the current window, this one included (refused hits count too: a flood never earns a reset). */
  count: number
  /** When the window closes: how long a refused caller should wait, ms. */
  retryAfterMs: number
}

/**
 * Earmark's rate limits over one backend (docs/limits.md): every limiter goes through this interface, so the
 * backend (memory now, a shared store for several nodes) changes in one place.
 */
export interface RateLimits {
  readonly backend: string
  /** Counts one hit of `id` against `limit` points per window of `counter`. */
  consume(counter: Counter, id: string, limit: number): Maybe<RateDecision>
  /** The open window of `id`, without counting; undefined when none is open. */
  peek(counter: Counter, id: string): Maybe<WindowCount | undefined>
  /** Sets `id`'s window to hold `count` for `ms` (blocks and back-offs). */
  set(counter: Counter, id: string, count: number, ms: number): Maybe<void>
}

/** The rate limits over `backend` (default: this process's memory). */
export function createRateLimits(backend: RateLimitBackend = createMemoryRateLimitBackend()): RateLimits {
  const decide = (w: WindowCount, limit: number): RateDecision => ({
    allowed: w.count <= limit,
    count: w.count,
    retryAfterMs: Math.max(0, w.msLeft),
  })
  // Each counter's store, by the counter object itself: found by identity, with no name to build per hit.
  const stores = new Map<Counter, CounterStore>()
  const storeOf = (counter: Counter) => {
    let store = stores.get(counter)
    if (!store) {
      store = backend.counter(counter.name, counter.windowMs)
      stores.set(counter, store)
    }
    return store
  }
  return {
    backend: backend.kind,
    consume(counter, id, limit) {
      const w = storeOf(counter).hit(id, 1)
      return w instanceof Promise ? w.then((v) => decide(v, limit)) : decide(w, limit)
    },
    peek: (counter, id) => storeOf(counter).peek(id),
    set: (counter, id, count, ms) => storeOf(counter).set(id, count, ms),
  }
}
