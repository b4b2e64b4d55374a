import type { FastifyInstance } from 'fastify'
import { createReadiness, type Readiness } from '../../ops/index.js'
import type { RouteDeps } from './route-deps.js'

const NOT_READY = createReadiness([])

/**
 * `GET /healthz`: the process is alive and serving HTTP (its answer is unchanged since the first release);
 * `GET /readyz`: it should be sent traffic: 200 when every readiness check passes, else 503 naming those
 * that failed (docs/deploy.md, "Health and readiness"). Neither needs a credential nor says anything secret.
 */
export function healthRoutes(
  app: FastifyInstance,
  { services, readiness = NOT_READY }: RouteDeps & { readiness?: Readiness },
): void {
  app.get('/healthz', async () => ({ status: 'ok', store: services.store.kind }))
  app.get('/readyz', async (request, reply) => {
    const report = await readiness.report()
    reply.header('cache-control', 'no-store')
    if (report.ready) return { status: 'ready', checks: report.checks }
    reply.code(503)
    return { status: 'not_ready', not_ready: report.not_ready, checks: report.checks, request_id: request.id }
  })
}
