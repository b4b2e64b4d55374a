import type { FastifyInstance } from 'fastify'
import { listGrants, revokeGrant } from '../../projects/index.js'
import type { LiveStreams } from '../../revocation/index.js'
import { principalOf } from '../hooks/auth.js'
import {
  documented,
  errorResponses,
  MANAGEMENT_ERRORS,
  MESSAGE_RESPONSE,
  pathParams,
  TOKEN,
} from '../openapi/index.js'
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
  app.get<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/grants',
    {
      onRequest: management,
      ...documented({
        summary: 'Grant tokens not yet expired nor revoked, newest first (`audit:read`)',
        description: 'Read from the audit trail (docs/live-streams.md).',
        tags: ['streams'],
        security: TOKEN,
        params: pathParams('project_id'),
        response: {
          200: {
            description: 'The outstanding grants.',
            type: 'object',
            properties: {
              grants: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    jti: { type: 'string' },
                    api_key_id: { type: 'string' },
                    end_user: { type: ['string', 'null'] },
                    created: { type: 'string' },
                    expiration_date: { type: 'string' },
                    expires_in: { type: 'integer' },
                    streams: { type: 'integer', description: 'Live streams it holds open on this server.' },
                  },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) => listGrants(services, principalOf(req), req.params.project_id, streams),
  )
  app.delete<{ Params: GrantParams }>(
    '/v1/projects/:project_id/grants/:jti',
    {
      onRequest: management,
      ...documented({
        summary: 'Revokes a grant token by its `jti`; its streams close (`audit:read` and `keys:write`)',
        description:
          'Refused from now on until it would have expired; recorded as `grant.revoked` (docs/live-streams.md).',
        tags: ['streams'],
        security: TOKEN,
        params: pathParams('project_id', 'jti'),
        response: {
          200: {
            description: 'The revocation.',
            type: 'object',
            properties: {
              ...MESSAGE_RESPONSE.properties,
              jti: { type: 'string' },
              streams_closed: { type: 'integer' },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) =>
      revokeGrant(services, principalOf(req), req.params.project_id, req.params.jti, streams, req.access),
  )
}
