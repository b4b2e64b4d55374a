import type { AccessRequest } from '../access/index.js'
import {
  GRANT_DEFAULT_TTL,
  GRANT_MAX_TTL,
  type GrantOptions,
  type Principal,
  roleAtLeast,
} from '../auth/index.js'
import { ApiError, invalidField } from '../errors.js'
import { isoDate, type Services } from './context.js'
import {
  bindingView,
  checkOptionsSize,
  isEmptyOptions,
  keyOptionsView,
  narrowGrantOptions,
  parseGrantOptions,
} from './credential-options.js'

/** The token's effective options: what the body asks for, within the key's binding; undefined for none. */
function grantOptions(principal: Principal, body: Record<string, unknown>): GrantOptions | undefined {
  const asked = parseGrantOptions(body)
  const keyOptions = principal.keyRecord.options
  // The common case, a Deepgram-shaped body and a key without a binding, costs nothing more.
  if (isEmptyOptions(asked) && isEmptyOptions(keyOptions)) return undefined
  const options = narrowGrantOptions(keyOptions, asked)
  // Each side fits on its own; what the token inherits plus what it adds must fit too.
  checkOptionsSize(options)
  return isEmptyOptions(options) ? undefined : options
}

/**
 * `POST /v1/auth/grant` (docs/deepgram-compat.md §2): a short-lived `usage:write` JWT for a member-or-higher
 * key, with Earmark's optional binding and use count (docs/credential-options.md). Synchronous: the grant
 * route is hot.
 */
export function grantToken(
  services: Services,
  principal: Principal,
  body: Record<string, unknown>,
  access?: AccessRequest | null,
) {
  if (principal.scheme !== 'token') throw new ApiError('FORBIDDEN', 'A grant token cannot mint another.')
  if (!roleAtLeast(principal.role, 'member')) {
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
  const options = grantOptions(principal, body)
  const { token, claims } = services.grants.mint({
    projectId: principal.projectId,
    accessor: principal.keyId,
    ttlSeconds: ttl,
    notAfterMs: principal.expiresAt,
    ...(endUser !== undefined ? { endUser } : {}),
    ...(options ? { options } : {}),
  })
  // Who minted what for whom: by jti, never the token (docs/audit.md). Object literals, no spreads: this
  // runs on every grant.
  const detail: Record<string, unknown> = {
    jti: claims.jti,
    end_user: endUser ?? null,
    ttl: claims.exp - claims.iat,
  }
  if (options) detail.options = bindingView(options)
  services.audit?.record({
    projectId: principal.projectId,
    type: 'grant.issued',
    actorKeyId: principal.keyId,
    keyId: principal.keyId,
    endUser: endUser ?? null,
    ip: access?.ip ?? null,
    requestId: access?.requestId ?? null,
    detail,
  })
  return {
    access_token: token,
    expires_in: Math.max(0, claims.exp - Math.floor(services.clock.now() / 1000)),
  }
}

/** Whole seconds a credential has left at `now` (epoch ms), or null when it never expires. */
export function secondsLeft(principal: Principal, now: number): number | null {
  const { expiresAt } = principal
  return expiresAt === null ? null : Math.max(0, Math.floor((expiresAt - now) / 1000))
}

/**
 * `GET /v1/auth/token` as of `now` (epoch ms): what the calling credential is and may do. Never echoes the
 * secret. Object literals on purpose: an object built with spreads is a slow-mode object that serialises
 * about twice as slowly.
 */
export function tokenDetails(principal: Principal, now: number) {
  const { grant, key, expiresAt } = principal
  const expirationDate = expiresAt === null ? null : isoDate(expiresAt)
  const created = grant ? isoDate(grant.iat * 1000) : key ? isoDate(key.createdAt) : null
  const expiresIn = secondsLeft(principal, now)
  if (grant) {
    const details = {
      type: 'access_token',
      project_id: principal.projectId,
      accessor: principal.keyId,
      member_id: principal.memberId,
      expiration_date: expirationDate,
      expires_in: expiresIn,
      scopes: grant.scopes,
      jti: grant.jti,
      created,
      end_user: grant.endUser,
    }
    // Earmark's options, only when the token carries some (docs/credential-options.md).
    return grant.options ? { ...details, ...bindingView(grant.options) } : details
  }
  // Scopes as granted (roles unexpanded), like Deepgram's key objects.
  const details = {
    type: 'api_key',
    project_id: principal.projectId,
    accessor: principal.keyId,
    member_id: principal.memberId,
    expiration_date: expirationDate,
    expires_in: expiresIn,
    api_key_id: principal.keyId,
    comment: key?.comment ?? '',
    scopes: key?.scopes ?? [],
    tags: key?.tags ?? [],
    created,
  }
  const binding = key && !isEmptyOptions(key.options) ? keyOptionsView(key.options) : undefined
  return binding ? { ...details, ...binding } : details
}
