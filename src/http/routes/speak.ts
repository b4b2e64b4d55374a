import type { FastifyInstance } from 'fastify'
import { USAGE_WRITE } from '../../auth/index.js'
import { ApiError, invalidField } from '../../errors.js'
import { finishUsage, requireScope, startUsage } from '../../projects/index.js'
import { parseSpeakQuery, type Speaker, type Speech, speakQueryDoc } from '../../tts/index.js'
import { headerSafe } from '../header-value.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  BODY_ERRORS,
  documented,
  errorResponses,
  MANAGEMENT_ERRORS,
  type RouteDoc,
  TOKEN_OR_BEARER,
} from '../openapi/index.js'
import { authHooks, type RouteDeps } from './route-deps.js'

/** Deepgram's limit on one request's text (docs/deepgram-compat.md §8.1: 413 past it). */
export const MAX_SPEAK_CHARACTERS = 2000

/** The text of a `{"text": "…"}` body and its length in characters (code points, as `dg-char-count`). */
function speakText(body: Record<string, unknown>): { text: string; characters: number } {
  const text = body.text
  if (text === undefined && body.url !== undefined) {
    throw invalidField('url', 'is not supported by Earmark; send the text itself as `text`')
  }
  if (typeof text !== 'string') throw invalidField('text', 'must be a string')
  if (text.trim() === '') throw new ApiError('INVALID_FIELD', 'Input text contains no characters.')
  const characters = Array.from(text).length
  if (characters > MAX_SPEAK_CHARACTERS) {
    throw new ApiError(
      'PAYLOAD_TOO_LARGE',
      `Input text has ${characters} characters; the limit is ${MAX_SPEAK_CHARACTERS}.`,
    )
  }
  return { text, characters }
}

const SPEAK_DOC: RouteDoc = {
  summary: 'Text to speech (`usage:write`, keys or grant tokens)',
  description:
    'flite voices under Aura names (docs/speech.md, "Text to speech"); the audio streams once encoded. ' +
    'Bounded slots and queue (429 past them), a time limit on each program (504).',
  tags: ['speak'],
  security: TOKEN_OR_BEARER,
  querystring: speakQueryDoc('rest'),
  body: {
    type: 'object',
    required: ['text'],
    properties: {
      text: { type: 'string', minLength: 1, description: `At most ${MAX_SPEAK_CHARACTERS} characters.` },
    },
  },
  produces: ['audio/mpeg', 'audio/wav', 'audio/ogg', 'audio/flac', 'audio/aac', 'application/octet-stream'],
  response: {
    200: {
      description: 'The audio, its type per `encoding` and `container`.',
      type: 'string',
      contentEncoding: 'binary',
      headers: {
        'dg-model-name': { type: 'string' },
        'dg-model-uuid': { type: 'string' },
        'dg-char-count': { type: 'integer' },
        'dg-request-id': { type: 'string', format: 'uuid' },
      },
    },
    ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS, 500, 504),
  },
}

/**
 * `POST /v1/speak` (docs/deepgram-compat.md §8.1): text to speech with flite (espeak-ng as an option), for
 * API keys and grant tokens holding `usage:write`. The audio is streamed once it is encoded; `dg-request-id`
 * is set by a hook. Synthesis runs in a bounded number of slots with a bounded queue (429 past it) and a
 * time limit on every program (504).
 */
export function speakRoutes(app: FastifyInstance, deps: RouteDeps & { speaker: Speaker }): void {
  const { services, speaker } = deps
  const { usage } = authHooks(deps)
  app.post<{ Querystring: Record<string, unknown> }>(
    '/v1/speak',
    { onRequest: usage, ...documented(SPEAK_DOC) },
    async (req, reply) => {
      const principal = principalOf(req)
      requireScope(principal, USAGE_WRITE)
      const { model, voice, format, tags, speed } = parseSpeakQuery(req.query)
      const { text, characters } = speakText(bodyObject(req))
      const record = await startUsage(services, principal, {
        requestId: req.id,
        endpoint: 'speak',
        method: 'sync',
        path: '/v1/speak',
        model,
        tags,
      })
      let speech: Speech
      try {
        speech = await speaker.synthesize(text, voice, format, speed)
      } catch (err) {
        const status = err instanceof ApiError ? err.status : 500
        const detail = err instanceof ApiError ? err.code : 'INTERNAL_ERROR'
        await finishUsage(services, record, { characters, status, detail })
        throw err
      }
      // Metered once the audio exists: the characters were spoken even if the client stops reading.
      // Text to speech is counted in characters; audio seconds are what speech-to-text hours add up.
      await finishUsage(services, record, { characters, status: 200 })
      reply
        .header('content-type', speech.format.contentType)
        .header('dg-model-name', headerSafe(model))
        .header('dg-model-uuid', voice.uuid)
        .header('dg-char-count', String(characters))
        .header('content-length', String(speech.byteLength))
      return reply.send(speech.stream)
    },
  )
}
