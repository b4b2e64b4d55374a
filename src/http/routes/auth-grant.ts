import type { FastifyInstance } from 'fastify'
import { grantToken } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  BINDING_OPTIONS,
  BODY_ERRORS,
  documented,
  earmark,
  errorResponses,
  MANAGEMENT_ERRORS,
  type RouteDoc,
  TOKEN,
} from '../openapi/index.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const JSON_TYPE = 'application/json; charset=utf-8'

const GRANT_DOC: RouteDoc = {
  summary: 'Mints a short-lived grant token for the speech endpoints (members and above)',
  description:
    'An empty body (SDK v3.12-v4.9 send none) is `{}`. The token never outlives its key, and deleting the ' +
    'key revokes it (docs/deepgram-compat.md §2); it may be bound (docs/credential-options.md).',
  tags: ['auth'],
  security: TOKEN,
  body: {
    type: 'object',
    properties: {
      ttl_seconds: { type: 'integer', minimum: 1, maximum: 3600, default: 30 },
      end_user: earmark({
        type: 'string',
        minLength: 1,
        maxLength: 128,
        description: 'Whom the token is for.',
      }),
      max_uses: earmark({
        type: 'integer',
        minimum: 1,
        description: 'Requests and upgrades it may make; 1: once.',
      }),
      ...BINDING_OPTIONS,
    },
  },
  response: {
    200: {
      description: 'The token.',
      type: 'object',
      required: ['access_token', 'expires_in'],
      properties: {
        access_token: { type: 'string', description: 'A JWT: `Authorization: Bearer <access_token>`.' },
        expires_in: { type: 'integer', description: 'Seconds.' },
      },
    },
    ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
  },
}

export function authGrantRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { grant } = authHooks(deps)
  // Synchronous from end to end (fast-jwt signs with node:crypto): no promise on the way.
  app.post('/v1/auth/grant', { onRequest: grant, ...documented(GRANT_DOC) }, (req, reply) => {
    const { access_token: token, expires_in: expiresIn } = grantToken(
      services,
      principalOf(req),
      bodyObject(req),
      req.access,
    )
    // Written out rather than serialised: a compact JWS is base64url and dots, nothing to escape, and
    // scanning its ~470 characters for escapes was a tenth of this route's cost.
    reply.type(JSON_TYPE).send(`{"access_token":"${token}","expires_in":${expiresIn}}`)
  })
}
