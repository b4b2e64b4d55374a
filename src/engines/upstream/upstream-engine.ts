import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { WebSocket } from 'ws'
import {
  EngineBusyError,
  type RelayEngine,
  RelayError,
  type RelayResponse,
  type RelayStream,
} from '../engine.js'

/** How Earmark reaches the upstream service (docs/gateway.md). */
export interface UpstreamEngineOptions {
  /** The service's base URL: `https://api.deepgram.com`, `http://10.0.0.5:8080`, with a path prefix if any. */
  url: string
  /** The server-held key. It goes only into the `Authorization` header upstream: never a log, URL or answer. */
  key: string
  /** How the key is presented: `Token <key>` (an API key, the default) or `Bearer <jwt>`. */
  scheme?: 'token' | 'bearer'
  /** Relayed streams and requests at once. */
  capacity: number
  /** The upstream's connection and WebSocket handshake, ms. Default 10 s. */
  connectTimeoutMs?: number
  /** A pre-recorded request's whole answer, ms. Default 10 min. */
  responseTimeoutMs?: number
  /** Largest pre-recorded answer taken from upstream, bytes. Default 64 MiB. */
  maxResponseBytes?: number
  /** Largest WebSocket frame taken from upstream, bytes. Default 4 MiB. */
  maxPayload?: number
  /** After a close frame, how long the upstream gets to answer before its socket is cut, ms. Default 5 s. */
  closeGraceMs?: number
}

/** The name `EARMARK_ENGINE` and the logs use. */
export const UPSTREAM_ENGINE_NAME = 'upstream'

const MAX_ERROR_BODY = 16 * 1024

/** `base` + `/v1/listen` + `?query`, as http(s) or ws(s). */
function listenUrl(base: URL, query: string, socket: boolean): URL {
  const url = new URL(base.href)
  url.pathname = `${base.pathname.replace(/\/+$/, '')}/v1/listen`
  url.search = query === '' ? '' : `?${query}`
  url.hash = ''
  if (socket) url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url
}

/** Replaces every occurrence of `from` in `text` (the upstream's request id, which is a UUID) by `to`. */
function mapId(data: Buffer, from: string | undefined, to: string): Buffer {
  if (!from || from === to || data.indexOf(from) < 0) return data
  return Buffer.from(data.toString('utf8').split(from).join(to), 'utf8')
}

function header(res: IncomingMessage, name: string): string | undefined {
  const v = res.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/** Reads at most `max` bytes of `res`; more is an error (the far end is not answering as a speech API would). */
async function readAll(res: IncomingMessage, max: number): Promise<Buffer> {
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > max) {
      res.destroy()
      throw new RelayError(502, 'The upstream speech service answered more than this server accepts.')
    }
    parts.push(chunk)
  }
  return Buffer.concat(parts)
}

/** The error fields of a Deepgram-shaped body, if it is one. */
function errorFields(body: Buffer): { errCode?: string; errMsg?: string } {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as unknown
    if (typeof parsed !== 'object' || parsed === null) return {}
    const b = parsed as Record<string, unknown>
    return {
      ...(typeof b.err_code === 'string' ? { errCode: b.err_code } : {}),
      ...(typeof b.err_msg === 'string' ? { errMsg: b.err_msg } : {}),
    }
  } catch {
    return {}
  }
}

/** `metadata.duration` of a pre-recorded answer (docs/deepgram-compat.md §6), if it states one. */
function reportedDuration(body: Buffer): number | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { metadata?: { duration?: unknown } }
    const d = parsed?.metadata?.duration
    return typeof d === 'number' && Number.isFinite(d) && d >= 0 ? d : undefined
  } catch {
    return undefined
  }
}

/**
 * What the client may learn of an upstream refusal. A 401 or 403 is about the server-held key, and a 5xx
 * about the service: neither is the client's doing, so both are a 502 that names no upstream detail. Any
 * other 4xx (bad audio, a model the service lacks, its own 429) is about the request and is passed on.
 */
