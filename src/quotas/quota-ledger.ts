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
  /** Seconds in the store's records for this period (last read, plus what finished here since). */
  settled: number
  /** Seconds taken by reservations still open. */
  open: number
  /** Open reservations holding this counter; at 0 it is forgotten (the store has it all). */
  holders: number
  /** Bumped whenever `settled` grows here, so a store read that raced with it is not trusted blindly. */
  epoch: number
}

/**
 * The in-process ledger. A counter lives while a reservation holds it; each new reservation re-reads its
 * buckets' totals from the store, so records written by other requests (or by a process that restarted) count.
 * Usage records of open streams hold 0 s until they finish, and a reservation is released only after its
 * record is written: a second is thus counted in the store, here, or for an instant in both, never in neither.
 */
export function createMemoryQuotaLedger(o: { store: Store }): QuotaLedger {
  const counters = new Map<string, Counter>()

  const read = async (bucket: QuotaBucket, c: Counter) => {
    for (let attempt = 0; ; attempt++) {
      const epoch = c.epoch
      const total = await o.store.sumAudioSeconds(bucket.projectId, bucket.filter)
      if (c.epoch === epoch) {
        c.settled = total
        return
      }
      // A reservation settled while the store was read: the read may miss it; after a few tries keep the
      // larger figure, which can only over-count for an instant.
      if (attempt >= 2) {
        c.settled = Math.max(c.settled, total)
        return
      }
    }
  }

  return {
    async reserve(buckets) {
      const held = buckets.map((bucket) => {
        let c = counters.get(bucket.id)
        if (!c) {
          c = { settled: 0, open: 0, holders: 0, epoch: 0 }
          counters.set(bucket.id, c)
        }
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
          if (settle) {
            c.settled += taken
            c.epoch++
          }
          if (--c.holders === 0) counters.delete(bucket.id)
        }
      }
      try {
        await Promise.all(held.map(({ bucket, c }) => read(bucket, c)))
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
