import type { FastifyInstance } from 'fastify'
import { grantToken } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const JSON_TYPE = 'application/json; charset=utf-8'

export function authGrantRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { grant } = authHooks(deps)
  // Synchronous from end to end (fast-jwt signs with node:crypto): no promise on the way.
  app.post('/v1/auth/grant', { onRequest: grant }, (req, reply) => {
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
