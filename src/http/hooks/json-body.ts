import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ApiError } from '../../errors.js'

/**
 * Lenient JSON: v3/v4 SDKs send `Content-Type: application/json` with an empty body on GET, DELETE and
 * grant (deepgram-api.md §0 #4), so an empty body is `{}`. Malformed JSON is a 400 INVALID_JSON.
 */
export function registerJsonParser(app: FastifyInstance): void {
  // JSON is the only body the management API reads; anything else is a 415.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    (_request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
      const text = typeof body === 'string' ? body : body.toString('utf8')
      if (text.trim() === '') return done(null, {})
      try {
        done(null, JSON.parse(text))
      } catch {
        done(new ApiError('INVALID_JSON', 'Invalid JSON submitted.'))
      }
    },
  )
}
