import type { AccessRequest } from '../access/index.js'
import { type AuditLog, auditContext } from '../audit/index.js'
import type { Clock, KeyQuotas, Principal, ProjectSettings } from '../auth/index.js'
import { type ApiError, tooManyRequests } from '../errors.js'
import { endUserOf } from '../projects/index.js'
import type { Store } from '../store/index.js'
import type { QuotaBucket, QuotaLedger, QuotaReservation } from './quota-ledger.js'
import { createMemoryQuotaLedger } from './quota-ledger.js'
import { periodBounds, type QuotaPeriod } from './quota-periods.js'

/**
 * Less than this many seconds left counts as nothing left: a request is refused rather than admitted to
 * decode a millisecond (metering is finer, at one sample, but nobody is served by a 1 ms allowance).
 */
export const MIN_QUOTA_SECONDS = 0.001

/** Whose counter a quota is held against (docs/quotas.md "Which quotas apply"). */
export type QuotaScope = 'key' | 'key_end_user' | 'project_end_user'

/** One quota that applies to a request: the wire name, where it was set, and its counter for this period. */
export interface QuotaRule extends QuotaBucket {
  /** The wire field, e.g. `audio_seconds_per_day`. */
  quota: string
  scope: QuotaScope
  /** Where the limit comes from: the key's own `quotas`, or the project's settings. */
  source: 'key' | 'project'
  period: QuotaPeriod
}

/** The allowance of one listen request or live stream, open from admission until its usage record is written. */
export interface QuotaLease {
  /** Seconds it may still consume. */
  remaining(): number
  /** Consumes up to `seconds` of audio; returns what was granted (less: a quota ran out). */
  take(seconds: number): number
  /**
   * The 429 refusing `seconds` more audio (default: any), with `Retry-After` to the end of the latest period
   * among the quotas that refuse it; records `quota.refused`.
   */
  refuse(seconds?: number): ApiError
  /** Records `quota.exhausted`: the stream was closed, or the decode stopped, at the allowance. */
  exhausted(audioSeconds: number): void
  /** Gives the reservation up once the usage record is written (or nothing was metered). Idempotent. */
  release(): void
}

/** Quotas of audio seconds per key and per end user, per UTC day and month (docs/quotas.md). */
export interface QuotaEnforcer {
  /**
   * The allowance of one listen request or stream, or undefined when no quota applies to its credential.
   * Throws the 429 (`TOO_MANY_REQUESTS`, `Retry-After`) when nothing is left, before anything is claimed.
   */
  open(principal: Principal, access?: AccessRequest): Promise<QuotaLease | undefined>
}

export interface QuotaEnforcerOptions {
  store: Store
  clock: Clock
  /** Where consumption is counted; default the in-process ledger over `store`. */
  ledger?: QuotaLedger
  /** A project's settings, e.g. from the server's shared settings cache; default: read from `store`. */
  projectSettings?: (projectId: string) => ProjectSettings | Promise<ProjectSettings>
  audit?: AuditLog
}

const KEY_QUOTAS = [
  ['audio_seconds_per_day', 'audioSecondsPerDay', 'day'],
  ['audio_seconds_per_month', 'audioSecondsPerMonth', 'month'],
] as const
const END_USER_QUOTAS = [
  ['end_user_audio_seconds_per_day', 'endUserAudioSecondsPerDay', 'day'],
  ['end_user_audio_seconds_per_month', 'endUserAudioSecondsPerMonth', 'month'],
] as const

const round3 = (s: number) => Math.round(s * 1000) / 1000

function scopeWords(rule: QuotaRule): string {
  if (rule.scope === 'key') return rule.source === 'key' ? "this key's" : "the project's per-key"
  return rule.scope === 'key_end_user' ? "this key's per-end-user" : "the project's per-end-user"
}

