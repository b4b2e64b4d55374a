import { randomUUID } from 'node:crypto'
import type { AccessRequest } from '../access/index.js'
import type { Clock, Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { AuditEvent, Store } from '../store/index.js'

/** An audit event as callers give it; id and time are filled in (docs/audit.md lists the types). */
export interface AuditInput {
  projectId: string
  type: string
  actorKeyId?: string | null
  keyId?: string | null
  endUser?: string | null
  ip?: string | null
  requestId?: string | null
  /** Event-specific, JSON-serialisable, never a secret. */
  detail?: Record<string, unknown>
}

/**
 * The audit trail. `record` never waits and never throws: events are queued and written in batches, one
 * transaction each, so auditing every grant costs the grant route a push onto an array. `flush` writes
 * what is queued; `close` flushes and stops. A batch the store cannot take for now (503: PostgreSQL
 * restarting) stays queued, in order, and is tried again until it is written. Events queued when the process
 * dies (at most one interval's worth, or what an outage held back) are lost; everything flushed survives.
 */
export interface AuditLog {
  record(event: AuditInput): void
  /** Resolves once every event recorded before the call is written (or its write failed and was reported). */
  flush(): Promise<void>
  close(): Promise<void>
}

export interface AuditLogOptions {
  store: Store
  clock: Clock
  /** How often queued events are written, ms (default 100). */
  flushIntervalMs?: number
  /** Events written per transaction at most (default 200); requests run between transactions. */
  maxBatch?: number
  /** Events held at most while the store is slow or away; older ones are dropped and counted (default 100 000). */
  maxQueue?: number
  /** How long a batch the store could not take (503) waits before it is tried again, ms (default 1000). */
  retryMs?: number
  /** A failed write or dropped events (logged by the caller; never rethrown). */
  onError?: (err: unknown, context: { dropped?: number }) => void
}

/** Who and where, from an authenticated request: the actor key, end user, address and request id. */
export function auditContext(
  principal: Principal,
  access?: AccessRequest | null,
): Pick<AuditInput, 'projectId' | 'actorKeyId' | 'endUser' | 'ip' | 'requestId'> {
  return {
    projectId: principal.projectId,
    actorKeyId: principal.keyId,
    endUser: principal.grant?.endUser ?? null,
    ip: access?.ip ?? null,
    requestId: access?.requestId ?? null,
  }
}

export function createAuditLog(options: AuditLogOptions): AuditLog {
  const { store, clock } = options
  const interval = options.flushIntervalMs ?? 100
  const maxBatch = options.maxBatch ?? 200
  const maxQueue = options.maxQueue ?? 100_000
  const retryMs = options.retryMs ?? 1000
  let queue: AuditEvent[] = []
  let writing: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  let dropped = 0
  /** A write failed for want of the store and waits to be tried again: reported once, not per attempt. */
  let away = false

  const schedule = (ms: number) => {
    if (timer) clearTimeout(timer)
    timer = setTimeout(writeQueued, ms)
    timer.unref()
  }
  /** Puts events that could not be written back before the newer ones, the oldest dropped past `maxQueue`. */
  const requeue = (events: AuditEvent[]) => {
    queue = events.concat(queue)
    const excess = queue.length - maxQueue
    if (excess > 0) {
      queue.splice(0, excess)
      dropped += excess
    }
  }

  const writeQueued = (): Promise<void> => {
    timer = undefined
    writing = writing.then(async () => {
      // Taken when the write starts, so events a failed write put back stay ahead of newer ones.
      const events = queue
      queue = []
      if (dropped > 0) {
        options.onError?.(new Error('audit queue overflowed'), { dropped })
        dropped = 0
      }
      for (let i = 0; i < events.length; i += maxBatch) {
        // Requests run between batches: a busy grant route queues ~1000 events a flush, and writing them in
        // one go held the event loop for ~4 ms (the grant benchmark's p99).
        if (i > 0) await new Promise((resolve) => setImmediate(resolve))
        try {
          await store.insertAuditEvents(events.slice(i, i + maxBatch))
          away = false
        } catch (err) {
          // The store is away for now (a database restart): the changes these events record were acknowledged,
          // so their events wait for it rather than vanish (docs/audit.md).
          if (err instanceof ApiError && err.code === 'SERVICE_UNAVAILABLE' && !closed) {
            if (!away) options.onError?.(err, {})
            away = true
            requeue(events.slice(i))
            schedule(retryMs)
            return
          }
          options.onError?.(err, {})
        }
      }
    })
    return writing
  }

  return {
    record(input) {
      if (closed) return
      if (queue.length >= maxQueue) {
        queue.shift()
        dropped++
      }
      queue.push({
        id: randomUUID(),
        projectId: input.projectId,
        at: clock.now(),
        type: input.type,
        actorKeyId: input.actorKeyId ?? null,
        keyId: input.keyId ?? null,
        endUser: input.endUser ?? null,
        ip: input.ip ?? null,
        requestId: input.requestId ?? null,
        detail: input.detail ?? {},
      })
      if (!timer) {
        timer = setTimeout(writeQueued, interval)
        timer.unref()
      }
    },
    flush() {
      if (timer) clearTimeout(timer)
      return writeQueued()
    },
    async close() {
      if (timer) clearTimeout(timer)
      await writeQueued()
      closed = true
      // A store still away at shutdown: what it could not take is lost, and counted.
      if (timer) clearTimeout(timer)
      if (queue.length > 0) {
        options.onError?.(new Error('audit events not written at shutdown'), { dropped: queue.length })
        queue = []
      }
    },
  }
}
