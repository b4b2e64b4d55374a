import { randomUUID } from 'node:crypto'
import type { AccessRequest } from '../access/index.js'
import type { Clock, Principal } from '../auth/index.js'
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
 * what is queued; `close` flushes and stops. Events queued when the process dies (at most one interval's
 * worth) are lost; everything flushed survives.
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
  /** Events held at most while the store is slow; older ones are dropped and counted (default 100 000). */
  maxQueue?: number
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
  let queue: AuditEvent[] = []
  let writing: Promise<void> = Promise.resolve()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  let dropped = 0

  const writeQueued = (): Promise<void> => {
    timer = undefined
    const events = queue
    queue = []
    if (dropped > 0) {
      options.onError?.(new Error('audit queue overflowed'), { dropped })
      dropped = 0
    }
    writing = writing.then(async () => {
      for (let i = 0; i < events.length; i += maxBatch) {
        // Requests run between batches: a busy grant route queues ~1000 events a flush, and writing them in
        // one go held the event loop for ~4 ms (the grant benchmark's p99).
        if (i > 0) await new Promise((resolve) => setImmediate(resolve))
        try {
          await store.insertAuditEvents(events.slice(i, i + maxBatch))
        } catch (err) {
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
    },
  }
}
