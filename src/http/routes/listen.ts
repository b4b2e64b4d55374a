import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { knownDuration, type SpooledUpload, spoolUpload, sweepSpoolDir, tooLarge } from '../../audio/index.js'
import { type EngineRegistry, isRelayEngine } from '../../engines/index.js'
import { ApiError } from '../../errors.js'
import {
  audioTooLong,
  type CapacityShare,
  createListenUseCase,
  type FetchAudioOptions,
  fetchAudio,
  type ListenObserver,
  type ListenRequest,
  listenQueryDoc,
  type ProjectEngines,
  prerecordedResponse,
  transcribeRecording,
} from '../../listen/index.js'
import { requireScope } from '../../projects/index.js'
import { type QuotaEnforcer, withinQuota } from '../../quotas/index.js'
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

/**
 * What bounds a pre-recorded request. An upload goes to a temporary file first (hashed and counted as it
 * arrives), so a slow client holds a file and a socket, never a decoder; only then does it queue for a
 * decoder of the same pool live streams use, and its audio is decoded from the file as a pull stream into
 * the engine. Memory therefore does not grow with the upload (docs/speech.md, "Pre-recorded limits").
 */
export interface PrerecordedLimits {
  /** Requests with their audio in hand that may wait for a decoder; one more gets 429 at once. */
  maxQueue: number
  /** Uploads that may be received at once; one more gets 429 before its body is read. */
  maxUploads: number
  /** Longest audio, seconds: 413 from the header when the size tells it, else once decoding passes it. */
  maxAudioSeconds: number
  /** An upload that sends no byte for this long gets 408, ms. */
  uploadIdleTimeoutMs: number
  /**
   * Where uploads are spooled (created 0700; files 0600, removed when their request ends; leftovers of an
   * earlier run are removed at start). Default: a private directory under the OS temp dir, for this app.
   */
  uploadDir?: string
  /** Each key's and end user's share of the slots, counted with live streams (docs/speech.md); default none. */
  share?: CapacityShare
  /** Audio quotas, shared with live streams (docs/quotas.md); default none. */
  quotas?: QuotaEnforcer
  /** Projects' own upstream relays (docs/gateway.md "Per project"); default none. */
  projectEngines?: ProjectEngines
  /** Told about refusals and audio decoded (the metrics); default nobody. */
  observer?: ListenObserver
}

export const DEFAULT_PRERECORDED_LIMITS: PrerecordedLimits = {
  maxQueue: 8,
  maxUploads: 16,
  maxAudioSeconds: 3600,
  uploadIdleTimeoutMs: 30_000,
}

export interface ListenRouteOptions {
  /** The engines, chosen per request by `model`. */
  engines: EngineRegistry
  fetch: FetchAudioOptions
  /** Largest upload, bytes. */
  maxUploadBytes: number
  /** How long a request may wait for free speech capacity before a 429. */
  capacityWaitMs: number
  limits: PrerecordedLimits
}

/** A `{"url"}` body is a few hundred bytes; raw audio never goes through a body parser. */
const JSON_BODY_LIMIT = 64 * 1024

/** The query string of a request target, without the `?`, exactly as the client wrote it. */
function rawQuery(url: string): string {
  const q = url.indexOf('?')
  return q < 0 ? '' : url.slice(q + 1)
}

/** The client's media type, as sent (a relay passes it on); none: bytes to sniff. */
function mediaType(req: FastifyRequest): string {
  const type = req.headers['content-type']
  return typeof type === 'string' && type !== '' ? type : 'application/octet-stream'
}

/** The client closed the connection before its answer: nobody is left to answer, only to meter. */
class ClientGone extends Error {}

/**
 * The request body, read as it arrives. Giving up on it early (a limit passed) must not destroy the request:
 * that would reset the connection under the error answer. Node reads and drops the rest, then the
 * `connection: close` of that answer ends the connection.
 */
function uploadBody(req: FastifyRequest): AsyncIterable<Buffer> {
  const body = (req.body as Readable | undefined) ?? req.raw
  return body.iterator({ destroyOnReturn: false })
}

/**
 * An answer sent before the whole body was read (any refusal: credentials, options, limits) closes the
 * connection: otherwise Node would read and throw away the rest of a body of any size before the
 * connection could serve its next request.
 */
function closeUnlessRead(
  req: FastifyRequest,
  reply: FastifyReply,
  payload: unknown,
  done: (err: null, payload: unknown) => void,
) {
  if (!req.raw.complete) reply.header('connection', 'close')
  done(null, payload)
}

