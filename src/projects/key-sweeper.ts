import { isoDate, type Services } from './context.js'
import { auditKeyEvent, type KeyActor } from './keys.js'

/** How long an expired key stays (listed as expired, refused) before it is deleted: a week (docs/audit.md). */
export const DEFAULT_EXPIRED_KEY_RETENTION_SECONDS = 7 * 86_400
/** How often the server sweeps: a minute. */
export const DEFAULT_KEY_SWEEP_INTERVAL_MS = 60_000

/** What one pass did. */
export interface SweepResult {
  /** Keys whose expiry this pass noticed first (`key.expired` written). */
  expired: number
  /** Keys deleted because they expired longer ago than the retention (`key.swept` written). */
  swept: number
}

/**
 * Notices keys that expired and deletes them once their retention is over, so nobody has to remember to
 * (docs/audit.md, "Expired keys are swept"). An expired key is already refused by authentication and its streams closed
 * by the stream guard's timer; the sweep adds the record, a revocation for any process that missed it, and
 * the deletion.
 */
export interface KeySweeper {
  /** One pass as of now: after a pass already running (which may have started before a key expired). */
  sweep(): Promise<SweepResult>
  /** Sweeps every interval from now on (and once at once); nothing when the interval is 0. */
  start(): void
  /** Stops the timer and waits for a pass in flight. */
  close(): Promise<void>
}

export interface KeySweeperOptions {
  services: Services
  /** ms between passes (default a minute); 0: `start` does nothing. */
  intervalMs?: number
  /** Seconds an expired key is kept before it is deleted (default a week); 0: deleted when noticed. */
  retentionSeconds?: number
  /** Keys read per store call (default 500). */
  batch?: number
  /** Who the events name: the server's sweeper, or an operator's `earmark keys sweep`. */
  via?: 'sweeper' | 'cli'
  /** A pass that failed (it is retried at the next interval). */
  onError?: (err: unknown) => void
}

/** The most keys one pass looks at; the rest wait for the next pass. */
const MAX_PER_PASS = 100_000

export function createKeySweeper(o: KeySweeperOptions): KeySweeper {
  const { services } = o
  const { store, clock } = services
  const intervalMs = o.intervalMs ?? DEFAULT_KEY_SWEEP_INTERVAL_MS
  const retentionMs = (o.retentionSeconds ?? DEFAULT_EXPIRED_KEY_RETENTION_SECONDS) * 1000
  const batch = o.batch ?? 500
  const actor: KeyActor = { via: o.via ?? 'sweeper' }
  let timer: NodeJS.Timeout | undefined
  let running: Promise<SweepResult> | undefined

  const pass = async (): Promise<SweepResult> => {
    const now = clock.now()
    const result: SweepResult = { expired: 0, swept: 0 }
    const sweepBefore = now - retentionMs
    // Only keys with work left come back (expiry not yet noted, or past their retention), and each one is
    // noted or deleted below, so it drops out: the pass reads batches until one comes back short.
    for (let done = 0; done < MAX_PER_PASS; ) {
      const keys = await store.listExpiredKeys(now, batch, { sweepBefore })
      let progressed = false
      for (const key of keys) {
        if (key.expiresAt === null) continue
        const detail = { expired_at: isoDate(key.expiresAt) }
        // True only for the first process to notice, so two servers on one store write one event.
        if (await store.noteKeyExpired(key.projectId, key.id, now)) {
          progressed = true
          result.expired++
          auditKeyEvent(services, 'key.expired', key, actor, detail)
          services.revocations?.publish({
            type: 'key-revoked',
            projectId: key.projectId,
            keyId: key.id,
            reason: 'expired',
          })
        }
        if (key.expiresAt <= sweepBefore && (await store.deleteKey(key.projectId, key.id, now))) {
          progressed = true
          result.swept++
          auditKeyEvent(services, 'key.swept', key, actor, {
            ...detail,
            retention_seconds: retentionMs / 1000,
          })
        }
      }
      done += keys.length
      // A short batch is the last; a batch where another process did all the work is read again.
      if (keys.length < batch || !progressed) break
      // The store is synchronous underneath: let requests through between batches.
      await new Promise((resolve) => setImmediate(resolve))
    }
    return result
  }

  const sweep = async (): Promise<SweepResult> => {
    while (running) await running.catch(() => {})
    const mine = pass().finally(() => {
      running = undefined
    })
    running = mine
    return mine
  }

  // The timer skips a beat rather than queue passes behind a slow one.
  const tick = () => {
    if (!running) sweep().catch((err: unknown) => o.onError?.(err))
  }

  return {
    sweep,
    start() {
      if (intervalMs <= 0 || timer) return
      tick()
      timer = setInterval(tick, intervalMs)
      timer.unref()
    },
    async close() {
      clearInterval(timer)
      timer = undefined
      await running?.catch(() => {})
    },
  }
}
