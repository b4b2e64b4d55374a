import type { FastifyInstance } from 'fastify'
import { tokenDetails } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

export function authTokenRoutes(app: FastifyInstance, { services, authenticator }: RouteDeps): void {
  // Grant tokens may ask about themselves: a browser can learn its token's remaining lifetime.
  const { usage } = authHooks(authenticator)
  app.get('/v1/auth/token', { onRequest: usage }, async (req) => tokenDetails(services, principalOf(req)))
}