const LISTEN_DOC: RouteDoc = {
  summary: 'Transcribes recorded audio (`usage:write`, keys or grant tokens)',
  description:
    'The body is the audio under any content type but JSON (docs/deepgram-compat.md §0 #6), or JSON ' +
    '`{"url"}` naming where to fetch it (from `EARMARK_FETCH_ALLOWED_HOSTS` only). Upload limits: ' +
    'docs/speech.md, "Pre-recorded limits".',
  tags: ['listen'],
  security: TOKEN_OR_BEARER,
  querystring: listenQueryDoc('prerecorded'),
  consumes: ['application/octet-stream', 'audio/*', 'application/json'],
  body: {
    description: 'The audio, or `{"url": "…"}` with `Content-Type: application/json`.',
    oneOf: [
      { type: 'string', contentEncoding: 'binary' },
      { type: 'object', required: ['url'], properties: { url: { type: 'string', format: 'uri' } } },
    ],
  },
  response: {
    200: {
      description: "Deepgram's pre-recorded answer (docs/deepgram-compat.md §6).",
      type: 'object',
      required: ['metadata', 'results'],
      properties: {
        metadata: {
          type: 'object',
          properties: {
            transaction_key: { type: 'string' },
            request_id: { type: 'string' },
            sha256: { type: 'string' },
            created: { type: 'string', format: 'date-time' },
            duration: { type: 'number' },
            channels: { type: 'integer' },
            models: { type: 'array', items: { type: 'string' } },
            model_info: { type: 'object' },
          },
        },
        results: {
          type: 'object',
          properties: {
            channels: { type: 'array', items: { type: 'object' } },
            utterances: { type: 'array', items: { type: 'object' } },
          },
        },
      },
    },
    ...errorResponses(...MANAGEMENT_ERRORS, 408, ...BODY_ERRORS, 500, 504),
  },
}

