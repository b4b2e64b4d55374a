import { LRUCache } from 'lru-cache'

/** A value, or a promise of it: the in-memory windows answer at once, the shared ones (Redis) later. */
export type MaybePromise<T> = T | Promise<T>

/**
 * The sliding windows the suspicious-activity rules count in (docs/suspicious-activity.md). A subject is
 * an opaque string (`ip|k:<key id>`); time is passed in, so a manual clock drives them in tests. In this
 * process's memory (`createMemoryWindows`), or in Redis so every node counts together
 * (`createRedisActivityWindows`, docs/redis.md); one behaviour table tests both
 * (test/store/redis-activity-windows.test.ts). Implementations bound their memory: they may forget the least
 * recently seen subjects, or let them expire. An implementation that cannot count answers what changes
 * nothing rather than failing: detection never fails a request.
 */
export interface ActivityWindows {
  /**
   * Notes that `subject` showed `value` at `now`; answers how many distinct values it showed within the
   * last `windowMs` (this one included), counting no further than `cap`.
   */
  distinct(subject: string, value: string, now: number, windowMs: number, cap: number): MaybePromise<number>
  /** Counts one event of `subject` at `now`; answers how many fell within the last `windowMs` (approximately). */
  count(subject: string, now: number, windowMs: number): MaybePromise<number>
  /** True for the first claim of `subject` in a window of `windowMs` from that claim; false until it ends. */
  claim(subject: string, now: number, windowMs: number): MaybePromise<boolean>
  /** Whether `subject` has seen `value` before: `first` when it has seen nothing yet. */
  seen(subject: string, value: string): MaybePromise<'known' | 'new' | 'first'>
  /** Remembers `value` for `subject`, keeping at most `max` values (the least recently learnt go first). */
  learn(subject: string, value: string, max: number): MaybePromise<void>
}

export interface MemoryWindowsOptions {
  /** Subjects remembered per kind of window (least recently used forgotten first); default 50 000. */
  maxSubjects?: number
}

/** Two fixed buckets, weighted: the sliding-window counter, O(1) memory per subject. */
interface Counter {
  start: number
  current: number
  previous: number
}

/** The windows in this process's memory. */
export function createMemoryWindows(options: MemoryWindowsOptions = {}): ActivityWindows {
  const max = options.maxSubjects ?? 50_000
  // Each value with when it was last seen, in insertion order: re-inserting on a sighting keeps the oldest
  // first, so expired values are dropped from the front. `oldest` is the front's time after the last prune.
  const values = new LRUCache<string, { seen: Map<string, number>; oldest: number }>({ max })
  const counters = new LRUCache<string, Counter>({ max })
  const claims = new LRUCache<string, number>({ max })
  const remembered = new LRUCache<string, Set<string>>({ max })
  return {
    distinct(subject, value, now, windowMs, cap) {
      let entry = values.get(subject)
      if (!entry) {
        entry = { seen: new Map(), oldest: now }
        values.set(subject, entry)
      }
      const { seen } = entry
      const at = seen.get(value)
      // The same value again, seen lately, with nothing due to expire: the count stands. Its time is
      // refreshed at most every 1/16 of the window, which is how late a value may be forgotten.
      if (at !== undefined && now - at < windowMs / 16 && entry.oldest > now - windowMs) return seen.size
      seen.delete(value)
      seen.set(value, now)
      for (const [v, t] of seen) {
        if (t > now - windowMs && seen.size <= cap) {
          entry.oldest = t
          break
        }
        seen.delete(v)
      }
      // The newest value is never the one dropped: it was inserted last and the loop stops at cap.
      return seen.size
    },
    count(subject, now, windowMs) {
      const bucket = Math.floor(now / windowMs) * windowMs
      let c = counters.get(subject)
      if (!c || bucket - c.start >= 2 * windowMs) {
        c = { start: bucket, current: 0, previous: 0 }
        counters.set(subject, c)
      } else if (bucket !== c.start) {
        c.previous = c.current
        c.current = 0
        c.start = bucket
      }
      c.current++
      // The previous bucket counts for the part of it still inside the window.
      const overlap = 1 - (now - c.start) / windowMs
      return c.current + Math.floor(c.previous * overlap)
    },
    claim(subject, now, windowMs) {
      const until = claims.get(subject)
      if (until !== undefined && until > now) return false
      claims.set(subject, now + windowMs)
      return true
    },
    seen(subject, value) {
      const set = remembered.get(subject)
      if (!set || set.size === 0) return 'first'
      return set.has(value) ? 'known' : 'new'
    },
    learn(subject, value, maxValues) {
      let set = remembered.get(subject)
      if (!set) {
        set = new Set()
        remembered.set(subject, set)
      }
      set.delete(value)
      set.add(value)
      for (const v of set) {
        if (set.size <= maxValues) break
        set.delete(v)
      }
    },
  }
}
