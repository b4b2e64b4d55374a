import type { FastifyInstance } from 'fastify'
import { getRequest, listRequests, usageSummary } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface RequestParams extends ProjectParams {
  request_id: string
}

export function usageRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/requests',
    { onRequest: management },
    (req) => listRequests(services, principalOf(req), req.params.project_id, req.query),
  )
  app.get<{ Params: RequestParams }>(
    '/v1/projects/:project_id/requests/:request_id',
    { onRequest: management },
    (req) => getRequest(services, principalOf(req), req.params.project_id, req.params.request_id),
  )
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/usage',
    { onRequest: management },
    (req) => usageSummary(services, principalOf(req), req.params.project_id, req.query),
  )
}
