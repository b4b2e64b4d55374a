import type { FastifyInstance } from 'fastify'
import { getRequest, listRequests, usageSummary } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import {
  documented,
  earmark,
  errorResponses,
  MANAGEMENT_ERRORS,
  paging,
  pathParams,
  TOKEN,
  USAGE_FILTERS,
  USAGE_REQUEST,
} from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface RequestParams extends ProjectParams {
  request_id: string
}

export function usageRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/requests',
    {
      onRequest: management,
      ...documented({
        summary: 'Metered requests, newest first (`usage:read`)',
        tags: ['usage'],
        security: TOKEN,
        params: pathParams('project_id'),
        querystring: { type: 'object', properties: { ...USAGE_FILTERS, ...paging(10) } },
        response: {
          200: {
            description: 'One page of requests.',
            type: 'object',
            properties: {
              page: { type: 'integer' },
              limit: { type: 'integer' },
              requests: { type: 'array', items: USAGE_REQUEST },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => listRequests(services, principalOf(req), req.params.project_id, req.query),
  )
  app.get<{ Params: RequestParams }>(
    '/v1/projects/:project_id/requests/:request_id',
    {
      onRequest: management,
      ...documented({
        summary: 'One metered request (`usage:read`)',
        description:
          'Both shapes the SDKs read: the request itself, and `{request}` (docs/deepgram-compat.md §4).',
        tags: ['usage'],
        security: TOKEN,
        params: pathParams('project_id', 'request_id'),
        response: {
          200: {
            description: 'The request.',
            ...USAGE_REQUEST,
            properties: { ...(USAGE_REQUEST.properties as object), request: USAGE_REQUEST },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => getRequest(services, principalOf(req), req.params.project_id, req.params.request_id),
  )
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/usage',
    {
      onRequest: management,
      ...documented({
        summary: 'Usage per day (`usage:read`)',
        tags: ['usage'],
        security: TOKEN,
        params: pathParams('project_id'),
        querystring: { type: 'object', properties: USAGE_FILTERS },
        response: {
          200: {
            description: 'Hours, requests and characters per UTC day.',
            type: 'object',
            properties: {
              start: { type: 'string' },
              end: { type: 'string' },
              resolution: {
                type: 'object',
                properties: { units: { const: 'day' }, amount: { const: 1 } },
              },
              results: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    start: { type: 'string' },
                    end: { type: 'string' },
                    hours: { type: 'number' },
                    total_hours: { type: 'number' },
                    requests: { type: 'integer' },
                    audio_seconds: earmark({ type: 'number', description: 'The hours in seconds.' }),
                    tts: {
                      type: 'object',
                      description: 'Text to speech of the day.',
                      properties: { characters: { type: 'integer' }, requests: { type: 'integer' } },
                    },
                  },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => usageSummary(services, principalOf(req), req.params.project_id, req.query),
  )
}
