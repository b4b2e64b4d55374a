import type { AccessRequest, AccessStage } from '../access/index.js'
import type { AuditLog } from '../audit/index.js'
import type { Clock, Principal, RefusalReason, RefusedCredential } from '../auth/index.js'
import type { ApiError } from '../errors.js'
import type { RevocationBus } from '../revocation/index.js'
import type { Store } from '../store/index.js'
import { type ActivityWindows, createMemoryWindows, type MaybePromise } from './activity-windows.js'
import { effectivePolicy, type SuspiciousPolicy } from './suspicious-settings.js'

/** The rules, by the name their audit events carry (`suspicious.<rule>`). */
export type SuspiciousRule =
  | 'distinct_ips'
  | 'distinct_user_agents'
  | 'grant_burst'
  | 'auth_failures'
  | 'new_origin'

/**
 * What a finding is about: a key presented itself (`key`), one grant token (`token`), one end user of the
 * project (`end_user`). Only key-level findings may disable a key (docs/suspicious-activity.md).
 */
export type FindingScope = 'key' | 'token' | 'end_user'

/** One rule that fired, as its audit event records it. */
export interface Finding {
  rule: SuspiciousRule
  scope: FindingScope
  projectId: string
  /** The key concerned: the key itself, or the key that minted the token or paid for the end user. */
  keyId: string
  endUser?: string
  jti?: string
  windowSeconds: number
  threshold: number
  observed: number
  /** The value that tipped it over (an address, a user agent, an origin); never a secret. */
  value?: string
  /** Whether the policy may disable the key for this finding. */
  disables: boolean
}

export interface SuspiciousActivityOptions {
  store: Store
  clock: Clock
  /** Where findings and automatic disables are recorded. */
  audit?: AuditLog
  /** Where an automatic disable is announced, so the key's live streams close (docs/revocation.md). */
  revocations?: RevocationBus
  /** The server's policy (`EARMARK_SUSPICIOUS_*`); a project's settings override it field by field. */
  policy: SuspiciousPolicy
  /** The windows to count in; default in this process's memory. */
  windows?: ActivityWindows
  /** Origins remembered per key for the new-origin rule (default 64). */
  maxOriginsPerKey?: number
  /** A failed store read or write (never rethrown: detection never fails a request). */
  onError?: (err: unknown) => void
}

/** The suspicious-activity detector: an access stage plus the authenticator's refusal callback. */
export interface SuspiciousActivity {
  /** Watches every admitted request and every refused one; never refuses anything itself. */
  readonly stage: AccessStage
  /** For `AuthenticatorOptions.onRefused`: ties a refused, recognised credential to its key. */
  onRefused(reason: RefusalReason, credential: RefusedCredential, error: ApiError): void
  /** Resolves once every evaluation started so far has finished (its audit events recorded, its disable written). */
  idle(): Promise<void>
}

/** One observation: the policy in force, the request, and when. */
interface Seen {
  policy: SuspiciousPolicy
  access: AccessRequest
  now: number
}

/** Who a finding is about, before the rule adds what it saw. */
type Subject = Pick<Finding, 'scope' | 'projectId' | 'keyId' | 'endUser' | 'jti'>

/** The windows' name for a rule's subject: the key, the token's jti, or the project's end user. */
function subjectKey(rule: string, s: Subject): string {
  const id = s.scope === 'key' ? s.keyId : s.scope === 'token' ? s.jti : s.endUser
  return `${rule}|${s.scope}|${s.projectId}|${id}`
}

/** A credential's repeated requests (same address and user agent) are observed in full once in this many. */
const REFRESH_EVERY = 64

/** The longest client-chosen text (a user agent, an origin) kept in an audit event. */
const MAX_VALUE = 256

function clip(value: string): string {
  return value.length > MAX_VALUE ? `${value.slice(0, MAX_VALUE)}…` : value
}

