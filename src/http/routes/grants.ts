import type { FastifyInstance } from 'fastify'
import { listGrants, revokeGrant } from '../../projects/index.js'
import type { LiveStreams } from '../../revocation/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface GrantParams extends ProjectParams {
  jti: string
}

/**
 * `GET /v1/projects/:project_id/grants` and `DELETE …/grants/:jti`: Earmark extensions
 * (docs/live-streams.md). A body, if any, is ignored.
 */
export function grantRoutes(app: FastifyInstance, deps: RouteDeps & { streams: LiveStreams }): void {
  const { services, streams } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>('/v1/projects/:project_id/grants', { onRequest: management }, (req) =>
    listGrants(services, principalOf(req), req.params.project_id, streams),
  )
  app.delete<{ Params: GrantParams }>(
    '/v1/projects/:project_id/grants/:jti',
    { onRequest: management },
    (req) =>
      revokeGrant(services, principalOf(req), req.params.project_id, req.params.jti, streams, req.access),
  )
}
