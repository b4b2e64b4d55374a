import type { AuditLog } from '../audit/index.js'
import type { Clock } from '../auth/index.js'
import type { LimitName } from './limit-options.js'

/** One limit refusal, as the audit trail is told of it (never a secret: keys by id, no credential). */
export interface LimitRefusal {
  projectId: string
  limit: LimitName
  /** The limit that was reached (requests per minute, concurrent streams, ...). */
  value: number
  retryAfterMs: number
  /** The key the limit belongs to (the paying key: a grant token's parent), when it is a key's. */
  keyId?: string | null
  actorKeyId?: string | null
  endUser?: string | null
  ip?: string | null
  requestId?: string | null
}

/** Records `limit.refused` audit events, at most one per limit and subject per window (docs/limits.md). */
export interface RefusalAudit {
  refused(event: LimitRefusal): void
}

export interface RefusalAuditOptions {
  audit: AuditLog | undefined
  clock: Clock
  /** One event per limit, project and subject (key, end user or address) per this many ms (default 60 000). */
  windowMs?: number
  /** Subjects remembered at most; the oldest are forgotten first (default 10 000). */
  maxSubjects?: number
}

/**
 * A flood of refusals must not become a flood of audit rows: the first refusal of a limit for a subject is
 * recorded, the next ones in the window are only counted, and that count (`suppressed`) rides on the next
 * event recorded for the subject.
 */
export function createRefusalAudit(options: RefusalAuditOptions): RefusalAudit {
  const windowMs = options.windowMs ?? 60_000
  const maxSubjects = options.maxSubjects ?? 10_000
  const seen = new Map<string, { at: number; suppressed: number }>()
  return {
    refused(e) {
      const audit = options.audit
      if (!audit) return
      const subject = `${e.limit}\n${e.projectId}\n${e.keyId ?? ''}\n${e.endUser ?? ''}`
      const now = options.clock.now()
      const last = seen.get(subject)
      if (last && now - last.at < windowMs) {
        last.suppressed++
        return
      }
      seen.delete(subject)
      if (seen.size >= maxSubjects) {
        const oldest = seen.keys().next().value
        if (oldest !== undefined) seen.delete(oldest)
      }
      seen.set(subject, { at: now, suppressed: 0 })
      audit.record({
        projectId: e.projectId,
        type: 'limit.refused',
        actorKeyId: e.actorKeyId ?? e.keyId ?? null,
        keyId: e.keyId ?? null,
        endUser: e.endUser ?? null,
        ip: e.ip ?? null,
        requestId: e.requestId ?? null,
        detail: {
          limit: e.limit,
          value: e.value,
          retry_after_ms: Math.round(e.retryAfterMs),
          ...(last && last.suppressed > 0 ? { suppressed: last.suppressed } : {}),
        },
      })
    },
  }
}
