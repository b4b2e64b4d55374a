import type { FastifyInstance } from 'fastify'
import { getProjectSettings, updateProjectSettings } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

/** `GET|PATCH /v1/projects/:project_id/settings`: Earmark's project-wide limits and policies (docs/limits.md). */
export function projectSettingsRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>('/v1/projects/:project_id/settings', { onRequest: management }, (req) =>
    getProjectSettings(services, principalOf(req), req.params.project_id),
  )
  app.patch<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/settings',
    { onRequest: management },
    (req) =>
      updateProjectSettings(services, principalOf(req), req.params.project_id, bodyObject(req), req.access),
  )
}
