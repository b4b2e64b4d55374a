import type { FastifyInstance } from 'fastify'
import { grantToken } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

export function authGrantRoutes(app: FastifyInstance, { services, authenticator }: RouteDeps): void {
  const { management } = authHooks(authenticator)
  app.post('/v1/auth/grant', { onRequest: management }, (req) =>
    grantToken(services, principalOf(req), bodyObject(req)),
  )
}
