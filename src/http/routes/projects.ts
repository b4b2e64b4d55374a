import type { FastifyInstance } from 'fastify'
import { getProject, listProjects, updateProject } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

export function projectRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get('/v1/projects', { onRequest: management }, (req) => listProjects(services, principalOf(req)))
  app.get<{ Params: ProjectParams }>('/v1/projects/:project_id', { onRequest: management }, (req) =>
    getProject(services, principalOf(req), req.params.project_id),
  )
  // v3/v4 copy the body into the query string (docs/deepgram-compat.md §0 #5): only the body is read.
  app.patch<{ Params: ProjectParams }>('/v1/projects/:project_id', { onRequest: management }, (req) =>
    updateProject(services, principalOf(req), req.params.project_id, bodyObject(req)),
  )
}
