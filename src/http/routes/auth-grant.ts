import type { FastifyInstance } from 'fastify'
import { grantToken } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const JSON_TYPE = 'application/json; charset=utf-8'

export function authGrantRoutes(app: FastifyInstance, { services, authenticator }: RouteDeps): void {
  const { management } = authHooks(authenticator)
  app.post('/v1/auth/grant', { onRequest: management }, async (req, reply) => {
    const { access_token: token, expires_in: expiresIn } = await grantToken(
      services,
      principalOf(req),
      bodyObject(req),
    )
    // Written out rather than serialised: a compact JWS is base64url and dots, nothing to escape, and
    // scanning its ~300 characters for escapes was a tenth of this route's cost.
    return reply.type(JSON_TYPE).send(`{"access_token":"${token}","expires_in":${expiresIn}}`)
  })
}
