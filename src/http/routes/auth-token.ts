import type { FastifyInstance } from 'fastify'
import type { Principal } from '../../auth/index.js'
import { secondsLeft, tokenDetails } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { BINDING_OPTIONS, documented, earmark, errorResponses, TOKEN_OR_BEARER } from '../openapi/index.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const JSON_TYPE = 'application/json; charset=utf-8'

const TOKEN_DOC = {
  summary: 'What the calling credential is and may do',
  description:
    'An API key or a grant token; a token may ask about itself (its remaining lifetime). Deepgram documents ' +
    "no shape for the answer: this one is Earmark's (docs/deepgram-compat.md §2). Never the secret.",
  tags: ['auth'],
  security: TOKEN_OR_BEARER,
  response: {
    200: {
      description: 'The credential.',
      type: 'object',
      required: ['type', 'project_id', 'accessor', 'scopes', 'expires_in'],
      properties: {
        type: { type: 'string', enum: ['api_key', 'access_token'] },
        project_id: { type: 'string' },
        accessor: { type: 'string', description: 'The API key (of a token: the key that minted it).' },
        member_id: { type: 'string' },
        expiration_date: { type: ['string', 'null'], format: 'date-time' },
        expires_in: { type: ['integer', 'null'], description: 'Seconds left; `null`: never expires.' },
        scopes: { type: 'array', items: { type: 'string' } },
        created: { type: ['string', 'null'], format: 'date-time' },
        api_key_id: { type: 'string', description: 'Keys only.' },
        comment: { type: 'string', description: 'Keys only.' },
        tags: { type: 'array', items: { type: 'string' }, description: 'Keys only.' },
        jti: { type: 'string', description: 'Tokens only: the token id.' },
        end_user: earmark({ type: ['string', 'null'], description: 'Tokens only: whom it was minted for.' }),
        ...BINDING_OPTIONS,
      },
    },
    ...errorResponses(400, 401, 403, 429, 503),
  },
}

export function authTokenRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  // Grant tokens may ask about themselves: a browser can learn its token's remaining lifetime.
  const { introspect } = authHooks(deps)

  // Clients poll this route, and a principal comes out of the authenticator's cache as the same object
  // request after request, so its answer is serialised once and again only when `expires_in` (whole
  // seconds) moves: serialising it every time cost as much as authenticating.
  const answers = new WeakMap<Principal, { expiresIn: number | null; json: string }>()
  app.get('/v1/auth/token', { onRequest: introspect, ...documented(TOKEN_DOC) }, (req, reply) => {
    const principal = principalOf(req)
    const now = services.clock.now()
    const expiresIn = secondsLeft(principal, now)
    let answer = answers.get(principal)
    if (answer === undefined || answer.expiresIn !== expiresIn) {
      answer = { expiresIn, json: JSON.stringify(tokenDetails(principal, now)) }
      answers.set(principal, answer)
    }
    reply.type(JSON_TYPE).send(answer.json)
  })
}
