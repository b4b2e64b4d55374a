import { randomUUID } from 'node:crypto'
import { type IncomingMessage, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { WebSocketServer } from 'ws'
import { type AudioDecoder, createAudioDecoder, parseAudioOptions } from '../audio/index.js'
import type { Authenticator, Principal, Scheme } from '../auth/index.js'
import { parseAuthorization } from '../auth/index.js'
import { type Engine, EngineBusyError, EngineOptionError } from '../engines/index.js'
import { ApiError, invalidField } from '../errors.js'
import { parseListenOptions } from '../listen/index.js'
import { finishUsage, requireScope, type Services, startUsage } from '../projects/index.js'
import { createListenSession, DEFAULT_SESSION_LIMITS, type SessionLimits } from './listen-session.js'

export interface ListenSocketOptions {
  services: Services
  authenticator: Authenticator
  engine: Engine
  limits?: Partial<SessionLimits>
  /** Largest single WebSocket message, bytes. */
  maxPayload?: number
}

/**
 * Credentials of an upgrade: the `Authorization` header, else the subprotocol pair `token, <key>` /
 * `bearer, <jwt>` (deepgram-api.md §0 #1-2, §1.1). Returns the subprotocol to echo, never the secret.
 */
export function upgradeCredentials(
  req: IncomingMessage,
): { scheme: Scheme; secret: string; protocol: string | undefined } | undefined {
  const offered = (req.headers['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
  const first = offered[0]?.toLowerCase()
  const fromHeader = parseAuthorization(req.headers.authorization)
  if (fromHeader) {
    // A client that also offers protocols must get one back; echo the scheme name only.
    const protocol = first === 'token' || first === 'bearer' ? offered[0] : undefined
    return { ...fromHeader, protocol }
  }
  if ((first === 'token' || first === 'bearer') && offered[1]) {
    return { scheme: first, secret: offered[1], protocol: offered[0] }
  }
  return undefined
}

/** Writes an HTTP error in place of the 101 (deepgram-api.md §7 "Upgrade outcome") and drops the socket. */
function rejectUpgrade(
  socket: Duplex,
  err: ApiError,
  requestId: string,
  extra: Record<string, string> = {},
): void {
  const body = JSON.stringify({ err_code: err.code, err_msg: err.message, request_id: requestId })
  const reason = STATUS_CODES[err.status] ?? 'Error'
  const headers = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'dg-request-id': requestId,
    'x-request-id': requestId,
    'dg-error': err.message.replace(/[^\x20-\x7e]/g, ''),
    connection: 'close',
    ...extra,
  }
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')
  socket.end(`HTTP/1.1 ${err.status} ${reason}\r\n${head}\r\n\r\n${body}`)
}

/** Serves `GET /v1/listen` upgrades on the app's HTTP server. Credentials are checked here only. */
export function attachListenSocket(app: FastifyInstance, o: ListenSocketOptions): WebSocketServer {
  const limits = { ...DEFAULT_SESSION_LIMITS, ...o.limits }
  const chosen = new WeakMap<IncomingMessage, string | undefined>()
  const requestIds = new WeakMap<IncomingMessage, string>()
  /** Set once the app starts closing (see the preClose hook below). */
  let closing = false
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxPayload ?? 4 * 1024 * 1024,
    perMessageDeflate: false,
    handleProtocols: (_protocols, req) => chosen.get(req) ?? false,
  })
  const log = app.log

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname !== '/v1/listen') throw new ApiError('NOT_FOUND')
    const credentials = upgradeCredentials(req)
    if (!credentials) throw new ApiError('INVALID_AUTH')
    const principal: Principal = await o.authenticator.authenticate(credentials.scheme, credentials.secret)
    requireScope(principal, 'usage:write')
    const query: Record<string, string | string[]> = {}
    for (const key of new Set(url.searchParams.keys())) {
      const all = url.searchParams.getAll(key)
      query[key] = all.length === 1 ? (all[0] ?? '') : all
    }
    const options = parseListenOptions(query)
    if (options.callback) throw invalidField('callback', 'callbacks are not supported on live streams')
    const audio = parseAudioOptions(query)
    // Admission control: a stream that would push the engine past real time is refused here, so the
    // streams already open keep up.
    if (o.engine.inUse() >= o.engine.capacity) {
      throw new ApiError(
        'TOO_MANY_REQUESTS',
        `Speech capacity is full (${o.engine.capacity} concurrent streams); try again later.`,
      )
    }
    let usage: Awaited<ReturnType<typeof startUsage>> | undefined
    const session = createListenSession({
      requestId,
      engine: o.engine,
      options,
      limits,
      log,
      createDecoder: (): AudioDecoder => createAudioDecoder(audio),
      onEnd: ({ code, reason, audioSeconds }) => {
        if (usage) {
          void finishUsage(o.services, usage, { audioSeconds, status: code, detail: reason || null }).catch(
            (err) => log.error({ err, request_id: requestId }, 'could not record usage'),
          )
        }
        log.info(
          { request_id: requestId, code, audio_seconds: Math.round(audioSeconds * 100) / 100 },
          'stream closed',
        )
      },
    })
    try {
      await session.open()
    } catch (err) {
      if (err instanceof EngineBusyError) throw new ApiError('TOO_MANY_REQUESTS', err.message)
      if (err instanceof EngineOptionError) throw invalidField(err.field, err.message)
      throw err
    }
    if (socket.destroyed) {
      await session.abort()
      return
    }
    if (closing) {
      await session.abort()
      throw new ApiError('SERVICE_UNAVAILABLE')
    }
    usage = await startUsage(o.services, principal, {
      requestId,
      endpoint: 'listen',
      method: 'streaming',
      path: url.pathname,
      model: options.model,
      tags: options.tags,
    })
    chosen.set(req, credentials.protocol)
    wss.handleUpgrade(req, socket, head, (ws) => {
      session.attach(ws)
    })
  }

  // Every 101 carries the request id, like every HTTP response.
  wss.on('headers', (headers, req) => {
    const id = requestIds.get(req)
    if (id) headers.push(`dg-request-id: ${id}`)
  })

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const requestId = randomUUID()
    requestIds.set(req, requestId)
    upgrade(req, socket, head, requestId).catch((err: unknown) => {
      if (err instanceof ApiError) {
        rejectUpgrade(socket, err, requestId)
      } else {
        log.error({ err, request_id: requestId }, 'upgrade failed')
        rejectUpgrade(socket, new ApiError('INTERNAL_ERROR'), requestId)
      }
    })
  })
  // server.close() waits for every socket, upgraded ones included, so an open stream would hold app.close()
  // until its client stops sending (forever, for a steady client): end the streams before the server closes,
  // and refuse upgrades that complete from then on.
  app.addHook('preClose', async () => {
    closing = true
    for (const client of wss.clients) client.terminate()
  })
  app.addHook('onClose', async () => {
    for (const client of wss.clients) client.terminate()
    wss.close()
  })
  return wss
}
