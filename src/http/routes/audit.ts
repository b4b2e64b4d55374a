import type { FastifyInstance } from 'fastify'
import { listAuditEvents } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { documented, errorResponses, MANAGEMENT_ERRORS, paging, pathParams, TOKEN } from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

/** `GET /v1/projects/:project_id/audit` (Earmark extension, docs/audit.md), `audit:read`. */
export function auditRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/audit',
    {
      onRequest: management,
      ...documented({
        summary: "The project's audit trail, newest first (`audit:read`, admins and owners)",
        description: 'Event types and their details: docs/audit.md.',
        tags: ['audit'],
        security: TOKEN,
        params: pathParams('project_id'),
        querystring: {
          type: 'object',
          properties: {
            type: { type: 'string', description: 'An event type (`key.created`), or a prefix (`key.`).' },
            key_id: { type: 'string', description: 'Events about this key.' },
            end_user: { type: 'string', description: 'Events of this end user.' },
            start: { type: 'string', description: 'From this date (`YYYY-MM-DD`, optionally with a time).' },
            end: { type: 'string', description: 'Up to this date.' },
            ...paging(100),
          },
        },
        response: {
          200: {
            description: 'One page of events.',
            type: 'object',
            properties: {
              events: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    type: { type: 'string' },
                    time: { type: 'string', format: 'date-time' },
                    actor_key_id: { type: ['string', 'null'] },
                    key_id: { type: ['string', 'null'] },
                    end_user: { type: ['string', 'null'] },
                    ip: { type: ['string', 'null'] },
                    request_id: { type: ['string', 'null'] },
                    detail: { type: 'object' },
                  },
                },
              },
              page: { type: 'integer' },
              limit: { type: 'integer' },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) => listAuditEvents(services, principalOf(req), req.params.project_id, req.query),
  )
}
