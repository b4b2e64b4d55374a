import { createHash } from 'node:crypto'
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { decodeAll, isAudioDecodeError, parseAudioOptions } from '../../audio/index.js'
import { type Engine, EngineBusyError, EngineOptionError } from '../../engines/index.js'
import { ApiError, invalidField } from '../../errors.js'
import {
  type FetchAudioOptions,
  fetchAudio,
  parseListenOptions,
  prerecordedResponse,
} from '../../listen/index.js'
import { finishUsage, requireScope, startUsage } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import { authHooks, type RouteDeps } from './route-deps.js'

export interface ListenRouteOptions {
  engine: Engine
  fetch: FetchAudioOptions
  /** Largest upload, bytes. */
  maxUploadBytes: number
  /** How long a request may wait for free speech capacity before a 429. */
  capacityWaitMs: number
}

/** Counts, hashes and caps the bytes of an upload as they stream through. */
async function* tap(
  source: AsyncIterable<Buffer | Uint8Array>,
  sha: ReturnType<typeof createHash>,
  max: number,
) {
  let total = 0
  for await (const chunk of source) {
    total += chunk.length
    if (total > max) throw new ApiError('PAYLOAD_TOO_LARGE')
    sha.update(chunk)
    yield Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk)
  }
}

/** `POST /v1/listen` (deepgram-api.md §6): raw audio of any content type, or JSON `{"url"}`. */
export function listenRoutes(app: FastifyInstance, deps: RouteDeps & ListenRouteOptions): void {
  const { services, authenticator, engine } = deps
  const { usage } = authHooks(authenticator)

  app.register(async (scope) => {
    // Everything but JSON is media (deepgram-api.md §0 #6): hand the handler the unread stream.
    scope.addContentTypeParser('*', (_req: FastifyRequest, payload: Readable, done) => done(null, payload))
    scope.post<{ Querystring: Record<string, string | string[]> }>(
      '/v1/listen',
      { onRequest: usage, bodyLimit: deps.maxUploadBytes },
      async (req) => {
        const principal = principalOf(req)
        requireScope(principal, 'usage:write')
        const options = parseListenOptions(req.query)
        if (options.callback) throw invalidField('callback', 'callbacks are not supported by this server')
        const audio = parseAudioOptions(req.query)
        const isJson = (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')
        const source: AsyncIterable<Buffer | Uint8Array> = isJson
          ? fetchAudio(bodyObject(req).url, deps.fetch)
          : ((req.body as Readable | undefined) ?? req.raw)
        const record = await startUsage(services, principal, {
          requestId: req.id,
          endpoint: 'listen',
          method: 'sync',
          path: '/v1/listen',
          model: options.model,
          tags: options.tags,
        })
        const sha = createHash('sha256')
        let audioSeconds = 0
        try {
          let pcm: Int16Array
          try {
            pcm = await decodeAll(tap(source, sha, deps.maxUploadBytes), audio)
          } catch (err) {
            if (isAudioDecodeError(err)) throw new ApiError('BAD_AUDIO')
            throw err
          }
          audioSeconds = pcm.length / engine.sampleRate
          let result: Awaited<ReturnType<Engine['transcribe']>>
          try {
            result = await engine.transcribe(
              pcm,
              { language: options.language, endpointingMs: options.endpointing },
              deps.capacityWaitMs,
            )
          } catch (err) {
            if (err instanceof EngineBusyError) throw new ApiError('TOO_MANY_REQUESTS', err.message)
            if (err instanceof EngineOptionError) throw invalidField(err.field, err.message)
            throw err
          }
          const body = prerecordedResponse(result.utterances, {
            requestId: req.id,
            engine,
            sha256: sha.digest('hex'),
            created: new Date(record.startedAt).toISOString(),
            duration: result.duration,
            punctuate: options.punctuate,
            utterances: options.utterances,
            paragraphs: options.paragraphs,
            tags: options.tags,
          })
          await finishUsage(services, record, { audioSeconds, status: 200 })
          return body
        } catch (err) {
          const status = err instanceof ApiError ? err.status : 500
          await finishUsage(services, record, {
            audioSeconds,
            status,
            detail: err instanceof ApiError ? err.code : 'INTERNAL_ERROR',
          })
          throw err
        }
      },
    )
  })
}
