import type { FastifyInstance } from 'fastify'
import { listSigningKeys, retireSigningKey } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

/** Earmark extension routes (docs/revocation.md): see and retire the grant-signing keys, owners only. */
export function signingKeyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get('/v1/auth/signing-keys', { onRequest: management }, (req) =>
    listSigningKeys(services, principalOf(req)),
  )
  app.delete<{ Params: { kid: string } }>('/v1/auth/signing-keys/:kid', { onRequest: management }, (req) =>
    retireSigningKey(services, principalOf(req), req.params.kid, req.access),
  )
}
