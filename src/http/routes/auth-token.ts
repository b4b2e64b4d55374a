import type { FastifyInstance } from 'fastify'
import { tokenDetails } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const text = { type: 'string' } as const
const textOrNull = { type: ['string', 'null'] } as const
const texts = { type: 'array', items: text } as const

/**
 * The details answer, both kinds in one schema (`type` says which). Declared so Fastify serialises it with
 * a compiled serializer rather than `JSON.stringify`: this is the cheap authenticated route clients poll.
 */
const DETAILS_SCHEMA = {
  type: 'object',
  required: ['type', 'project_id', 'accessor', 'member_id', 'expiration_date', 'expires_in', 'scopes'],
  properties: {
    type: { type: 'string', enum: ['api_key', 'access_token'] },
    project_id: text,
    accessor: text,
    member_id: text,
    expiration_date: textOrNull,
    expires_in: { type: ['integer', 'null'] },
    api_key_id: text,
    comment: text,
    scopes: texts,
    tags: texts,
    created: textOrNull,
    jti: text,
    end_user: text,
  },
} as const

export function authTokenRoutes(app: FastifyInstance, { services, authenticator }: RouteDeps): void {
  // Grant tokens may ask about themselves: a browser can learn its token's remaining lifetime.
  const { usage } = authHooks(authenticator)
  app.get(
    '/v1/auth/token',
    { onRequest: usage, schema: { response: { 200: DETAILS_SCHEMA } } },
    async (req) => tokenDetails(services, principalOf(req)),
  )
}
