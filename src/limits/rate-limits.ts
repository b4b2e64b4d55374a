import {
  type CounterStore,
  createMemoryRateLimitBackend,
  type FailureLadder,
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

/** One rate of a request: a hit of `id` in `counter`'s window, allowed while its count stays within `limit`. */
export interface RateHit {
  counter: Counter
  id: string
  limit: number
}

/** A window that refuses a request while it holds `min` points or more (an address's back-off or block). */
export interface RateGuard {
  counter: Counter
  id: string
  min: number
}

/** What `consumeAll` decided; neither field: every hit was admitted. */
export interface BatchDecision {
  /** The guard's open window, when it refused: nothing was counted. */
  guarded?: WindowCount
  /** The first hit refused (its index in the hits, its decision); the hits after it were not counted. */
  refused?: { index: number; decision: RateDecision }
}

const ADMITTED: BatchDecision = Object.freeze({})

/**
 * Earmark's rate limits over one backend (docs/limits.md): every limiter goes through this interface, so the
 * backend (memory now, a shared store for several nodes) changes in one place.
 */
export interface RateLimits {
  readonly backend: string
  /**
   * True when the backend counts a whole `consumeAll` (and `ladder`) in one round trip: a remote backend,
   * where each call is worth saving. False: `consumeAll` is the single calls one after the other.
   */
  readonly batched: boolean
  /**
   * Checks `guard`, then counts `hits` in order and stops at the first refused, so a refusal spends none of
   * the windows after it (a key over its own limit spends none of its project's budget).
   */
  consumeAll(hits: readonly RateHit[], guard?: RateGuard): Maybe<BatchDecision>
  /** The failed-authentication ladder in one round trip, when the backend has it (`batched`). */
  ladder?(bucket: string, ladder: FailureLadder): Promise<{ count: number; ms: number } | undefined>
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
  const consume = (counter: Counter, id: string, limit: number): Maybe<RateDecision> => {
    const w = storeOf(counter).hit(id, 1)
    return w instanceof Promise ? w.then((v) => decide(v, limit)) : decide(w, limit)
  }
  /** `hits[i..]` one call after the other: synchronously while the backend answers synchronously. */
  const consumeFrom = (hits: readonly RateHit[], i: number): Maybe<BatchDecision> => {
    for (; i < hits.length; i++) {
      const h = hits[i] as RateHit
      const d = consume(h.counter, h.id, h.limit)
      if (isPromise(d)) {
        const at = i
        return d.then((v) =>
          v.allowed ? consumeFrom(hits, at + 1) : { refused: { index: at, decision: v } },
        )
      }
      if (!d.allowed) return { refused: { index: i, decision: d } }
    }
    return ADMITTED
  }
  const { batch } = backend
  const consumeAll: RateLimits['consumeAll'] = batch
    ? async (hits, guard) => {
        const result = await batch.call(
          backend,
          hits.map((h) => ({ ...h.counter, id: h.id, points: 1, limit: h.limit })),
          guard && { name: guard.counter.name, id: guard.id, min: guard.min },
        )
        if (result.guard) return { guarded: result.guard }
        const index = result.windows.length - 1
        const last = result.windows[index]
        const hit = hits[index]
        if (!last || !hit || last.count <= hit.limit) return ADMITTED
        return { refused: { index, decision: decide(last, hit.limit) } }
      }
    : (hits, guard) =>
        guard
          ? andThen(storeOf(guard.counter).peek(guard.id), (open) =>
              open && open.count >= guard.min ? { guarded: open } : consumeFrom(hits, 0),
            )
          : consumeFrom(hits, 0)
  const { ladder } = backend
  return {
    backend: backend.kind,
    batched: batch !== undefined,
    consume,
    consumeAll,
    ...(ladder ? { ladder: (bucket: string, l: FailureLadder) => ladder.call(backend, bucket, l) } : {}),
    peek: (counter, id) => storeOf(counter).peek(id),
    set: (counter, id, count, ms) => storeOf(counter).set(id, count, ms),
  }
}
