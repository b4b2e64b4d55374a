import type { FastifyInstance } from 'fastify'
import { createKey, deleteKey, getKey, listKeys, rerollKey } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  API_KEY,
  BINDING_OPTIONS,
  BODY_ERRORS,
  documented,
  errorResponses,
  KEY_LIMITS,
  KEY_MEMBER,
  KEY_QUOTAS,
  MANAGEMENT_ERRORS,
  MESSAGE_RESPONSE,
  pathParams,
  TOKEN,
} from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface KeyParams extends ProjectParams {
  key_id: string
}

/** A key with its secret: the create and reroll answers, the only ones that ever carry it. */
const KEY_WITH_SECRET = {
  ...API_KEY,
  required: ['key', ...(API_KEY.required as string[])],
  properties: {
    key: { type: 'string', description: 'The secret, shown this once.' },
    ...(API_KEY.properties as object),
  },
}

const CREATE_KEY_BODY = {
  type: 'object',
  required: ['comment', 'scopes'],
  properties: {
    comment: { type: 'string', minLength: 1 },
    scopes: {
      type: 'array',
      minItems: 1,
      items: { type: 'string' },
      description: "Roles and scopes, within the caller's own (docs/roles-and-scopes.md).",
    },
    tags: { type: 'array', items: { type: 'string' } },
    expiration_date: {
      type: 'string',
      format: 'date-time',
      description: 'Not with `time_to_live_in_seconds`.',
    },
    time_to_live_in_seconds: { type: 'integer', minimum: 1 },
    ...BINDING_OPTIONS,
    limits: KEY_LIMITS,
    quotas: KEY_QUOTAS,
  },
}

export function keyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams; Querystring: Record<string, unknown> }>(
    '/v1/projects/:project_id/keys',
    {
      onRequest: management,
      ...documented({
        summary: 'The API keys the caller may see (`keys:read`; owners see all)',
        tags: ['keys'],
        security: TOKEN,
        params: pathParams('project_id'),
        querystring: {
          type: 'object',
          properties: {
            status: {
              type: 'string',
              enum: ['active', 'expired'],
              description: 'Only keys that have (not) expired.',
            },
          },
        },
        response: {
          200: {
            description: 'The keys, never their secrets.',
            type: 'object',
            properties: {
              api_keys: {
                type: 'array',
                items: { type: 'object', properties: { member: KEY_MEMBER, api_key: API_KEY } },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => listKeys(services, principalOf(req), req.params.project_id, req.query),
  )
  app.get<{ Params: KeyParams }>(
    '/v1/projects/:project_id/keys/:key_id',
    {
      onRequest: management,
      ...documented({
        summary: 'One API key (`keys:read`)',
        description:
          'Both shapes the SDKs read: `{member, api_key}` and `{item: {member: {…, api_key}}}` ' +
          '(docs/deepgram-compat.md §3).',
        tags: ['keys'],
        security: TOKEN,
        params: pathParams('project_id', 'key_id'),
        response: {
          200: {
            description: 'The key, never its secret.',
            type: 'object',
            properties: {
              member: KEY_MEMBER,
              api_key: API_KEY,
              item: {
                type: 'object',
                properties: {
                  member: {
                    ...KEY_MEMBER,
                    properties: { ...(KEY_MEMBER.properties as object), api_key: API_KEY },
                  },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => getKey(services, principalOf(req), req.params.project_id, req.params.key_id),
  )
  // The query may hold a copy of the body (docs/deepgram-compat.md §0 #5); it is ignored.
  app.post<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/keys',
    {
      onRequest: management,
      ...documented({
        summary: 'Creates an API key (`keys:write`)',
        description:
          'Never wider than its creator, never outliving it (docs/roles-and-scopes.md). Only the body is ' +
          'read: a copy in the query string (SDK v3/v4) is ignored; unknown fields are ignored.',
        tags: ['keys'],
        security: TOKEN,
        params: pathParams('project_id'),
        body: CREATE_KEY_BODY,
        response: {
          200: { description: 'The key with its secret, shown this once.', ...KEY_WITH_SECRET },
          ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
        },
      }),
    },
    (req) => createKey(services, principalOf(req), req.params.project_id, bodyObject(req), req.access),
  )
  app.delete<{ Params: KeyParams }>(
    '/v1/projects/:project_id/keys/:key_id',
    {
      onRequest: management,
      ...documented({
        summary: 'Deletes an API key (`keys:write`); its grant tokens and live streams end at once',
        tags: ['keys'],
        security: TOKEN,
        params: pathParams('project_id', 'key_id'),
        response: {
          200: { description: 'Deleted.', ...MESSAGE_RESPONSE },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => deleteKey(services, principalOf(req), req.params.project_id, req.params.key_id, req.access),
  )
  // Earmark extension (docs/audit.md): a new secret for the same key, the old one good for a grace period.
  app.post<{ Params: KeyParams }>(
    '/v1/projects/:project_id/keys/:key_id/reroll',
    {
      onRequest: management,
      ...documented({
        summary: 'A new secret for the same key; the old one stays good for a grace period (`keys:write`)',
        description: 'docs/audit.md, "Rerolling a key".',
        tags: ['keys'],
        security: TOKEN,
        params: pathParams('project_id', 'key_id'),
        body: {
          type: 'object',
          properties: {
            grace_period_seconds: {
              type: 'integer',
              minimum: 0,
              maximum: 86_400,
              default: 3600,
              description: 'How long the old secret keeps working; 0: it stops at once.',
            },
          },
        },
        response: {
          200: {
            description: 'The key with its new secret, shown this once.',
            ...KEY_WITH_SECRET,
            properties: {
              ...KEY_WITH_SECRET.properties,
              previous_key_expiration_date: { type: 'string', format: 'date-time' },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
        },
        'x-earmark': true,
      }),
    },
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
