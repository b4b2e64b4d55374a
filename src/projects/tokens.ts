import { GRANT_DEFAULT_TTL, GRANT_MAX_TTL, type Principal, roleAtLeast, roleOf } from '../auth/index.js'
import { ApiError, invalidField } from '../errors.js'
import { isoDate, type Services } from './context.js'

/** `POST /v1/auth/grant` (deepgram-api.md §2): a short-lived `usage:write` JWT for a member-or-higher key. */
export async function grantToken(services: Services, principal: Principal, body: Record<string, unknown>) {
  if (principal.scheme !== 'token') throw new ApiError('FORBIDDEN', 'A grant token cannot mint another.')
  if (!roleAtLeast(roleOf(principal.scopes), 'member')) {
    throw new ApiError(
      'FORBIDDEN',
      'Insufficient permissions: granting needs a key with the member role or higher.',
    )
  }
  const ttl = body.ttl_seconds ?? GRANT_DEFAULT_TTL
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > GRANT_MAX_TTL) {
    throw invalidField('ttl_seconds', `must be an integer from 1 to ${GRANT_MAX_TTL}`)
  }
  // Earmark's extension: the app's end user the token is for, carried as a claim into usage records.
  const endUser = body.end_user ?? undefined
  if (
    endUser !== undefined &&
    (typeof endUser !== 'string' || endUser.length === 0 || endUser.length > 128)
  ) {
    throw invalidField('end_user', 'must be a string of 1 to 128 characters')
  }
  const { token, claims } = await services.grants.mint({
    projectId: principal.projectId,
    accessor: principal.keyId,
    ttlSeconds: ttl,
    notAfterMs: principal.expiresAt,
    ...(endUser !== undefined ? { endUser } : {}),
  })
  return {
    access_token: token,
    expires_in: Math.max(0, claims.exp - Math.floor(services.clock.now() / 1000)),
  }
}

/** `GET /v1/auth/token`: what the calling credential is and may do. Never echoes the secret. */
export function tokenDetails(services: Services, principal: Principal) {
  const now = services.clock.now()
  const common = {
    project_id: principal.projectId,
    accessor: principal.keyId,
    member_id: principal.memberId,
    expiration_date: principal.expiresAt === null ? null : isoDate(principal.expiresAt),
    expires_in:
      principal.expiresAt === null ? null : Math.max(0, Math.floor((principal.expiresAt - now) / 1000)),
  }
  if (principal.grant) {
    return {
      type: 'access_token',
      ...common,
      scopes: principal.grant.scopes,
      jti: principal.grant.jti,
      created: isoDate(principal.grant.iat * 1000),
      ...(principal.grant.endUser !== undefined ? { end_user: principal.grant.endUser } : {}),
    }
  }
  // Scopes as granted (roles unexpanded), like Deepgram's key objects.
  return {
    type: 'api_key',
    ...common,
    api_key_id: principal.keyId,
    comment: principal.key?.comment ?? '',
    scopes: principal.key?.scopes ?? [],
    tags: principal.key?.tags ?? [],
    created: principal.key ? isoDate(principal.key.createdAt) : null,
  }
}
