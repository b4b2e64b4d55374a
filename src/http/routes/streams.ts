import type { FastifyInstance } from 'fastify'
import { closeStream, listStreams } from '../../projects/index.js'
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
  app.get<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/streams',
    {
      onRequest: management,
      ...documented({
        summary: 'The live streams open on this server now, oldest first (`audit:read`)',
        description: 'docs/live-streams.md.',
        tags: ['streams'],
        security: TOKEN,
        params: pathParams('project_id'),
        response: {
          200: {
            description: 'The open streams.',
            type: 'object',
            properties: {
              streams: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    request_id: { type: 'string' },
                    route: { type: 'string' },
                    credential: { type: 'string', enum: ['api_key', 'access_token'] },
                    api_key_id: { type: 'string' },
                    jti: { type: ['string', 'null'] },
                    end_user: { type: ['string', 'null'] },
                    ip: { type: 'string' },
                    started: { type: 'string' },
                    duration_seconds: { type: 'integer' },
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
    (req) => listStreams(services, principalOf(req), req.params.project_id, streams),
  )
  app.delete<{ Params: StreamParams }>(
    '/v1/projects/:project_id/streams/:request_id',
    {
      onRequest: management,
      ...documented({
        summary: 'Closes a live stream by revoking its credential (`audit:read` and `keys:write`)',
        description:
          'A grant token is revoked by its `jti`; an API key is disabled (`…/keys/:key_id/enable` undoes it). The stream closes 1008 `AUTH-0001` (docs/live-streams.md).',
        tags: ['streams'],
        security: TOKEN,
        params: pathParams('project_id', 'request_id'),
        response: {
          200: {
            description: 'What was revoked.',
            type: 'object',
            properties: {
              ...MESSAGE_RESPONSE.properties,
              request_id: { type: 'string' },
              jti: { type: 'string' },
              api_key_id: { type: 'string' },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
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
