import type { FastifyInstance } from 'fastify'
import { documented, PUBLIC } from '../openapi/index.js'
import type { RouteDeps } from './route-deps.js'

export function healthRoutes(app: FastifyInstance, { services }: RouteDeps): void {
  app.get(
    '/healthz',
    documented({
      summary: 'The server is alive',
      tags: ['meta'],
      security: PUBLIC,
      response: {
        200: {
          description: 'Alive; which store it uses.',
          type: 'object',
          required: ['status', 'store'],
          properties: {
            status: { const: 'ok' },
            store: { type: 'string', enum: ['sqlite', 'postgres'], description: 'Where credentials live.' },
          },
        },
      },
      'x-earmark': true,
    }),
    async () => ({ status: 'ok', store: services.store.kind }),
  )
}
