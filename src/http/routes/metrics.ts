import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { ApiError } from '../../errors.js'
import type { Metrics } from '../../ops/index.js'

/**
 * Who may read `GET /metrics` (`EARMARK_METRICS`, docs/metrics.md "Who may read it"): nobody (`off`, a 404),
 * anyone who reaches the port (`public`), or a scraper presenting `Authorization: Bearer <token>` (`token`).
 * The metrics hold no secret and no per-key or per-user label, but they do tell traffic and refusals.
 */
export type MetricsAccess = { mode: 'off' } | { mode: 'public' } | { mode: 'token'; token: string }

const digest = (value: string) => createHash('sha256').update(value).digest()

/** `GET /metrics`: the Prometheus text exposition of this node's registry. */
export function metricsRoutes(app: FastifyInstance, o: { metrics: Metrics; access: MetricsAccess }): void {
  const { access, metrics } = o
  // Compared as digests of equal length, in constant time: the token's length and bytes never show in timing.
  const expected = access.mode === 'token' ? digest(access.token) : undefined
  app.get('/metrics', async (request, reply) => {
    if (expected) {
      const header = request.headers.authorization ?? ''
      const presented = /^bearer\s+(\S+)\s*$/i.exec(header)?.[1] ?? ''
      if (!timingSafeEqual(digest(presented), expected)) throw new ApiError('INVALID_AUTH')
    }
    const { contentType, body } = await metrics.render()
    reply.header('content-type', contentType).header('cache-control', 'no-store')
    return body
  })
}
