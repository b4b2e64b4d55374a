import type { AccessStage } from '../access/index.js'
import type { Clock } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { RevocationBus } from './revocation-bus.js'

/**
 * Grant tokens revoked one by one (`DELETE /v1/projects/:id/grants/:jti`, docs/live-streams.md), refused
 * until their own expiry. Filled from the revocation bus, so with Redis every node hears of each revocation;
 * a token is short-lived (an hour at most), so an entry is forgotten once its token has expired anyway.
 */
export interface GrantDenylist {
  /** True while `jti` is revoked and its token has not yet expired. */
  has(jti: string): boolean
  /** The access stage that refuses a revoked token with 401 `INVALID_AUTH`. */
  readonly stage: AccessStage
  /** Stops listening to the bus. */
  close(): void
}

export interface GrantDenylistOptions {
  bus: RevocationBus
  clock: Clock
}

export function createGrantDenylist({ bus, clock }: GrantDenylistOptions): GrantDenylist {
  /** Revoked jtis and their token's expiry, epoch ms. */
  const revoked = new Map<string, number>()
  const prune = () => {
    const now = clock.now()
    for (const [jti, expiresAt] of revoked) if (expiresAt <= now) revoked.delete(jti)
  }
  const unsubscribe = bus.subscribe((e) => {
    if (e.type !== 'grant-revoked') return
    prune()
    revoked.set(e.jti, e.expiresAt)
  })
  const has = (jti: string) => {
    const expiresAt = revoked.get(jti)
    return expiresAt !== undefined && expiresAt > clock.now()
  }
  return {
    has,
    stage: {
      name: 'grant-denylist',
      admit(principal) {
        // A map lookup only while some token is revoked: nothing on the hot path otherwise.
        if (revoked.size > 0 && principal.grant && has(principal.grant.jti))
          throw new ApiError('INVALID_AUTH')
      },
    },
    close: unsubscribe,
  }
}
