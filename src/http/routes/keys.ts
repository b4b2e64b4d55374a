import type { FastifyInstance } from 'fastify'
import { createKey, deleteKey, getKey, listKeys, rerollKey } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface KeyParams extends ProjectParams {
  key_id: string
}

export function keyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/keys',
    { onRequest: management },
    (req) => listKeys(services, principalOf(req), req.params.project_id, req.query),
  )
  app.get<{ Params: KeyParams }>('/v1/projects/:project_id/keys/:key_id', { onRequest: management }, (req) =>
    getKey(services, principalOf(req), req.params.project_id, req.params.key_id),
  )
  // The query may hold a copy of the body (docs/deepgram-compat.md §0 #5); it is ignored.
  app.post<{ Params: ProjectParams }>('/v1/projects/:project_id/keys', { onRequest: management }, (req) =>
    createKey(services, principalOf(req), req.params.project_id, bodyObject(req), req.access),
  )
  app.delete<{ Params: KeyParams }>(
    '/v1/projects/:project_id/keys/:key_id',
    { onRequest: management },
    (req) => deleteKey(services, principalOf(req), req.params.project_id, req.params.key_id, req.access),
  )
  // Earmark extension (docs/audit.md): a new secret for the same key, the old one good for a grace period.
  app.post<{ Params: KeyParams }>(
    '/v1/projects/:project_id/keys/:key_id/reroll',
    { onRequest: management },
    (req) =>
      rerollKey(
        services,
        principalOf(req),
        req.params.project_id,
        req.params.key_id,
        bodyObject(req),
        req.access,
      ),
  )
}
