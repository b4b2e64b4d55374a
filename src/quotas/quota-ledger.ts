import type { AudioTotalFilter, Store } from '../store/index.js'

/**
 * One quota counter for one period: the audio seconds a key, an end user of a key, or an end user of a project
 * consumed since `filter.start`, held against `limit` (docs/quotas.md).
 */
export interface QuotaBucket {
  /** Names the counter and its period; two requests sharing a counter must give the same id. */
  id: string
  projectId: string
  /** Whose usage records count, since the period's start. */
  filter: AudioTotalFilter
  /** Seconds allowed in the period. */
  limit: number
  /** Epoch ms when the period ends and the counter starts again from zero. */
  resetsAt: number
}

/**
 * What one request or stream may still consume, across every bucket that applies to it. `take` is
 * synchronous because a live stream asks before each chunk of PCM it feeds the engine.
 */
export interface QuotaReservation<B extends QuotaBucket = QuotaBucket> {
  /** Seconds left now: the least over the buckets, never below 0. */
  remaining(): number
  /** Consumes up to `seconds`; returns what was granted (less than asked when a quota ran out). */
  take(seconds: number): number
  /** The buckets that leave less than `seconds` (the ones refusing that much more audio). */
  short(seconds: number): B[]
  /** Seconds left in one of its buckets. */
  left(bucket: B): number
  /**
   * Ends the reservation once what it took is in the store (its usage record is written), so the
   * seconds are counted there and no longer here. Safe to call more than once.
   */
  release(): void
}

/**
 * Audio-second accounting behind quotas: usage records in the store (summed there, in SQL) plus what requests
 * still open have consumed and not yet written. The memory ledger keeps the open part in this process; a
 * shared backend (Redis, for several nodes) can keep it where every node sees it, behind this interface.
 */
export interface QuotaLedger {
  /** Opens a reservation over `buckets` (read from the store first); what it takes counts at once for all. */
  reserve<B extends QuotaBucket>(buckets: readonly B[]): Promise<QuotaReservation<B>>
}

/**
 * How far a take may overshoot what is left and still be granted whole: float sums of chunk lengths drift by
 * about 1e-15 s, and a drift must not cut the last chunk of an allowance by a sample.
 */
const SLACK_SECONDS = 1e-9

interface Counter {
  /** Seconds of finished records: the store's sum when the counter was made, plus what settled here since. */
  settled: number
  /** Seconds taken by reservations still open. */
  open: number
  /** Open reservations holding this counter; at 0 it is forgotten (the store has it all). */
  holders: number
  /** Settles once the store's sum is in `settled`. */
  ready: Promise<void>
}

/**
 * The in-process ledger. A counter is read from the store once, by the first reservation of its bucket, and
 * lives while reservations hold it; what they took is added to it when they are released. Usage records of
 * open streams hold 0 s until they finish, and a reservation is released only after its record is written,
 * so a second is counted in the store or here, never in neither; and since a live counter is not read again,
 * never in both. Records written meanwhile by another process sharing the store are seen once the counter is
 * forgotten and read afresh (docs/quotas.md "Several servers").
 */
export function createMemoryQuotaLedger(o: { store: Store }): QuotaLedger {
  const counters = new Map<string, Counter>()

  const counterOf = (bucket: QuotaBucket): Counter => {
    const existing = counters.get(bucket.id)
    if (existing) return existing
    const c: Counter = { settled: 0, open: 0, holders: 0, ready: Promise.resolve() }
    c.ready = o.store.sumAudioSeconds(bucket.projectId, bucket.filter).then(
      (total) => {
        c.settled += total
      },
      (err: unknown) => {
        // A failed read is not kept: the next reservation reads again.
        if (counters.get(bucket.id) === c) counters.delete(bucket.id)
        throw err
      },
    )
    counters.set(bucket.id, c)
    return c
  }

  return {
    async reserve(buckets) {
      const held = buckets.map((bucket) => {
        const c = counterOf(bucket)
        c.holders++
        return { bucket, c }
      })
      let taken = 0
      let released = false
      const release = (settle: boolean) => {
        if (released) return
        released = true
        for (const { bucket, c } of held) {
          c.open -= taken
          if (settle) c.settled += taken
          if (--c.holders === 0 && counters.get(bucket.id) === c) counters.delete(bucket.id)
        }
      }
      try {
        await Promise.all(held.map(({ c }) => c.ready))
      } catch (err) {
        release(false)
        throw err
      }
      const leftIn = (bucket: QuotaBucket, c: Counter) => Math.max(0, bucket.limit - c.settled - c.open)
      const remaining = () =>
        held.reduce((least, { bucket, c }) => Math.min(least, leftIn(bucket, c)), Number.POSITIVE_INFINITY)
      return {
        remaining,
        take(seconds) {
          if (released || !(seconds > 0)) return 0
          const left = remaining()
          const granted = seconds <= left + SLACK_SECONDS ? seconds : left
          if (granted > 0) {
            taken += granted
            for (const { c } of held) c.open += granted
          }
          return granted
        },
        short: (seconds) =>
          held.filter(({ bucket, c }) => leftIn(bucket, c) + SLACK_SECONDS < seconds).map((h) => h.bucket),
        left(bucket) {
          const h = held.find((x) => x.bucket.id === bucket.id)
          return h ? leftIn(h.bucket, h.c) : 0
        },
        release: () => release(true),
      }
    },
  }
}
