import type { AccessRequest, AccessStage } from '../access/index.js'
import type { Principal, ProjectSettings } from '../auth/index.js'
import { type ApiError, tooManyRequests } from '../errors.js'
import { type AddressList, clientBucket, createAddressList } from './client-address.js'
import { keyLimit, type LimitName, type ServerLimits } from './limit-options.js'
import type { FailureLadder, WindowCount } from './rate-limit-backend.js'
import {
  andThen,
  type Counter,
  type Maybe,
  type RateDecision,
  type RateGuard,
  type RateHit,
  type RateLimits,
} from './rate-limits.js'
import type { RefusalAudit } from './refusal-audit.js'

const MINUTE = 60_000
const HOUR = 3_600_000
/** The longest back-off before the hourly block takes over. */
const MAX_BACKOFF_MS = 15 * MINUTE

/** The counters (names are what a shared backend stores them under). */
export const COUNTERS = {
  keyRequests: { name: 'key-requests', windowMs: MINUTE },
  projectRequests: { name: 'project-requests', windowMs: MINUTE },
  keyGrants: { name: 'key-grants', windowMs: MINUTE },
  authFailuresMinute: { name: 'auth-failures-minute', windowMs: MINUTE },
  authFailuresHour: { name: 'auth-failures-hour', windowMs: HOUR },
  authBackoffs: { name: 'auth-backoffs', windowMs: HOUR },
  /** An address refused before its credential is checked: count 1 is a back-off, 2 the long block. */
  authBlock: { name: 'auth-block', windowMs: HOUR },
} as const satisfies Record<string, Counter>

const BACKOFF = 1
const BLOCK = 2

/** One rate an admitted request counts against. */
interface RateCheck {
  limit: LimitName
  counter: Counter
  /** Whose count it is (a key id, a project id). */
  subject(principal: Principal): string
  /** The limit that applies (key, then project, then server); 0: not counted. */
  value(principal: Principal, settings: ProjectSettings, request: AccessRequest): number
  refusal(limit: number): string
}

export interface LimitStageOptions {
  limits: ServerLimits
  rates: RateLimits
  /** A project's settings, synchronously while cached (see `createProjectSettingsCache`). */
  projectSettings(projectId: string): Maybe<ProjectSettings>
  /** Where refusals are recorded (throttled); none: not recorded. */
  refusals?: RefusalAudit
  /** Told when an address is backed off or blocked (a log line: there is no project to audit it under). */
  onAddressBlocked?(event: { bucket: string; limit: LimitName; ms: number }): void
  /** A backend failure in `authFailed` (which must not throw); default: ignored. */
  onError?(err: unknown): void
  /** Told of every 429 this stage gives (the metrics, docs/metrics.md); unthrottled, unlike `refusals`. */
  onRefused?(reason: 'rate_limit' | 'auth_backoff'): void
}

function seconds(ms: number): number {
  return Math.max(1, Math.ceil(ms / 1000))
}

/**
 * The rate limits as an access stage (docs/limits.md): `beforeAuth` refuses an address that is backed off
 * or blocked after failed authentications, whatever credential it now presents; `authFailed` counts them;
 * `admit` counts the request against its key (a grant token's parent) and its project, and a grant against
 * its key's grants per minute. Limits: the key's, else the project's, else the server's. Every refusal is a
 * 429 with `Retry-After` and a throttled `limit.refused` audit event.
 */
