import type { Principal, ProjectSettings } from '../auth/index.js'
import { type ApiError, tooManyRequests } from '../errors.js'
import { keyLimit, type LimitName } from '../limits/index.js'
import { endUserOf } from '../projects/index.js'

/** How many speech slots one credential may hold at once; 0 means no cap. The server's defaults. */
export interface CapacityShareLimits {
  /**
   * Per credential: the API key itself when it is presented, or one grant token (by its `jti`). This is
   * the default guard: one leaked credential cannot take every slot.
   */
  perCredential: number
  /**
   * Per API key, its grant tokens included. Off by default: an app that mints every browser's token from
   * one server key (docs/app-kit.md, pattern 2) would otherwise be held to a share of its own server.
   */
  perKey: number
  /** Per end user (a grant's `end_user` claim, or its key's `end_user:` tag), within a project. */
  perEndUser: number
  /** Per project, every key together; default 0 (the engine's capacity is the only bound). */
  perProject?: number
}

/** Where the per-project and per-key caps come from, and who is told of a refusal (docs/limits.md). */
export interface CapacityShareOptions {
  /**
   * A project's limits as last read, synchronously (the limits stage read them when it admitted the same
   * request): `concurrentStreamsPerKey`, `…PerEndUser`, `…PerProject` override the server's caps. A key's
   * own `limits.concurrentStreams` overrides both for that key (only an owner's key may loosen them).
   */
  projectLimits?(projectId: string): ProjectSettings['limits'] | undefined
  /** Told of every refusal (the limits' throttled audit). */
  onRefused?(principal: Principal, refusal: { limit: LimitName; value: number; retryAfterMs: number }): void
  /** The `Retry-After` of a refusal, ms (default 2000): a slot frees when some stream ends, not on a clock. */
  retryAfterMs?: number
}

/**
 * The per-credential share of the speech slots: `claim` counts a stream against its credential, key, end
 * user and project, or refuses it with 429 (with `Retry-After`) before anything is claimed; the returned
 * function gives the share back (once).
 */
export interface CapacityShare {
  /**
   * Synchronous in memory; a shared backend (Redis, docs/redis.md) answers asynchronously, so callers
   * `await` it. Throws (or rejects with) the 429 when a cap is reached.
   */
  claim(principal: Principal): (() => void) | Promise<() => void>
  /** Slots held now by a key (tests and diagnostics; a shared backend counts this node's only). */
  heldByKey(keyId: string): number
  /** Slots held now by a project (tests and diagnostics; a shared backend counts this node's only). */
  heldByProject(projectId: string): number
}

/** Who one claim counts against, and the caps that apply to it (shared by every backend of the share). */
export interface ShareSubject {
  /** `key:<id>` for a key presented itself, `jti:<jti>` for a grant token. */
  credentialId: string
  keyId: string
  projectId: string
  /** `<project id>\n<end user>`, or null when the credential names no end user. */
  endUserId: string | null
  perCredential: number
  perKey: number
  perEndUser: number
  perProject: number
}

/** The limit a full holder of `subject` refuses under, in the order the caps are checked. */
export type ShareHolder = 'credential' | 'key' | 'endUser' | 'project'

/** Works out whom `principal` counts against and its caps: a key's, then a project's, then the server's. */
export function shareSubject(
  principal: Principal,
  limits: CapacityShareLimits,
  options: CapacityShareOptions,
): ShareSubject {
  const keyId = principal.keyId
  const endUser = endUserOf(principal)
  const project = options.projectLimits?.(principal.projectId)
  return {
    credentialId: principal.grant ? `jti:${principal.grant.jti}` : `key:${keyId}`,
    keyId,
    projectId: principal.projectId,
    endUserId: endUser === null ? null : `${principal.projectId}\n${endUser}`,
    perCredential: limits.perCredential,
    perKey: keyLimit(
      principal.keyRecord.options.limits?.concurrentStreams,
      project?.concurrentStreamsPerKey ?? limits.perKey,
      principal.keyRecord.memberRole,
    ),
    perEndUser: project?.concurrentStreamsPerEndUser ?? limits.perEndUser,
    perProject: project?.concurrentStreamsPerProject ?? limits.perProject ?? 0,
  }
}

const HOLDERS = {
  credential: ['concurrent_streams_per_credential', 'perCredential', 'This credential'],
  key: ['concurrent_streams_per_key', 'perKey', 'This API key'],
  endUser: ['concurrent_streams_per_end_user', 'perEndUser', 'This end user'],
  project: ['concurrent_streams_per_project', 'perProject', 'This project'],
} as const satisfies Record<ShareHolder, [LimitName, keyof ShareSubject, string]>

/** The 429 refusing `subject` because `holder` is full; tells `options.onRefused` first. */
export function shareRefusal(
  principal: Principal,
  subject: ShareSubject,
  holder: ShareHolder,
  options: CapacityShareOptions,
): ApiError {
  const [limit, field, words] = HOLDERS[holder]
  const value = subject[field] as number
  const retryAfterMs = options.retryAfterMs ?? 2000
  options.onRefused?.(principal, { limit, value, retryAfterMs })
  return tooManyRequests(
    `${words} already holds ${value} concurrent streams, its limit; close one and try again.`,
    retryAfterMs,
  )
}

/** The default share: half the slots, rounded up, so one leaked credential cannot take all of them. */
export function defaultShare(capacity: number): number {
  return Math.max(1, Math.ceil(capacity / 2))
}

export function createCapacityShare(
  limits: CapacityShareLimits,
  options: CapacityShareOptions = {},
): CapacityShare {
  const byCredential = new Map<string, number>()
  const byKey = new Map<string, number>()
  const byEndUser = new Map<string, number>()
  const byProject = new Map<string, number>()
  const take = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1)
  const give = (map: Map<string, number>, id: string) => {
    const left = (map.get(id) ?? 1) - 1
    if (left > 0) map.set(id, left)
    else map.delete(id)
  }
  const full = (map: Map<string, number>, id: string, cap: number) => cap > 0 && (map.get(id) ?? 0) >= cap
  return {
    claim(principal) {
      const subject = shareSubject(principal, limits, options)
      const { credentialId, keyId, endUserId } = subject
      if (full(byCredential, credentialId, subject.perCredential)) {
        throw shareRefusal(principal, subject, 'credential', options)
      }
      if (full(byKey, keyId, subject.perKey)) throw shareRefusal(principal, subject, 'key', options)
      if (endUserId !== null && full(byEndUser, endUserId, subject.perEndUser)) {
        throw shareRefusal(principal, subject, 'endUser', options)
      }
      if (full(byProject, principal.projectId, subject.perProject)) {
        throw shareRefusal(principal, subject, 'project', options)
      }
      take(byCredential, credentialId)
      take(byKey, keyId)
      take(byProject, principal.projectId)
      if (endUserId !== null) take(byEndUser, endUserId)
      let released = false
      return () => {
        if (released) return
        released = true
        give(byCredential, credentialId)
        give(byKey, keyId)
        give(byProject, principal.projectId)
        if (endUserId !== null) give(byEndUser, endUserId)
      }
    },
    heldByKey: (keyId) => byKey.get(keyId) ?? 0,
    heldByProject: (projectId) => byProject.get(projectId) ?? 0,
  }
}
