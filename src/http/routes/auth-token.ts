import type { FastifyInstance } from 'fastify'
import type { Principal } from '../../auth/index.js'
import { secondsLeft, tokenDetails } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

const JSON_TYPE = 'application/json; charset=utf-8'

export function authTokenRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  // Grant tokens may ask about themselves: a browser can learn its token's remaining lifetime.
  const { introspect } = authHooks(deps)

  // Clients poll this route, and a principal comes out of the authenticator's cache as the same object
  // request after request, so its answer is serialised once and again only when `expires_in` (whole
  // seconds) moves: serialising it every time cost as much as authenticating.
  const answers = new WeakMap<Principal, { expiresIn: number | null; json: string }>()
  app.get('/v1/auth/token', { onRequest: introspect }, (req, reply) => {
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
