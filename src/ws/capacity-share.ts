import type { Principal, ProjectSettings } from '../auth/index.js'
import { tooManyRequests } from '../errors.js'
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
  claim(principal: Principal): () => void
  /** Slots held now by a key (tests and diagnostics). */
  heldByKey(keyId: string): number
  /** Slots held now by a project (tests and diagnostics). */
  heldByProject(projectId: string): number
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
  const retryAfterMs = options.retryAfterMs ?? 2000
  const take = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1)
  const give = (map: Map<string, number>, id: string) => {
    const left = (map.get(id) ?? 1) - 1
    if (left > 0) map.set(id, left)
    else map.delete(id)
  }
  const full = (map: Map<string, number>, id: string, cap: number) => cap > 0 && (map.get(id) ?? 0) >= cap
  return {
    claim(principal) {
      const keyId = principal.keyId
      const credentialId = principal.grant ? `jti:${principal.grant.jti}` : `key:${keyId}`
      const endUser = endUserOf(principal)
      const endUserId = endUser === null ? null : `${principal.projectId}\n${endUser}`
      const project = options.projectLimits?.(principal.projectId)
      const perKey = keyLimit(
        principal.keyRecord.options.limits?.concurrentStreams,
        project?.concurrentStreamsPerKey ?? limits.perKey,
        principal.keyRecord.memberRole,
      )
      const perEndUser = project?.concurrentStreamsPerEndUser ?? limits.perEndUser
      const perProject = project?.concurrentStreamsPerProject ?? limits.perProject ?? 0
      const refuse = (limit: LimitName, value: number, holder: string) => {
        options.onRefused?.(principal, { limit, value, retryAfterMs })
        return tooManyRequests(
          `${holder} already holds ${value} concurrent streams, its limit; close one and try again.`,
          retryAfterMs,
        )
      }
      if (full(byCredential, credentialId, limits.perCredential)) {
        throw refuse('concurrent_streams_per_credential', limits.perCredential, 'This credential')
      }
      if (full(byKey, keyId, perKey)) throw refuse('concurrent_streams_per_key', perKey, 'This API key')
      if (endUserId !== null && full(byEndUser, endUserId, perEndUser)) {
        throw refuse('concurrent_streams_per_end_user', perEndUser, 'This end user')
      }
      if (full(byProject, principal.projectId, perProject)) {
        throw refuse('concurrent_streams_per_project', perProject, 'This project')
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