export function createLimitStage(o: LimitStageOptions): AccessStage {
  const { limits, rates } = o
  const allowed: AddressList = createAddressList(limits.authAllowList)

  const refuse = (
    principal: Principal,
    request: AccessRequest,
    limit: LimitName,
    value: number,
    decision: RateDecision,
    message: string,
  ): ApiError => {
    const retryAfterMs = Math.max(1000, decision.retryAfterMs)
    o.onRefused?.('rate_limit')
    o.refusals?.refused({
      projectId: principal.projectId,
      limit,
      value,
      retryAfterMs,
      keyId: limit === 'project_requests_per_minute' ? null : principal.keyId,
      actorKeyId: principal.keyId,
      endUser: principal.grant?.endUser ?? null,
      ip: request.ip,
      requestId: request.requestId,
    })
    return tooManyRequests(`${message}; retry after ${seconds(retryAfterMs)} s.`, retryAfterMs)
  }

  /**
   * The rate checks of an admitted request, in order. The key's own limit comes first: a key over it is
   * refused without spending its project's budget, so one flooding key cannot starve the project's others.
   */
  const checks: RateCheck[] = [
    {
      limit: 'requests_per_minute',
      counter: COUNTERS.keyRequests,
      subject: (p) => p.keyId,
      value: (p, s) =>
        keyLimit(
          p.keyRecord.options.limits?.requestsPerMinute,
          s.limits?.requestsPerMinute ?? limits.requestsPerMinute,
          p.keyRecord.memberRole,
        ),
      refusal: (n) => `This API key made ${n} requests this minute, its limit`,
    },
    {
      limit: 'project_requests_per_minute',
      counter: COUNTERS.projectRequests,
      subject: (p) => p.projectId,
      value: (_p, s) => s.limits?.projectRequestsPerMinute ?? limits.projectRequestsPerMinute,
      refusal: (n) => `This project made ${n} requests this minute, its limit`,
    },
    {
      limit: 'grants_per_minute',
      counter: COUNTERS.keyGrants,
      subject: (p) => p.keyId,
      value: (p, s, r) =>
        r.kind !== 'grant'
          ? 0
          : keyLimit(
              p.keyRecord.options.limits?.grantsPerMinute,
              s.limits?.grantsPerMinute ?? limits.grantsPerMinute,
              p.keyRecord.memberRole,
            ),
      refusal: (n) => `This API key minted ${n} grant tokens this minute, its limit`,
    },
  ]

  const block = (bucket: string, kind: number, ms: number, limit: LimitName): Maybe<void> =>
    andThen(rates.peek(COUNTERS.authBlock, bucket), (open) => {
      // Never shorten a longer block already in place (a request in flight when it was set).
      if (open && open.count >= kind && open.msLeft >= ms) return undefined
      o.onAddressBlocked?.({ bucket, limit, ms })
      return rates.set(COUNTERS.authBlock, bucket, kind, ms)
    })

  const countFailure = (bucket: string): Maybe<void> => {
    const perHour = limits.authFailuresPerHour
    const perMinute = limits.authFailuresPerMinute
    return andThen(
      perHour > 0 ? rates.consume(COUNTERS.authFailuresHour, bucket, perHour - 1) : undefined,
      (hour): Maybe<void> => {
        if (hour && !hour.allowed) return block(bucket, BLOCK, limits.authBlockMs, 'auth_failures_per_hour')
        if (perMinute <= 0) return undefined
        return andThen(rates.consume(COUNTERS.authFailuresMinute, bucket, perMinute - 1), (minute) => {
          if (minute.allowed) return undefined
          // Each back-off in the hour doubles the last: 15 s, 30 s, 1 min, ... up to 15 min.
          return andThen(rates.consume(COUNTERS.authBackoffs, bucket, Number.MAX_SAFE_INTEGER), (n) => {
            const cap = Math.min(MAX_BACKOFF_MS, limits.authBlockMs)
            const ms = Math.min(cap, limits.authBackoffMs * 2 ** Math.min(30, n.count - 1))
            return block(bucket, BACKOFF, ms, 'auth_failures_per_minute')
          })
        })
      },
    )
  }

  const failuresCounted = limits.authFailuresPerMinute > 0 || limits.authFailuresPerHour > 0
  const ladder: FailureLadder = {
    hour: { ...COUNTERS.authFailuresHour, rate: limits.authFailuresPerHour },
    minute: { ...COUNTERS.authFailuresMinute, rate: limits.authFailuresPerMinute },
    backoffs: COUNTERS.authBackoffs,
    block: { name: COUNTERS.authBlock.name, backoff: BACKOFF, block: BLOCK },
    blockMs: limits.authBlockMs,
    backoffMs: limits.authBackoffMs,
    maxBackoffMs: Math.min(MAX_BACKOFF_MS, limits.authBlockMs),
  }

  /** The refusal of an address backed off or blocked after failed authentications. */
  const addressRefusal = (open: WindowCount): ApiError => {
    o.onRefused?.('auth_backoff')
    return tooManyRequests(
      open.count >= BLOCK
        ? `Too many failed authentications from this address; it is blocked, retry after ${seconds(open.msLeft)} s.`
        : `Too many failed authentications from this address; retry after ${seconds(open.msLeft)} s.`,
      open.msLeft,
    )
  }

  /**
   * With a backend that counts a request in one round trip, the address check of a credential this node has
   * cached is made in that same round trip, at admission (docs/redis.md, "Cost"): checking first would save
   * no store query, only add a round trip. An uncached credential is still checked first, so a blocked
   * address cannot make the node query the store.
   */
  const checkedAtAdmission = (request: AccessRequest) =>
    failuresCounted && rates.batched && request.credentialCached === true

  /** The address check as a guard, unless its address is allow-listed. */
  const guardOf = (request: AccessRequest): RateGuard | undefined =>
    allowed.size > 0 && allowed.has(request.ip)
      ? undefined
      : { counter: COUNTERS.authBlock, id: clientBucket(request.ip), min: BACKOFF }

  return {
    name: 'limits',
    beforeAuth(request) {
      if (!failuresCounted || checkedAtAdmission(request)) return undefined
      const bucket = clientBucket(request.ip)
      return andThen(rates.peek(COUNTERS.authBlock, bucket), (open) => {
        if (!open || open.count < BACKOFF) return
        // Checked only for a blocked address: an allow-listed one is never counted, so never blocked,
        // unless the allow-list changed since.
        if (allowed.size > 0 && allowed.has(request.ip)) return
        throw addressRefusal(open)
      })
    },
    authFailed(request) {
      if (!failuresCounted || (allowed.size > 0 && allowed.has(request.ip))) return
      try {
        const bucket = clientBucket(request.ip)
        // One round trip up the whole ladder when the backend has it; else the single calls.
        const pending = rates.ladder
          ? rates.ladder(bucket, ladder).then((set) => {
              if (!set) return
              const limit = set.count >= BLOCK ? 'auth_failures_per_hour' : 'auth_failures_per_minute'
              o.onAddressBlocked?.({ bucket, limit, ms: set.ms })
            })
          : countFailure(bucket)
        if (pending instanceof Promise) pending.catch((err: unknown) => o.onError?.(err))
      } catch (err) {
        o.onError?.(err)
      }
    },
    admit(principal, request) {
      return andThen(o.projectSettings(principal.projectId), (settings) => {
        // The rates that apply, in order, counted together: one round trip on a batched backend.
        const hits: RateHit[] = []
        const due: RateCheck[] = []
        for (const c of checks) {
          const limit = c.value(principal, settings, request)
          if (limit <= 0) continue
          hits.push({ counter: c.counter, id: c.subject(principal), limit })
          due.push(c)
        }
        const guard = checkedAtAdmission(request) ? guardOf(request) : undefined
        if (hits.length === 0 && !guard) return undefined
        return andThen(rates.consumeAll(hits, guard), (d) => {
          if (d.guarded) throw addressRefusal(d.guarded)
          if (!d.refused) return
          const c = due[d.refused.index]
          const limit = hits[d.refused.index]?.limit ?? 0
          if (!c) return
          throw refuse(principal, request, c.limit, limit, d.refused.decision, c.refusal(limit))
        })
      })
    },
  }
}
