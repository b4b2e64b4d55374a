import type { FastifyInstance } from 'fastify'
import { closeStream, listStreams } from '../../projects/index.js'
import type { LiveStreams } from '../../revocation/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface StreamParams extends ProjectParams {
  request_id: string
}

/**
 * `GET /v1/projects/:project_id/streams` and `DELETE …/streams/:request_id`: Earmark extensions
 * (docs/live-streams.md). A body, if any, is ignored.
 */
export function streamRoutes(app: FastifyInstance, deps: RouteDeps & { streams: LiveStreams }): void {
  const { services, streams } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>('/v1/projects/:project_id/streams', { onRequest: management }, (req) =>
    listStreams(services, principalOf(req), req.params.project_id, streams),
  )
  app.delete<{ Params: StreamParams }>(
    '/v1/projects/:project_id/streams/:request_id',
    { onRequest: management },
    (req) =>
      closeStream(
        services,
        principalOf(req),
        req.params.project_id,
        req.params.request_id,
        streams,
        req.access,
      ),
  )
}
