import type { FastifyInstance } from 'fastify'
import type { RouteDeps } from './route-deps.js'

export function healthRoutes(app: FastifyInstance, { services }: RouteDeps): void {
  app.get('/healthz', async () => ({ status: 'ok', store: services.store.kind }))
}