/** `POST /v1/listen` (docs/deepgram-compat.md §6): raw audio of any content type, or JSON `{"url"}`. */
export function listenRoutes(app: FastifyInstance, deps: RouteDeps & ListenRouteOptions): void {
  const { services, engines, limits } = deps
  const listen = createListenUseCase({
    services,
    engines,
    ...(limits.share ? { share: limits.share } : {}),
    ...(limits.quotas ? { quotas: limits.quotas } : {}),
    ...(limits.projectEngines ? { projectEngines: limits.projectEngines } : {}),
    ...(limits.observer ? { observer: limits.observer } : {}),
  })
  const { usage } = authHooks(deps)
  const uploadDir = limits.uploadDir ?? mkdtempSync(join(tmpdir(), 'earmark-uploads-'))
  if (limits.uploadDir) {
    app.addHook('onReady', async () => {
      const removed = await sweepSpoolDir(uploadDir)
      if (removed > 0) app.log.warn({ removed }, 'removed upload files left by an earlier run')
    })
  }
  /** Requests in progress: aborted when the server shuts down, so a long decode does not hold it. */
  const inFlight = new Set<AbortController>()
  app.addHook('preClose', async () => {
    for (const ac of inFlight) ac.abort(new ApiError('SERVICE_UNAVAILABLE'))
  })
  app.addHook('onClose', async () => {
    if (!limits.uploadDir) rmSync(uploadDir, { recursive: true, force: true })
  })
  let uploads = 0
  const tooLong = () => audioTooLong(limits.maxAudioSeconds)

  /** Refuses an oversize body from its Content-Length, before a byte of it is read. */
  function refuseOversize(req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) {
    if (Number(req.headers['content-length']) > deps.maxUploadBytes) {
      done(new ApiError('PAYLOAD_TOO_LARGE', tooLarge(deps.maxUploadBytes)))
      return
    }
    done()
  }

  app.register(async (scope) => {
    // Everything but JSON is media (docs/deepgram-compat.md §0 #6): hand the handler the unread stream.
    scope.addContentTypeParser('*', (_req: FastifyRequest, payload: Readable, done) => done(null, payload))
    scope.post<{ Querystring: Record<string, string | string[]> }>(
      '/v1/listen',
      {
        onRequest: [refuseOversize, usage],
        onSend: closeUnlessRead,
        bodyLimit: JSON_BODY_LIMIT,
        ...documented(LISTEN_DOC),
      },
      async (req, reply) => {
        const principal = principalOf(req)
        requireScope(principal, 'usage:write')
        const request: ListenRequest = {
          transport: 'prerecorded',
          principal,
          query: req.query,
          access: req.access ?? undefined,
          requestId: req.id,
          path: '/v1/listen',
        }
        const plan = await listen.plan(request)
        const { options, audio, engine } = plan
        const isJson = (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/json')
        const url = isJson ? bodyObject(req).url : undefined
        // Quota, then this route's bound on uploads at once, then the key's share, claimed before the body
        // is read, so a key at its share pays nothing for the refusal.
        const claim = await listen.admit(request, plan, {
          refusal: () =>
            uploads >= limits.maxUploads
              ? new ApiError(
                  'TOO_MANY_REQUESTS',
                  'Too many uploads are arriving at once. Please try again later',
                )
              : undefined,
        })
        const { quota } = claim
        uploads++
        let uploading = true
        const ac = new AbortController()
        inFlight.add(ac)
        const onClose = () => {
          if (!reply.raw.writableFinished) ac.abort(new ClientGone('The client closed the request.'))
        }
        reply.raw.on('close', onClose)
        let spool: SpooledUpload | undefined
        /** Audio seconds metered: decoded PCM, or relayed bytes (docs/gateway.md "Metering"). */
        let seconds = 0
        let status = 500
        let detail: string | null = 'INTERNAL_ERROR'
        try {
          const record = await claim.startUsage()
          try {
            spool = await spoolUpload(isJson ? fetchAudio(url, deps.fetch, ac.signal) : uploadBody(req), {
              dir: uploadDir,
              maxBytes: deps.maxUploadBytes,
              // A fetch keeps its own (documented) deadlines.
              idleTimeoutMs: isJson ? deps.fetch.timeoutMs + 1000 : limits.uploadIdleTimeoutMs,
              signal: ac.signal,
            })
          } finally {
            uploads--
            uploading = false
          }
          const known = knownDuration(spool.head, spool.bytes, audio.format)
          if (known !== undefined && known > limits.maxAudioSeconds) throw tooLong()
          // Longer than what the quotas leave: refused before decoding, nothing billed (docs/quotas.md).
          if (quota && known !== undefined && known > quota.remaining()) throw quota.refuse(known)
          if (isRelayEngine(engine)) {
            // A gateway relays the bytes as they came, under its own key (docs/gateway.md).
            const relayed = await engine.transcribe({
              query: rawQuery(req.url),
              contentType: isJson ? 'application/octet-stream' : mediaType(req),
              body: spool.chunks(),
              bytes: spool.bytes,
              requestId: req.id,
              signal: ac.signal,
            })
            req.log.info(
              { request_id: req.id, upstream_request_id: relayed.upstreamRequestId },
              'relayed request answered',
            )
            // Metered from the bytes when their layout tells the length, else from the far end's answer.
            seconds = known ?? relayed.reportedSeconds ?? 0
            if (quota && quota.take(seconds) < seconds) quota.exhausted(seconds)
            status = 200
            detail = null
            // Returned, not sent: the answer goes once the usage record is written (the `finally` below).
            reply.type(relayed.contentType)
            return relayed.body
          }
          const pcmRate = engine.sampleRate
          // Lazy: no file is opened and no ffmpeg started before the engine pulls, i.e. holds a decoder.
          // Decoded (and resampled) to the rate of the engine that serves the request's model.
          const result = await transcribeRecording({
            options,
            audio,
            engine,
            chunks: spool.chunks(),
            maxAudioSeconds: limits.maxAudioSeconds,
            admission: { waitMs: deps.capacityWaitMs, maxQueue: limits.maxQueue, signal: ac.signal },
            // Decoding stops at what the quotas leave; the request is then refused (docs/quotas.md).
            ...(quota ? { through: (pcm) => withinQuota(pcm, quota, pcmRate) } : {}),
            onSamples: (n) => {
              seconds += n / pcmRate
            },
          })
          const body = prerecordedResponse(result.utterances, {
            requestId: req.id,
            engine,
            sha256: spool.sha256,
            created: new Date(record.startedAt).toISOString(),
            duration: result.duration,
            options,
          })
          status = 200
          detail = null
          return body
        } catch (err) {
          const mapped = mapError(err)
          if (err instanceof ClientGone) {
            // Nginx's 499 "client closed request": no answer was sent, the record says why.
            status = 499
            detail = 'CLIENT_CLOSED'
          } else {
            status = mapped instanceof ApiError ? mapped.status : 500
            detail = mapped instanceof ApiError ? mapped.code : 'INTERNAL_ERROR'
          }
          // Stopped by a shutdown: a kept-alive connection would otherwise hold the server's close for the
          // keep-alive timeout, since the server let go of idle connections before this one became idle.
          if (ac.signal.aborted) reply.header('connection', 'close')
          throw mapped
        } finally {
          claim.releaseShare()
          reply.raw.off('close', onClose)
          inFlight.delete(ac)
          if (uploading) uploads--
          await spool?.remove()
          await claim.finish({ audioSeconds: seconds, status, detail })
        }
      },
    )
  })

  function mapError(err: unknown): unknown {
    if (err instanceof ClientGone) return new ApiError('BAD_REQUEST', err.message)
    return listen.toApiError(err, tooLong)
  }
}
