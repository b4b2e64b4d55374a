import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ApiError } from '../../errors.js'
import type { Metrics, MetricsAccess } from '../../ops/index.js'
import { documented, errorResponses, PUBLIC } from '../openapi/index.js'

const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/

/**
 * The connection's own peer is this machine, and no proxy forwarded the request: a reverse proxy on the
 * same machine (deploy/nginx) connects from loopback too, but always adds `X-Forwarded-For`.
 */
function isLocal(request: FastifyRequest): boolean {
  const peer = request.raw.socket.remoteAddress ?? ''
  return (
    LOOPBACK.test(peer) &&
    request.headers['x-forwarded-for'] === undefined &&
    request.headers.forwarded === undefined &&
    request.headers['x-real-ip'] === undefined
  )
}

const digest = (value: string) => createHash('sha256').update(value).digest()

/** `GET /metrics`: the Prometheus text exposition of this node's registry. */
export function metricsRoutes(app: FastifyInstance, o: { metrics: Metrics; access: MetricsAccess }): void {
  const { access, metrics } = o
  // Compared as digests of equal length, in constant time: the token's length and bytes never show in timing.
  const expected = access.mode === 'token' ? digest(access.token) : undefined
  app.get(
    '/metrics',
    documented({
      summary: "This node's metrics in Prometheus text format (docs/metrics.md)",
      description:
        'Who may read it is `EARMARK_METRICS`: `local` (default: this machine, not through a proxy), `public`, `token` (`Authorization: Bearer <EARMARK_METRICS_TOKEN>`) or `off` (not served).',
      tags: ['meta'],
      security: PUBLIC,
      response: {
        200: { description: 'The exposition text (`text/plain; version=0.0.4`).', type: 'string' },
        ...errorResponses(401, 403),
      },
      'x-earmark': true,
    }),
    async (request, reply) => {
      if (access.mode === 'local' && !isLocal(request)) {
        throw new ApiError('FORBIDDEN', 'Metrics are served to this machine only (EARMARK_METRICS=local).')
      }
      if (expected) {
        const header = request.headers.authorization ?? ''
        const presented = /^bearer\s+(\S+)\s*$/i.exec(header)?.[1] ?? ''
        if (!timingSafeEqual(digest(presented), expected)) throw new ApiError('INVALID_AUTH')
      }
      const { contentType, body } = await metrics.render()
      reply.header('content-type', contentType).header('cache-control', 'no-store')
      return body
    },
  )
}
