import type { FastifyInstance } from 'fastify'
import { listAuditEvents } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

/** `GET /v1/projects/:project_id/audit` (Earmark extension, docs/audit.md), `audit:read`. */
export function auditRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/audit',
    { onRequest: management },
    (req) => listAuditEvents(services, principalOf(req), req.params.project_id, req.query),
  )
}
