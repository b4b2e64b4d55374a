import type { FastifyInstance } from 'fastify'
import { getMemberScopes, listMembers, setMemberScope } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface MemberParams extends ProjectParams {
  member_id: string
}

export function memberRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>('/v1/projects/:project_id/members', { onRequest: management }, (req) =>
    listMembers(services, principalOf(req), req.params.project_id),
  )
  app.get<{ Params: MemberParams }>(
    '/v1/projects/:project_id/members/:member_id/scopes',
    { onRequest: management },
    (req) => getMemberScopes(services, principalOf(req), req.params.project_id, req.params.member_id),
  )
  app.put<{ Params: MemberParams }>(
    '/v1/projects/:project_id/members/:member_id/scopes',
    { onRequest: management },
    (req) =>
      setMemberScope(
        services,
        principalOf(req),
        req.params.project_id,
        req.params.member_id,
        bodyObject(req),
        req.access,
      ),
  )
}