/** The rules that apply to `principal` at `now`: the key's own quotas, else the project's, and end users'. */
export function quotaRules(
  principal: Principal,
  projectQuotas: KeyQuotas | undefined,
  now: number,
): QuotaRule[] {
  const own = principal.keyRecord.options?.quotas
  const { projectId, keyId } = principal
  const endUser = endUserOf(principal)
  const rules: QuotaRule[] = []
  const add = (
    quota: string,
    period: QuotaPeriod,
    limit: number | undefined,
    scope: QuotaScope,
    source: QuotaRule['source'],
  ) => {
    if (limit === undefined) return
    const { start, end } = periodBounds(period, now)
    // A request counts toward the period it started in (its usage record's start), however long it runs.
    const who =
      scope === 'key'
        ? { keyId }
        : scope === 'key_end_user'
          ? { keyId, endUser: endUser ?? '' }
          : { endUser: endUser ?? '' }
    rules.push({
      id: JSON.stringify([projectId, scope, who, period, start]),
      projectId,
      filter: { ...who, start },
      limit,
      resetsAt: end,
      quota,
      scope,
      source,
      period,
    })
  }
  for (const [quota, field, period] of KEY_QUOTAS) {
    const mine = own?.[field]
    add(quota, period, mine ?? projectQuotas?.[field], 'key', mine !== undefined ? 'key' : 'project')
  }
  if (endUser !== null) {
    for (const [quota, field, period] of END_USER_QUOTAS) {
      add(quota, period, own?.[field], 'key_end_user', 'key')
      add(quota, period, projectQuotas?.[field], 'project_end_user', 'project')
    }
  }
  return rules
}

export function createQuotaEnforcer(o: QuotaEnforcerOptions): QuotaEnforcer {
  const { store, clock } = o
  const ledger = o.ledger ?? createMemoryQuotaLedger({ store })
  const settingsOf =
    o.projectSettings ?? (async (projectId: string) => (await store.getProject(projectId))?.settings ?? {})

  const leaseOf = (
    principal: Principal,
    access: AccessRequest | undefined,
    reservation: QuotaReservation<QuotaRule>,
    rules: QuotaRule[],
  ): QuotaLease => {
    const who = { ...auditContext(principal, access), endUser: endUserOf(principal), keyId: principal.keyId }
    const transport = access?.transport ?? null
    return {
      remaining: () => reservation.remaining(),
      take: (seconds) => reservation.take(seconds),
      refuse(seconds) {
        const asked = seconds ?? MIN_QUOTA_SECONDS
        const short = reservation.short(asked)
        const refusing = short.length > 0 ? short : rules
        // Admitted again only once every quota refusing it has started a new period.
        const resetsAt = Math.max(...refusing.map((r) => r.resetsAt))
        const now = clock.now()
        const first = refusing[0] as QuotaRule
        const when = new Date(resetsAt).toISOString()
        const detail =
          seconds === undefined
            ? `Audio quota exhausted: ${scopeWords(first)} ${first.quota} (${first.limit} s) is used up until ${when}.`
            : `The audio is ${round3(seconds)} s but ${scopeWords(first)} ${first.quota} (${first.limit} s) leaves ${round3(reservation.left(first))} s until ${when}.`
        o.audit?.record({
          ...who,
          type: 'quota.refused',
          detail: {
            quotas: refusing.map((r) => ({
              quota: r.quota,
              scope: r.scope,
              source: r.source,
              limit: r.limit,
            })),
            ...(seconds === undefined ? {} : { audio_seconds: round3(seconds) }),
            remaining_seconds: round3(reservation.remaining()),
            retry_after_ms: resetsAt - now,
            transport,
          },
        })
        return tooManyRequests(detail, resetsAt - now)
      },
      exhausted(audioSeconds) {
        const spent = reservation.short(MIN_QUOTA_SECONDS)
        o.audit?.record({
          ...who,
          type: 'quota.exhausted',
          detail: {
            quotas: spent.map((r) => ({ quota: r.quota, scope: r.scope, source: r.source, limit: r.limit })),
            audio_seconds: round3(audioSeconds),
            transport,
          },
        })
      },
      release: () => reservation.release(),
    }
  }

  return {
    async open(principal, access) {
      const rules = quotaRules(principal, (await settingsOf(principal.projectId)).quotas, clock.now())
      if (rules.length === 0) return undefined
      const reservation = await ledger.reserve(rules)
      const lease = leaseOf(principal, access, reservation, rules)
      if (reservation.remaining() < MIN_QUOTA_SECONDS) {
        reservation.release()
        throw lease.refuse()
      }
      return lease
    },
  }
}