function refusal(status: number, body: Buffer, retryAfter: string | undefined, scrub: (s: string) => string) {
  if (status === 401 || status === 403) {
    return new RelayError(502, "The upstream speech service refused this server's credentials.")
  }
  if (status === 503 || status === 429) {
    return new RelayError(status, 'The upstream speech service is busy. Please try again later', {
      ...(retryAfter ? { retryAfter } : {}),
    })
  }
  if (status >= 400 && status < 500) {
    const { errCode, errMsg } = errorFields(body)
    return new RelayError(
      status,
      scrub(errMsg ?? `The upstream speech service refused the request (${status}).`),
      {
        ...(errCode ? { errCode: scrub(errCode) } : {}),
      },
    )
  }
  return new RelayError(502, `The upstream speech service failed (${status}).`)
}

/**
 * The upstream engine: Earmark as a credential gateway to any Deepgram-compatible service. Clients
 * authenticate with Earmark's own keys and tokens; what they send then goes upstream unchanged, under the
 * server-held key, and what comes back reaches them unchanged but for the request id, which is Earmark's
 * (docs/gateway.md). Nothing is decoded here: capacity is a count of relayed streams and requests.
 */
export function createUpstreamEngine(o: UpstreamEngineOptions): RelayEngine {
  let base: URL
  try {
    base = new URL(o.url)
  } catch {
    throw new RangeError('The upstream URL is not a URL.')
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(base.protocol)) {
    throw new RangeError('The upstream URL must be http(s) or ws(s).')
  }
  if (base.username || base.password || base.search) {
    throw new RangeError('The upstream URL must not hold credentials or a query.')
  }
  if (base.protocol === 'ws:') base.protocol = 'http:'
  if (base.protocol === 'wss:') base.protocol = 'https:'
  if (o.key.length === 0) throw new RangeError('The upstream key is empty.')
  const tls = base.protocol === 'https:'
  const authorization = `${o.scheme === 'bearer' ? 'Bearer' : 'Token'} ${o.key}`
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000
  const responseTimeoutMs = o.responseTimeoutMs ?? 600_000
  const maxResponseBytes = o.maxResponseBytes ?? 64 * 1024 * 1024
  const closeGraceMs = o.closeGraceMs ?? 5000
  // Kept-alive connections: a relayed request pays no TCP (or TLS) handshake of its own.
  const agent = tls ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true })
  const sockets = new Set<WebSocket>()
  const requests = new Set<AbortController>()
  let running = 0
  let closed = false
  /** Whatever the far end writes back never carries the server-held key on to the client. */
  const scrub = (text: string) => (text.includes(o.key) ? text.split(o.key).join('[redacted]') : text)

  const take = () => {
    if (closed) throw new RelayError(503, 'The server is shutting down.')
    if (running >= o.capacity) throw new EngineBusyError()
    running++
    let held = true
    return () => {
      if (held) running--
      held = false
    }
  }

  return {
    kind: 'relay',
    name: UPSTREAM_ENGINE_NAME,
    capacity: o.capacity,
    inUse: () => running,

    async transcribe(r) {
      const release = take()
      const ac = new AbortController()
      requests.add(ac)
      const onAbort = () => ac.abort(r.signal.reason)
      r.signal.addEventListener('abort', onAbort)
      if (r.signal.aborted) onAbort()
      const timer = setTimeout(
        () => ac.abort(new RelayError(504, 'The upstream speech service took too long to answer.')),
        responseTimeoutMs,
      )
      try {
        const res = await new Promise<IncomingMessage>((resolve, reject) => {
          const req = (tls ? httpsRequest : httpRequest)(listenUrl(base, r.query, false), {
            method: 'POST',
            agent,
            signal: ac.signal,
            headers: {
              authorization,
              'content-type': r.contentType,
              'content-length': String(r.bytes),
            },
          })
          req.once('response', resolve)
          req.once('error', (err) => reject(ac.signal.aborted ? ac.signal.reason : err))
          // A far end that never connects: the connect deadline, not the whole answer's.
          req.setTimeout(connectTimeoutMs, () =>
            req.destroy(new RelayError(504, 'The upstream speech service did not answer in time.')),
          )
          req.once('socket', (socket) => {
            socket.once('connect', () => req.setTimeout(0))
            if (!socket.connecting) req.setTimeout(0)
          })
          pipeline(Readable.from(r.body), req).catch((err: unknown) => {
            reject(ac.signal.aborted ? ac.signal.reason : err)
          })
        })
        const upstreamRequestId = header(res, 'dg-request-id')
        const body = mapId(await readAll(res, maxResponseBytes), upstreamRequestId, r.requestId)
        const status = res.statusCode ?? 502
        const retryAfter = header(res, 'retry-after')
        if (status !== 200) throw refusal(status, body, retryAfter, scrub)
        const response: RelayResponse = {
          status,
          body,
          contentType: header(res, 'content-type') ?? 'application/json',
          upstreamRequestId,
          reportedSeconds: reportedDuration(body),
          retryAfter,
        }
        return response
      } catch (err) {
        if (err instanceof RelayError || err instanceof EngineBusyError) throw err
        if (r.signal.aborted) throw r.signal.reason
        if (ac.signal.aborted) throw ac.signal.reason
        throw new RelayError(502, 'The upstream speech service could not be reached.')
      } finally {
        clearTimeout(timer)
        r.signal.removeEventListener('abort', onAbort)
        requests.delete(ac)
        release()
      }
    },

    async openStream(r) {
      const release = take()
      const socket = new WebSocket(listenUrl(base, r.query, true), {
        headers: { authorization },
        perMessageDeflate: false,
        maxPayload: o.maxPayload ?? 4 * 1024 * 1024,
        handshakeTimeout: connectTimeoutMs,
      })
      sockets.add(socket)
      socket.once('close', () => {
        sockets.delete(socket)
        release()
      })
      let upstreamRequestId: string | undefined
      try {
        await new Promise<void>((resolve, reject) => {
          socket.once('upgrade', (res) => {
            upstreamRequestId = header(res, 'dg-request-id')
          })
          socket.once('open', () => {
            // Its first frames may share a TCP read with the 101: held until the relay is wired.
            socket.pause()
            resolve()
          })
          socket.once('unexpected-response', (_req, res) => {
            const retryAfter = header(res, 'retry-after')
            readAll(res, MAX_ERROR_BODY)
              .catch(() => Buffer.alloc(0))
              .then((body) => {
                reject(refusal(res.statusCode ?? 502, body, retryAfter, scrub))
                socket.terminate()
              })
          })
          socket.once('error', (err) => {
            const timedOut = /timed out/i.test(err.message)
            reject(
              new RelayError(
                timedOut ? 504 : 502,
                timedOut
                  ? 'The upstream speech service did not answer in time.'
                  : 'The upstream speech service could not be reached.',
              ),
            )
          })
          socket.once('close', () =>
            reject(new RelayError(502, 'The upstream speech service closed the connection.')),
          )
        })
      } catch (err) {
        socket.terminate()
        throw err
      }
      socket.on('error', () => {
        // 'close' follows; the relay reads the code there.
      })
      const id = upstreamRequestId
      const stream: RelayStream = {
        upstreamRequestId: id,
        socket,
        mapFrame: (data, isBinary) => (isBinary ? data : mapId(data, id, r.requestId)),
        close(code, reason) {
          if (socket.readyState === WebSocket.CLOSED) return
          if (socket.readyState === WebSocket.OPEN) {
            socket.resume()
            if (code === undefined) socket.close()
            else socket.close(code, reason)
          }
          setTimeout(() => socket.terminate(), closeGraceMs).unref()
        },
      }
      return stream
    },

    async close() {
      closed = true
      for (const ac of requests) ac.abort(new RelayError(503, 'The server is shutting down.'))
      const open = [...sockets]
      for (const s of open) s.terminate()
      await Promise.all(
        open.map((s) =>
          s.readyState === WebSocket.CLOSED
            ? undefined
            : new Promise<void>((resolve) => s.once('close', () => resolve())),
        ),
      )
      agent.destroy()
    },
  }
}
