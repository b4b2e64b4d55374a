import type { FastifyInstance } from 'fastify'
import { createReadiness, type Readiness } from '../../ops/index.js'
import { documented, PUBLIC } from '../openapi/index.js'
import type { RouteDeps } from './route-deps.js'

const NOT_READY = createReadiness([])

const CHECKS = {
  type: 'object',
  description: 'Each check by name (`admitting`, `store`, `engine`, `redis`): whether it passed.',
  additionalProperties: true,
} as const

/**
 * `GET /healthz`: the process is alive and serving HTTP (its answer is unchanged since the first release);
 * `GET /readyz`: it should be sent traffic: 200 when every readiness check passes, else 503 naming those
 * that failed (docs/deploy.md, "Health and readiness"). Neither needs a credential nor says anything secret.
 */
export function healthRoutes(
  app: FastifyInstance,
  { services, readiness = NOT_READY }: RouteDeps & { readiness?: Readiness },
): void {
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
  app.get(
    '/readyz',
    documented({
      summary: 'The server should be sent traffic: store, engine and Redis reachable, not draining',
      description: 'docs/deploy.md, "Health and readiness".',
      tags: ['meta'],
      security: PUBLIC,
      response: {
        200: {
          description: 'Ready.',
          type: 'object',
          properties: { status: { const: 'ready' }, checks: CHECKS },
        },
        503: {
          description: 'Not ready: `not_ready` names the checks that failed.',
          type: 'object',
          properties: {
            status: { const: 'not_ready' },
            not_ready: { type: 'array', items: { type: 'string' } },
            checks: CHECKS,
            request_id: { type: 'string' },
          },
        },
      },
      'x-earmark': true,
    }),
    async (request, reply) => {
      const report = await readiness.report()
      reply.header('cache-control', 'no-store')
      if (report.ready) return { status: 'ready', checks: report.checks }
      reply.code(503)
      return {
        status: 'not_ready',
        not_ready: report.not_ready,
        checks: report.checks,
        request_id: request.id,
      }
    },
  )
}
