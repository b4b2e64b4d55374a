import type { FastifyInstance, FastifyRequest } from 'fastify'

type Done = (err: Error | null, body?: unknown) => void

/**
 * Lenient JSON: v3/v4 SDKs send `Content-Type: application/json` with an empty body on GET, DELETE and
 * grant (docs/deepgram-compat.md §0 #4), so an empty (or blank) body is `{}`. Anything else goes through
 * Fastify's own parser (secure-json-parse): a body with `__proto__` or `constructor.prototype` keys, which could
 * poison an object built from it, is refused like malformed JSON, 400 INVALID_JSON.
 */
export function registerJsonParser(app: FastifyInstance): void {
  const strict = app.getDefaultJsonParser('error', 'error')
  // JSON is the only body the management API reads; anything else is a 415.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    function lenientJson(request: FastifyRequest, body: string | Buffer, done: Done) {
      const text = typeof body === 'string' ? body : body.toString('utf8')
      if (text.trim() === '') return done(null, {})
      strict(request, text, done)
    },
  )
}
