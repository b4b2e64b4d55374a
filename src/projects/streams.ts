import type { AccessRequest } from '../access/index.js'
import type { Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { LiveStream, LiveStreams } from '../revocation/index.js'
import { AUDIT_READ_SCOPE } from './audit.js'
import { isoDate, requireProject, requireScope, type Services } from './context.js'
import { revokeGrantToken } from './grants.js'
import { changeKeyState } from './keys.js'

function streamView(s: LiveStream, now: number) {
  return {
    request_id: s.requestId,
    route: s.route,
    credential: s.jti === null ? 'api_key' : 'access_token',
    api_key_id: s.keyId,
    jti: s.jti,
    end_user: s.endUser,
    ip: s.ip,
    started: isoDate(s.startedAt),
    duration_seconds: Math.max(0, Math.floor((now - s.startedAt) / 1000)),
  }
}

/**
 * `GET /v1/projects/:id/streams` (Earmark extension, docs/live-streams.md): the live streams open on this
 * server now, oldest first. `audit:read`.
 */
export async function listStreams(
  services: Services,
  principal: Principal,
  projectId: string,
  streams: LiveStreams,
) {
  requireScope(principal, AUDIT_READ_SCOPE)
  await requireProject(services, principal, projectId)
  const now = services.clock.now()
  return { streams: streams.list(projectId).map((s) => streamView(s, now)) }
}

/**
 * `DELETE /v1/projects/:id/streams/:request_id` (Earmark extension, docs/live-streams.md): closes a stream by
 * revoking the credential that opened it, so it closes with 1008 `AUTH-0001` and cannot simply reconnect: a
 * grant token is revoked by its `jti`; a key that presented itself is disabled (reversibly: `…/enable`),
 * with the rules of disable. `audit:read` and `keys:write`.
 */
export async function closeStream(
  services: Services,
  principal: Principal,
  projectId: string,
  requestId: string,
  streams: LiveStreams,
  access?: AccessRequest | null,
) {
  requireScope(principal, AUDIT_READ_SCOPE)
  requireScope(principal, 'keys:write')
  await requireProject(services, principal, projectId)
  const stream = streams.get(projectId, requestId)
  if (!stream) throw new ApiError('STREAM_NOT_FOUND')
  if (stream.jti !== null && stream.grantExpiresAt !== null) {
    revokeGrantToken(
      services,
      principal,
      { jti: stream.jti, keyId: stream.keyId, expiresAt: stream.grantExpiresAt },
      access,
    )
    return { message: 'Stream closed: its grant token was revoked.', request_id: requestId, jti: stream.jti }
  }
  await changeKeyState(services, principal, projectId, stream.keyId, true, access)
  return {
    message: 'Stream closed: its API key was disabled.',
    request_id: requestId,
    api_key_id: stream.keyId,
  }
}
