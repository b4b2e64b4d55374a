import type { AuditLog } from '../audit/index.js'
import type { Clock, RefusalReason, RefusedCredential } from '../auth/index.js'
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

/**
 * Records `limit.refused` audit events, at most one per limit and subject per window (docs/limits.md), and
 * `auth.refused` events for refused credentials that are recognised and verified, at most one per key,
 * reason and window (docs/audit.md).
 */
export interface RefusalAudit {
  refused(event: LimitRefusal): void
  /** For `AuthenticatorOptions.onRefused`: a recognised credential was refused. */
  authRefused(reason: RefusalReason, credential: RefusedCredential): void
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
  /**
   * Whether `subject`'s refusal is recorded now: undefined when it is only counted; else the refusals
   * counted since the last recorded one (0 for none).
   */
  const admit = (subject: string): number | undefined => {
    const now = options.clock.now()
    const last = seen.get(subject)
    if (last && now - last.at < windowMs) {
      last.suppressed++
      return undefined
    }
    seen.delete(subject)
    if (seen.size >= maxSubjects) {
      const oldest = seen.keys().next().value
      if (oldest !== undefined) seen.delete(oldest)
    }
    seen.set(subject, { at: now, suppressed: 0 })
    return last?.suppressed ?? 0
  }
  return {
    refused(e) {
      const audit = options.audit
      if (!audit) return
      const suppressed = admit(`${e.limit}\n${e.projectId}\n${e.keyId ?? ''}\n${e.endUser ?? ''}`)
      if (suppressed === undefined) return
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
          ...(suppressed > 0 ? { suppressed } : {}),
        },
      })
    },
    authRefused(reason, c) {
      const audit = options.audit
      // A token that did not verify names ids anyone can write: it never reaches a project's trail.
      if (!audit || !c.verified) return
      const suppressed = admit(`auth\n${reason}\n${c.projectId}\n${c.keyId}\n${c.endUser ?? ''}`)
      if (suppressed === undefined) return
      audit.record({
        projectId: c.projectId,
        type: 'auth.refused',
        actorKeyId: c.keyId,
        keyId: c.keyId,
        endUser: c.endUser ?? null,
        ip: null,
        requestId: null,
        detail: {
          reason,
          ...(c.jti ? { jti: c.jti } : {}),
          ...(suppressed > 0 ? { suppressed } : {}),
        },
      })
    },
  }
}
