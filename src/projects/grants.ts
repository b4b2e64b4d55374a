import type { AccessRequest } from '../access/index.js'
import { auditContext } from '../audit/index.js'
import { GRANT_MAX_TTL, type Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { LiveStreams } from '../revocation/index.js'
import { AUDIT_READ_SCOPE } from './audit.js'
import { isoDate, requireProject, requireScope, type Services } from './context.js'

/** One grant token that is still good, as the audit trail recorded its minting (never the token itself). */
export interface OutstandingGrant {
  jti: string
  keyId: string
  endUser: string | null
  /** Epoch ms. */
  issuedAt: number
  /** Epoch ms. */
  expiresAt: number
}

/** How many `grant.issued` events one listing reads at most (the newest). */
const MAX_LISTED = 1000

/**
 * The project's grant tokens that have not expired, were not revoked one by one, and whose parent key is
 * still alive, newest first: read from the audit trail's `grant.issued` and `grant.revoked` events of the
 * last `GRANT_MAX_TTL` seconds (a token never lives longer), so every node of a shared store sees the same.
 */
async function outstandingGrants(services: Services, projectId: string): Promise<OutstandingGrant[]> {
  await services.audit?.flush()
  const now = services.clock.now()
  const since = now - (GRANT_MAX_TTL + 1) * 1000
  const read = (type: string) =>
    services.store.listAuditEvents(projectId, { type, start: since, limit: MAX_LISTED })
  const [issued, revoked] = await Promise.all([read('grant.issued'), read('grant.revoked')])
  const revokedJtis = new Set(revoked.map((e) => e.detail.jti))
  const grants: OutstandingGrant[] = []
  for (const e of issued) {
    const { jti, ttl } = e.detail
    if (typeof jti !== 'string' || typeof ttl !== 'number' || e.keyId === null) continue
    // `iat` is whole seconds, at or before the event's time: the token expires no later than this.
    const expiresAt = e.at + ttl * 1000
    if (expiresAt <= now || revokedJtis.has(jti)) continue
    grants.push({ jti, keyId: e.keyId, endUser: e.endUser, issuedAt: e.at, expiresAt })
  }
  // A grant dies with its parent key (docs/revocation.md).
  const parents = new Map<string, Promise<boolean>>()
  const alive = (keyId: string) => {
    let check = parents.get(keyId)
    if (!check) {
      check = services.store
        .getKey(projectId, keyId)
        .then(
          (k) =>
            k !== undefined &&
            k.deletedAt === null &&
            k.disabledAt === null &&
            (k.expiresAt === null || k.expiresAt > now),
        )
      parents.set(keyId, check)
    }
    return check
  }
  const kept: OutstandingGrant[] = []
  for (const g of grants) if (await alive(g.keyId)) kept.push(g)
  return kept
}

/**
 * `GET /v1/projects/:id/grants` (Earmark extension, docs/live-streams.md): the grant tokens still good, with
 * the live streams each holds open on this server. `audit:read`.
 */
export async function listGrants(
  services: Services,
  principal: Principal,
  projectId: string,
  streams: LiveStreams,
) {
  requireScope(principal, AUDIT_READ_SCOPE)
  await requireProject(services, principal, projectId)
  const now = services.clock.now()
  const grants = await outstandingGrants(services, projectId)
  return {
    grants: grants.map((g) => ({
      jti: g.jti,
      api_key_id: g.keyId,
      end_user: g.endUser,
      created: isoDate(g.issuedAt),
      expiration_date: isoDate(g.expiresAt),
      expires_in: Math.max(0, Math.floor((g.expiresAt - now) / 1000)),
      streams: streams.countByJti(projectId, g.jti),
    })),
  }
}

/**
 * Revokes one grant token by `jti` (docs/live-streams.md): refused from now on (until it would have expired),
 * and the streams it opened close with 1008 `AUTH-0001` on every node the revocation bus reaches. Recorded
 * as `grant.revoked`.
 */
export function revokeGrantToken(
  services: Services,
  principal: Principal,
  grant: Pick<OutstandingGrant, 'jti' | 'keyId' | 'expiresAt'>,
  access?: AccessRequest | null,
): void {
  services.revocations?.publish({
    type: 'grant-revoked',
    projectId: principal.projectId,
    jti: grant.jti,
    expiresAt: grant.expiresAt,
  })
  services.audit?.record({
    ...auditContext(principal, access),
    type: 'grant.revoked',
    keyId: grant.keyId,
    detail: { jti: grant.jti, via: 'api' },
  })
}

/** `DELETE /v1/projects/:id/grants/:jti` (Earmark extension): `audit:read` and `keys:write`. */
export async function revokeGrant(
  services: Services,
  principal: Principal,
  projectId: string,
  jti: string,
  streams: LiveStreams,
  access?: AccessRequest | null,
) {
  requireScope(principal, AUDIT_READ_SCOPE)
  requireScope(principal, 'keys:write')
  await requireProject(services, principal, projectId)
  const grant = (await outstandingGrants(services, projectId)).find((g) => g.jti === jti)
  if (!grant) throw new ApiError('GRANT_NOT_FOUND')
  const open = streams.countByJti(projectId, jti)
  revokeGrantToken(services, principal, grant, access)
  return { message: 'Grant token revoked.', jti, streams_closed: open }
}
