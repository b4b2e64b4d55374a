import { availableParallelism } from 'node:os'
import type { FastifyInstance } from 'fastify'
import { USAGE_WRITE } from '../../auth/index.js'
import { ApiError, invalidField } from '../../errors.js'
import { finishUsage, requireScope, startUsage } from '../../projects/index.js'
import {
  createSpeechJobs,
  parseSpeakQuery,
  type Speech,
  type SpeechJobs,
  type SpeechTools,
  synthesize,
} from '../../tts/index.js'
import { headerSafe } from '../header-value.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

/** Deepgram's limit on one request's text (deepgram-api.md §8.1: 413 past it). */
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

/** Bounds on `/v1/speak` work (defaults in parentheses). */
export interface SpeakLimits {
  /** Syntheses (a voice engine, then ffmpeg) at once (the machine's cores). */
  concurrency?: number
  /** Requests waiting for a synthesis slot; past it, 429 at once (32). */
  maxQueue?: number
  /** How long a request waits for a slot before a 429, ms (10 000). */
  waitMs?: number
  /** How long each program may run before it is killed and the request fails with 504, ms (30 000). */
  timeoutMs?: number
  /** Paths of flite, espeak-ng and ffmpeg (their names on PATH). */
  tools?: SpeechTools
}

/**
 * `POST /v1/speak` (deepgram-api.md §8.1): text to speech with flite (espeak-ng as an option), for API
 * keys and grant tokens holding `usage:write`. The audio is streamed once it is encoded; `dg-request-id`
 * is set by a hook. Synthesis runs in a bounded number of slots with a bounded queue (429 past it) and a
 * time limit on every program (504).
 */
export function speakRoutes(
  app: FastifyInstance,
  { services, authenticator, limits = {} }: RouteDeps & { limits?: SpeakLimits },
): void {
  const { usage } = authHooks(authenticator)
  const jobs: SpeechJobs = createSpeechJobs({
    concurrency: limits.concurrency ?? availableParallelism(),
    maxQueue: limits.maxQueue ?? 32,
    waitMs: limits.waitMs ?? 10_000,
  })
  const timeoutMs = limits.timeoutMs ?? 30_000
  app.post<{ Querystring: Record<string, unknown> }>(
    '/v1/speak',
    { onRequest: usage },
    async (req, reply) => {
      const principal = principalOf(req)
      requireScope(principal, USAGE_WRITE)
      const { model, voice, format, tags } = parseSpeakQuery(req.query)
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
        speech = await jobs.run(() =>
          synthesize(text, {
            voice,
            encoding: format.encoding,
            container: format.container,
            sampleRate: format.sampleRate,
            bitRate: format.bitRate ?? undefined,
            timeoutMs,
            ...(limits.tools ? { tools: limits.tools } : {}),
          }),
        )
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
