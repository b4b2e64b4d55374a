import type { Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import { endUserOf } from '../projects/index.js'

/** How many speech slots one credential may hold at once; 0 means no cap. */
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
}

/**
 * The per-credential share of the speech slots: `claim` counts a stream against its key and end user, or
 * refuses it with 429 before anything else is claimed; the returned function gives the share back (once).
 */
export interface CapacityShare {
  claim(principal: Principal): () => void
  /** Slots held now by a key (tests and diagnostics). */
  heldByKey(keyId: string): number
}

/** The default share: half the slots, rounded up, so one leaked credential cannot take all of them. */
export function defaultShare(capacity: number): number {
  return Math.max(1, Math.ceil(capacity / 2))
}

export function createCapacityShare(limits: CapacityShareLimits): CapacityShare {
  const byCredential = new Map<string, number>()
  const byKey = new Map<string, number>()
  const byEndUser = new Map<string, number>()
  const take = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1)
  const give = (map: Map<string, number>, id: string) => {
    const left = (map.get(id) ?? 1) - 1
    if (left > 0) map.set(id, left)
    else map.delete(id)
  }
  return {
    claim(principal) {
      const keyId = principal.keyId
      const credentialId = principal.grant ? `jti:${principal.grant.jti}` : `key:${keyId}`
      const endUser = endUserOf(principal)
      const endUserId = endUser === null ? null : `${principal.projectId}\n${endUser}`
      if (limits.perCredential > 0 && (byCredential.get(credentialId) ?? 0) >= limits.perCredential) {
        throw new ApiError(
          'TOO_MANY_REQUESTS',
          `This credential already holds ${limits.perCredential} concurrent streams, its limit; close one and try again.`,
        )
      }
      if (limits.perKey > 0 && (byKey.get(keyId) ?? 0) >= limits.perKey) {
        throw new ApiError(
          'TOO_MANY_REQUESTS',
          `This API key already holds ${limits.perKey} concurrent streams, its limit; close one and try again.`,
        )
      }
      if (
        endUserId !== null &&
        limits.perEndUser > 0 &&
        (byEndUser.get(endUserId) ?? 0) >= limits.perEndUser
      ) {
        throw new ApiError(
          'TOO_MANY_REQUESTS',
          `This end user already holds ${limits.perEndUser} concurrent streams, its limit; close one and try again.`,
        )
      }
      take(byCredential, credentialId)
      take(byKey, keyId)
      if (endUserId !== null) take(byEndUser, endUserId)
      let released = false
      return () => {
        if (released) return
        released = true
        give(byCredential, credentialId)
        give(byKey, keyId)
        if (endUserId !== null) give(byEndUser, endUserId)
      }
    },
    heldByKey: (keyId) => byKey.get(keyId) ?? 0,
  }
}