function isPromise<T>(value: MaybePromise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

/** Applies `f` to a value that may be a promise, staying synchronous when it is not. */
function then<T, U>(value: MaybePromise<T>, f: (v: T) => MaybePromise<U>): MaybePromise<U> {
  return isPromise(value) ? value.then(f) : f(value)
}

/** A refusal of a recognised credential, remembered until the access gate tells which request it was. */
interface Attribution {
  reason: RefusalReason
  credential: RefusedCredential
}

/**
 * Builds the detector (docs/suspicious-activity.md). Every admitted request is noted against its
 * credential (the key presented itself, or the grant token's `jti`) and its end user: distinct addresses
 * and user agents, grant requests per key, the origins of live streams. Refusals tied to a key are
 * counted per key. A rule over its threshold records `suspicious.<rule>` at most once per subject per
 * window and, when the policy says so and the finding is about the key itself, disables the key.
 */
export function createSuspiciousActivity(options: SuspiciousActivityOptions): SuspiciousActivity {
  const { store, clock } = options
  const windows = options.windows ?? createMemoryWindows()
  const maxOrigins = options.maxOriginsPerKey ?? 64
  const onError = (err: unknown) => options.onError?.(err)
  const pending = new Set<Promise<unknown>>()
  const attributions = new WeakMap<ApiError, Attribution>()

  /** Keeps a promise until it settles, so `idle()` can wait for it; failures go to `onError`. */
  const track = (work: MaybePromise<unknown>) => {
    if (!isPromise(work)) return
    const p = work.catch(onError).finally(() => pending.delete(p))
    pending.add(p)
  }

  // The policy of each project, read again whenever the store's credentials version moves (a settings
  // write is a credentials write), so a threshold changed through the API applies to the next request.
  // None for a project that does not exist: a forged token may name any ids, and counting them would let a
  // stranger fill the windows (in Redis, keys that live for two windows) with subjects no key can match.
  const policies = new Map<string, { version: number; policy: SuspiciousPolicy | undefined }>()
  const policyOf = (projectId: string): MaybePromise<SuspiciousPolicy | undefined> => {
    const version = store.credentialsVersion()
    const hit = policies.get(projectId)
    if (hit && hit.version === version) return hit.policy
    return store.getProject(projectId).then((project) => {
      const policy = project
        ? effectivePolicy(options.policy, project.settings.suspiciousActivity)
        : undefined
      if (policies.size >= 10_000) policies.clear()
      policies.set(projectId, { version, policy })
      return policy
    })
  }

  /** Disables the key of a finding that may, once; records `key.disabled` and closes its streams. */
  const disable = async (finding: Finding, access: AccessRequest | undefined) => {
    const { projectId, keyId } = finding
    const reason = `suspicious.${finding.rule}`
    // A key disabled meanwhile (by an operator, or another finding) keeps its first reason.
    const key = await store.getKey(projectId, keyId)
    if (!key || key.deletedAt !== null || key.disabledAt !== null) return
    if (!(await store.setKeyDisabled(projectId, keyId, clock.now(), reason))) return
    options.revocations?.publish({ type: 'key-revoked', projectId, keyId, reason: 'disabled' })
    options.audit?.record({
      projectId,
      type: 'key.disabled',
      keyId,
      ip: access?.ip ?? null,
      requestId: access?.requestId ?? null,
      detail: { reason, via: 'suspicious' },
    })
  }

  /** Records a finding (at most once per subject and rule per window) and applies the policy. */
  const report = (
    /** The rule's subject (the windows' name for it): what the once-per-window claim is about. */
    subject: string,
    /** Whether the finding may disable the key (the policy decides whether it does). */
    mayDisable: boolean,
    windowSeconds: number,
    policy: SuspiciousPolicy,
    access: AccessRequest | undefined,
    /** The finding, built only when it is recorded or acted on: a flood past a threshold costs a claim. */
    build: () => Finding,
  ): MaybePromise<void> => {
    const disables = mayDisable && policy.autoDisable
    const windowMs = windowSeconds * 1000
    return then(windows.claim(subject, clock.now(), windowMs), (first) => {
      if (!first && !disables) return
      const finding = build()
      if (first) recordFinding(finding, access, disables)
      if (!disables) return
      // Claimed apart from the event: a report that could not disable (unverified failures) must not keep
      // a later one that can from doing so. Once per window: a key an operator enabled again stays enabled
      // for the rest of it.
      const disableSubject = `disable|${finding.projectId}|${finding.keyId}`
      return then(windows.claim(disableSubject, clock.now(), windowMs), (firstDisable) =>
        firstDisable ? disable(finding, access) : undefined,
      )
    })
  }

  /** The audit event of a finding. */
  const recordFinding = (finding: Finding, access: AccessRequest | undefined, disables: boolean) => {
    options.audit?.record({
      projectId: finding.projectId,
      type: `suspicious.${finding.rule}`,
      keyId: finding.keyId,
      endUser: finding.endUser ?? null,
      ip: access?.ip ?? null,
      requestId: access?.requestId ?? null,
      detail: {
        rule: finding.rule,
        scope: finding.scope,
        window_seconds: finding.windowSeconds,
        threshold: finding.threshold,
        observed: finding.observed,
        ...(finding.value !== undefined ? { value: clip(finding.value) } : {}),
        ...(finding.jti !== undefined ? { jti: finding.jti } : {}),
        auto_disable: disables,
      },
    })
  }

  /** Counts a distinct value for a subject; reports when it passes the threshold. */
  const distinctRule = (
    rule: 'distinct_ips' | 'distinct_user_agents',
    base: Subject,
    subject: string,
    value: string,
    threshold: number,
    seen: Seen,
  ): void => {
    if (threshold <= 0) return
    const { policy, access, now } = seen
    const observed = windows.distinct(subject, value, now, policy.windowSeconds * 1000, threshold + 1)
    const over = (count: number) =>
      count <= threshold
        ? undefined
        : report(subject, base.scope === 'key', policy.windowSeconds, policy, access, () => ({
            ...base,
            rule,
            windowSeconds: policy.windowSeconds,
            threshold,
            observed: count,
            value,
            disables: base.scope === 'key',
          }))
    if (isPromise(observed)) track(observed.then(over))
    else if (observed > threshold) track(over(observed))
  }

  // What each principal is counted as, worked out once: the authenticator hands the same principal object
  // to every request of a credential it has seen, and building these strings per request was most of the
  // stage's cost.
  interface Plan {
    credential: Subject
    endUser: Subject | undefined
    ipsOfCredential: string
    agentsOfCredential: string
    ipsOfEndUser: string
    agentsOfEndUser: string
    grants: string
    /** The address and user agent of the last request observed in full, and the repeats skipped since. */
    lastIp: string | undefined
    lastAgent: string | undefined
    repeats: number
  }
  const plans = new WeakMap<Principal, Plan>()
  const planOf = (principal: Principal): Plan => {
    let plan = plans.get(principal)
    if (plan) return plan
    const { projectId, keyId, grant } = principal
    const user = grant?.endUser
    const credential: Subject =
      grant === undefined
        ? { scope: 'key', projectId, keyId }
        : {
            scope: 'token',
            projectId,
            keyId,
            jti: grant.jti,
            ...(user !== undefined ? { endUser: user } : {}),
          }
    const endUser: Subject | undefined =
      grant === undefined || user === undefined
        ? undefined
        : { scope: 'end_user', projectId, keyId, endUser: user, jti: grant.jti }
    plan = {
      credential,
      endUser,
      ipsOfCredential: subjectKey('distinct_ips', credential),
      agentsOfCredential: subjectKey('distinct_user_agents', credential),
      ipsOfEndUser: endUser ? subjectKey('distinct_ips', endUser) : '',
      agentsOfEndUser: endUser ? subjectKey('distinct_user_agents', endUser) : '',
      grants: `grant_burst|${projectId}|${keyId}`,
      lastIp: undefined,
      lastAgent: undefined,
      repeats: 0,
    }
    plans.set(principal, plan)
    return plan
  }

  /** Everything an admitted request tells the rules, under `policy`. */
  const observe = (
    principal: Principal,
    plan: Plan,
    access: AccessRequest,
    policy: SuspiciousPolicy,
    /** False for a repeat of the last address and user agent: only the grant count moves. */
    distinct: boolean,
  ) => {
    const { credential, endUser } = plan
    const { ip, userAgent } = access
    const now = clock.now()
    const seen: Seen = { policy, access, now }
    if (distinct && ip) {
      distinctRule('distinct_ips', credential, plan.ipsOfCredential, ip, policy.maxIpsPerCredential, seen)
      if (endUser) {
        distinctRule('distinct_ips', endUser, plan.ipsOfEndUser, ip, policy.maxIpsPerEndUser, seen)
      }
    }
    if (distinct && userAgent) {
      const ua = clip(userAgent)
      const { maxUserAgentsPerCredential: perCredential, maxUserAgentsPerEndUser: perUser } = policy
      distinctRule('distinct_user_agents', credential, plan.agentsOfCredential, ua, perCredential, seen)
      if (endUser) {
        distinctRule('distinct_user_agents', endUser, plan.agentsOfEndUser, ua, perUser, seen)
      }
    }
    if (access.kind === 'grant' && policy.maxGrantsPerKey > 0) {
      const { projectId, keyId } = principal
      const windowMs = policy.grantWindowSeconds * 1000
      track(
        then(windows.count(plan.grants, now, windowMs), (observed) => {
          if (observed <= policy.maxGrantsPerKey) return
          return report(plan.grants, true, policy.grantWindowSeconds, policy, access, () => ({
            rule: 'grant_burst',
            scope: 'key',
            projectId,
            keyId,
            windowSeconds: policy.grantWindowSeconds,
            threshold: policy.maxGrantsPerKey,
            observed,
            disables: true,
          }))
        }),
      )
    }
    if (access.transport === 'ws' && access.kind === 'usage' && access.origin && policy.newOrigin) {
      track(newOrigin(principal, access, access.origin, policy))
    }
  }

  /**
   * A live stream from an origin the key's streams never came from. The first origin a key is seen with
   * (since this process started) is its baseline, learnt silently; a new one is learnt only once it is
   * reported, so one that appears again after the report window is reported again.
   */
  const newOrigin = (
    principal: Principal,
    access: AccessRequest,
    origin: string,
    policy: SuspiciousPolicy,
  ): MaybePromise<void> => {
    const { projectId, keyId } = principal
    const subject = `origins|${projectId}|${keyId}`
    return then(windows.seen(subject, origin), (seen) => {
      if (seen === 'known') return
      if (seen === 'first') return windows.learn(subject, origin, maxOrigins)
      const claimSubject = `new_origin|key|${projectId}|${keyId}`
      return then(windows.claim(claimSubject, clock.now(), policy.windowSeconds * 1000), (first) => {
        if (!first) return
        options.audit?.record({
          projectId,
          type: 'suspicious.new_origin',
          keyId,
          endUser: principal.grant?.endUser ?? null,
          ip: access.ip,
          requestId: access.requestId,
          detail: {
            rule: 'new_origin',
            scope: 'key',
            window_seconds: policy.windowSeconds,
            value: clip(origin),
            ...(principal.grant ? { jti: principal.grant.jti } : {}),
            auto_disable: false,
          },
        })
        return windows.learn(subject, origin, maxOrigins)
      })
    })
  }

  /**
   * A refusal tied to a key. Counted per key; the finding may disable the key only when the refusals
   * whose credential verified (the key's own secret, a token whose signature held) are over the threshold
   * on their own: ids read from an unverified token can be written by anyone, and must never let a
   * stranger disable someone's key.
   */
  const failure = (attribution: { reason: string; credential: RefusedCredential }, access: AccessRequest) => {
    const { credential } = attribution
    const { projectId, keyId } = credential
    const work = then(policyOf(projectId), (policy) => {
      const threshold = policy?.maxAuthFailuresPerKey ?? 0
      if (!policy || threshold <= 0) return
      const windowMs = policy.windowSeconds * 1000
      const now = clock.now()
      const subject = `auth_failures|key|${projectId}|${keyId}`
      const all = windows.count(subject, now, windowMs)
      const verified = credential.verified
        ? windows.count(`auth_failures_verified|${projectId}|${keyId}`, now, windowMs)
        : 0
      return then(all, (observed) =>
        then(verified, (verifiedCount) => {
          if (observed <= threshold) return
          const mayDisable = verifiedCount > threshold
          return report(subject, mayDisable, policy.windowSeconds, policy, access, () => ({
            rule: 'auth_failures',
            scope: 'key',
            projectId,
            keyId,
            ...(credential.endUser !== undefined ? { endUser: credential.endUser } : {}),
            ...(credential.jti !== undefined ? { jti: credential.jti } : {}),
            windowSeconds: policy.windowSeconds,
            threshold,
            observed,
            value: attribution.reason,
            disables: mayDisable,
          }))
        }),
      )
    })
    track(work)
  }

  const stage: AccessStage = {
    name: 'suspicious-activity',
    admit(principal, access) {
      // A credential's requests mostly repeat its last address and user agent, which changes no count: they
      // are skipped, all but every REFRESH_EVERY-th, which keeps the values' last-seen times fresh (a value
      // that outlives the window between two refreshes is counted again on the next one). Grants and
      // upgrades are always counted. This keeps the stage's cost on a repeated request to a lookup and two
      // compares (docs/suspicious-activity.md, "Cost").
      const plan = planOf(principal)
      const repeat =
        access.transport === 'http' &&
        access.ip === plan.lastIp &&
        access.userAgent === plan.lastAgent &&
        ++plan.repeats < REFRESH_EVERY
      if (repeat && access.kind !== 'grant') return
      if (!repeat) {
        plan.lastIp = access.ip
        plan.lastAgent = access.userAgent
        plan.repeats = 0
      }
      // Never holds the request: a project's policy not yet read is read in the background.
      const policy = policyOf(principal.projectId)
      if (isPromise(policy)) track(policy.then((p) => p && observe(principal, plan, access, p, !repeat)))
      else if (policy) observe(principal, plan, access, policy, !repeat)
    },
    authFailed(access, error) {
      const attribution = attributions.get(error)
      if (attribution) failure(attribution, access)
    },
    refused(principal, access, error) {
      // A binding, use-count or scope refusal of a credential that authenticated: proof its secret is in
      // hands the key's owner did not mean it for. Limits and quotas (429) are not failures.
      if (error.status !== 401 && error.status !== 403) return
      failure(
        {
          reason: error.code,
          credential: {
            projectId: principal.projectId,
            keyId: principal.keyId,
            verified: true,
            ...(principal.grant ? { jti: principal.grant.jti } : {}),
            ...(principal.grant?.endUser !== undefined ? { endUser: principal.grant.endUser } : {}),
          },
        },
        access,
      )
    },
  }

  return {
    stage,
    onRefused(reason, credential, error) {
      attributions.set(error, { reason, credential })
    },
    async idle() {
      while (pending.size > 0) await Promise.allSettled([...pending])
    },
  }
}
