import type { Principal } from '../auth/index.js'
import { invalidField } from '../errors.js'
import type { AuditEvent, AuditFilter } from '../store/index.js'
import { isoDate, requireProject, requireScope, type Services } from './context.js'
import { intIn, optionalText, parseDate } from './usage.js'

/** The scope that reads a project's audit trail (admins and owners; docs/audit.md). */
export const AUDIT_READ_SCOPE = 'audit:read'

/** Dotted lower-case names (`key.created`), or a prefix of them ending in a dot (`suspicious.`). */
const TYPE_FILTER = /^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*\.?$/
const MAX_TYPE = 64
const MAX_ID = 256

/** One event as the API shows it (docs/audit.md): never a secret, keys by id and tokens by `jti`. */
export function auditEventView(e: AuditEvent) {
  return {
    id: e.id,
    type: e.type,
    time: isoDate(e.at),
    actor_key_id: e.actorKeyId,
    key_id: e.keyId,
    end_user: e.endUser,
    ip: e.ip,
    request_id: e.requestId,
    detail: e.detail,
  }
}

/** The filters of `GET /v1/projects/:id/audit`, with the usage routes' date and paging rules. */
function parseAuditFilter(query: Record<string, unknown>): AuditFilter {
  const type = optionalText('type', query.type)
  if (type !== undefined && (type.length > MAX_TYPE || !TYPE_FILTER.test(type))) {
    throw invalidField(
      'type',
      'must be an event type like key.created, or a prefix ending in a dot like key.',
    )
  }
  const keyId = optionalText('key_id', query.key_id)
  if (keyId !== undefined && keyId.length > MAX_ID) throw invalidField('key_id', 'is too long')
  const endUser = optionalText('end_user', query.end_user)
  if (endUser !== undefined && endUser.length > MAX_ID) throw invalidField('end_user', 'is too long')
  const filter: AuditFilter = {}
  const start = parseDate('start', query.start)
  const end = parseDate('end', query.end)
  if (start !== undefined) filter.start = start
  if (end !== undefined) filter.end = end
  if (type !== undefined) filter.type = type
  if (keyId !== undefined) filter.keyId = keyId
  if (endUser !== undefined) filter.endUser = endUser
  return filter
}

/**
 * `GET /v1/projects/:id/audit` (an Earmark extension, docs/audit.md): the project's events, newest first.
 * Events still queued in the batching writer (at most ~100 ms old) are written first, so a caller sees what
 * it just did.
 */
export async function listAuditEvents(
  services: Services,
  principal: Principal,
  projectId: string,
  query: Record<string, unknown>,
) {
  requireScope(principal, AUDIT_READ_SCOPE)
  await requireProject(services, principal, projectId)
  const filter = parseAuditFilter(query)
  const limit = intIn('limit', query.limit, 1, 1000, 100)
  const page = intIn('page', query.page, 0, 1_000_000, 0)
  await services.audit?.flush()
  const events = await services.store.listAuditEvents(projectId, { ...filter, limit, offset: page * limit })
  return { events: events.map(auditEventView), page, limit }
}
