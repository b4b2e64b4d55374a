import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'

export interface CorsOptions {
  /** Request headers a preflight allows. */
  allowedHeaders: readonly string[]
  /** Response headers a browser script may read. */
  exposedHeaders: readonly string[]
  /** How long a browser may cache a preflight answer, seconds. */
  maxAgeSeconds: number
}

const METHODS = 'GET, HEAD, PUT, PATCH, POST, DELETE'

/**
 * CORS for a credentialed API any origin may call (docs/deepgram-compat.md §0 #10): the request's `Origin` is
 * reflected with `Access-Control-Allow-Credentials`, and a preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) is answered 204 here, before any auth hook. A request without `Origin` is
 * not a cross-origin browser request and gets only `Vary: Origin` (so no cache serves it to a browser as if
 * it were), which keeps the hot path of server-side callers free of CORS work: about 1 µs a request with
 * `@fastify/cors`, which copies its options and builds its headers on every request (docs/benchmarks.md).
 */
export function createCorsHook(options: CorsOptions) {
  const allowedHeaders = options.allowedHeaders.join(', ')
  const exposedHeaders = options.exposedHeaders.join(', ')
  const maxAge = String(options.maxAgeSeconds)
  return function cors(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void {
    reply.header('vary', 'Origin')
    const origin = request.headers.origin
    if (origin !== undefined) {
      reply.header('access-control-allow-origin', origin)
      reply.header('access-control-allow-credentials', 'true')
      reply.header('access-control-expose-headers', exposedHeaders)
      if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
        reply.header('access-control-allow-methods', METHODS)
        reply.header('access-control-allow-headers', allowedHeaders)
        reply.header('access-control-max-age', maxAge)
        reply.code(204).header('content-length', '0').send()
        return
      }
    }
    done()
  }
}
