import type { FastifyInstance } from 'fastify'
import { getMemberScopes, listMembers, setMemberScope } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  BODY_ERRORS,
  documented,
  errorResponses,
  MANAGEMENT_ERRORS,
  MESSAGE_RESPONSE,
  pathParams,
  TOKEN,
} from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface MemberParams extends ProjectParams {
  member_id: string
}

const ROLE = { type: 'string', enum: ['owner', 'admin', 'member'] }
const SCOPES = { type: 'object', properties: { scopes: { type: 'array', items: ROLE } } }

export function memberRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/members',
    {
      onRequest: management,
      ...documented({
        summary: "The project's members (`members:read`, admins and owners)",
        tags: ['members'],
        security: TOKEN,
        params: pathParams('project_id'),
        response: {
          200: {
            description: 'The members.',
            type: 'object',
            properties: {
              members: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    member_id: { type: 'string' },
                    email: { type: 'string' },
                    first_name: { type: 'string' },
                    last_name: { type: 'string' },
                    scopes: { type: 'array', items: ROLE },
                  },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => listMembers(services, principalOf(req), req.params.project_id),
  )
  app.get<{ Params: MemberParams }>(
    '/v1/projects/:project_id/members/:member_id/scopes',
    {
      onRequest: management,
      ...documented({
        summary: "A member's role",
        tags: ['members'],
        security: TOKEN,
        params: pathParams('project_id', 'member_id'),
        response: {
          200: { description: 'The role, as a one-entry list.', ...SCOPES },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => getMemberScopes(services, principalOf(req), req.params.project_id, req.params.member_id),
  )
  app.put<{ Params: MemberParams }>(
    '/v1/projects/:project_id/members/:member_id/scopes',
    {
      onRequest: management,
      ...documented({
        summary: "Changes a member's role (docs/roles-and-scopes.md)",
        description: 'Only the body is read: a copy of it in the query string (SDK v3/v4) is ignored.',
        tags: ['members'],
        security: TOKEN,
        params: pathParams('project_id', 'member_id'),
        body: { type: 'object', required: ['scope'], properties: { scope: ROLE } },
        response: {
          200: { description: 'Changed.', ...MESSAGE_RESPONSE },
          ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
        },
      }),
    },
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
