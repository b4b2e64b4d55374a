import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Credentials } from './credentials.js'
import { AppKitError, errorBody, headerText, toAppKitError } from './errors.js'

/** Largest JSON body the kit reads, bytes. */
export const MAX_BODY_BYTES = 16 * 1024

/** The credential routes, relative to the prefix: `[method, pattern]`. */
const ROUTES = {
  key: { path: /^\/key$/, method: 'POST' },
  deleteKey: { path: /^\/key\/([^/]+)$/, method: 'DELETE' },
  token: { path: /^\/token$/, method: 'POST' },
  listen: { path: /^\/listen$/, method: 'GET' },
} as const

/** Reads a small JSON body; an empty body is `{}` (as Earmark does, docs/deepgram-compat.md §0 #4). */
export async function readJsonBody(req: IncomingMessage, limit = MAX_BODY_BYTES): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? Number.NaN)
  if (Number.isFinite(declared) && declared > limit) throw new AppKitError('PAYLOAD_TOO_LARGE')
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buf = chunk as Buffer
    size += buf.length
    if (size > limit) throw new AppKitError('PAYLOAD_TOO_LARGE')
    parts.push(buf)
  }
  return parseJsonBody(Buffer.concat(parts).toString('utf8'), req.headers['content-type'])
}

/**
 * An empty body is `{}`. A non-empty one must be declared JSON: a cross-site HTML form cannot send
 * `application/json` without a CORS preflight, so this also keeps forms from minting credentials.
 */
export function parseJsonBody(text: string, contentType: string | undefined): unknown {
  if (text.trim() === '') return {}
  if (!/^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(contentType ?? '')) {
    throw new AppKitError('UNSUPPORTED_MEDIA_TYPE')
  }
  try {
    return JSON.parse(text) as unknown
  } catch {
    throw new AppKitError('INVALID_JSON')
  }
}

/** Writes a JSON answer. Credentials must never be cached by a browser or a proxy in between. */
export function sendJson(res: ServerResponse, status: number, body: unknown, requestId: string): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    'dg-request-id': requestId,
  })
  res.end(text)
}

/** Writes a Deepgram-shaped error. */
export function sendError(
  res: ServerResponse,
  err: unknown,
  requestId: string,
  headers: Record<string, string> = {},
): void {
  const e = toAppKitError(err)
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  res.setHeader('dg-error', headerText(e.message))
  sendJson(res, e.status, errorBody(e, requestId), requestId)
}

function keyIdOf(rest: string): string {
  try {
    return decodeURIComponent(ROUTES.deleteKey.path.exec(rest)?.[1] ?? '')
  } catch {
    throw new AppKitError('KEY_NOT_FOUND')
  }
}

/** The `handleRequest` of {@link AppKit}: the credential routes on a plain Node HTTP server. */
export function createHttpHandler(prefix: string, credentials: Credentials) {
  return async function handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const pathname = new URL(req.url ?? '/', 'http://localhost').pathname
    if (pathname !== prefix && !pathname.startsWith(`${prefix}/`)) return false
    // Preflights are the app's CORS policy to answer, not the kit's.
    if (req.method === 'OPTIONS') return false
    const rest = pathname.slice(prefix.length)
    const requestId = randomUUID()
    const route = Object.values(ROUTES).find((r) => r.path.test(rest))
    if (!route) {
      sendError(res, new AppKitError('NOT_FOUND'), requestId)
      return true
    }
    if (req.method !== route.method) {
      sendError(res, new AppKitError('METHOD_NOT_ALLOWED'), requestId, { allow: route.method })
      return true
    }
    try {
      if (route === ROUTES.listen) {
        sendError(res, new AppKitError('UPGRADE_REQUIRED'), requestId, { upgrade: 'websocket' })
        return true
      }
      const endUser = await credentials.identify(req)
      let answer: unknown
      if (route === ROUTES.key) {
        answer = await credentials.createKey(endUser)
      } else if (route === ROUTES.token) {
        answer = await credentials.createToken(endUser, await readJsonBody(req))
      } else {
        answer = await credentials.deleteKey(endUser, keyIdOf(rest))
      }
      sendJson(res, 200, answer, requestId)
    } catch (err) {
      if (!res.headersSent) sendError(res, err, requestId)
      else res.destroy()
    }
    return true
  }
}
