import type { IncomingMessage } from 'node:http'
import { ApiError } from '../errors.js'

/** The one WebSocket version Earmark speaks (RFC 6455). */
export const WEBSOCKET_VERSION = '13'

/** A handshake refused before anything else is looked at: the error, and headers the answer must carry. */
export interface HandshakeRefusal {
  error: ApiError
  headers: Record<string, string>
}

/** base64 of 16 bytes: 22 characters, the last of which carries only 2 bits, then `==` (RFC 6455 §4.1). */
const KEY = /^[A-Za-z0-9+/]{21}[AQgw]==$/
/** An RFC 7230 token: what a subprotocol name must be. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/**
 * The subprotocols a client offered, in order, or null when the header is not a list of distinct tokens
 * (which `ws` would refuse after Earmark had already claimed resources for the stream).
 */
export function offeredProtocols(header: string | undefined): string[] | null {
  if (header === undefined) return []
  const names = header.split(',').map((p) => p.replace(/^[ \t]+|[ \t]+$/g, ''))
  if (names.some((n) => !TOKEN.test(n))) return null
  return new Set(names).size === names.length ? names : null
}

function headerList(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v.length > 0)
}

/**
 * Checks an opening handshake the way `ws` will (method, `Upgrade`, `Connection`, key, version, protocol
 * list), so that every handshake `ws` would refuse is refused here first, before any credential is looked
 * up or any resource claimed. Returns null when the handshake is sound.
 */
export function checkHandshake(req: IncomingMessage): HandshakeRefusal | null {
  const refuse = (error: ApiError, headers: Record<string, string> = {}) => ({ error, headers })
  if (req.method !== 'GET') {
    return refuse(new ApiError('METHOD_NOT_ALLOWED', 'A WebSocket upgrade must be a GET.'), { allow: 'GET' })
  }
  // Exactly `websocket`, as ws insists: a list such as `websocket, h2c` is refused too.
  if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
    return refuse(new ApiError('BAD_REQUEST', 'Invalid Upgrade header: expected websocket.'))
  }
  if (!headerList(req.headers.connection).includes('upgrade')) {
    return refuse(new ApiError('BAD_REQUEST', 'Invalid Connection header: expected upgrade.'))
  }
  const key = req.headers['sec-websocket-key']
  if (typeof key !== 'string' || !KEY.test(key)) {
    return refuse(
      new ApiError(
        'BAD_REQUEST',
        'Missing or invalid Sec-WebSocket-Key header: expected 16 bytes in base64.',
      ),
    )
  }
  if (req.headers['sec-websocket-version'] !== WEBSOCKET_VERSION) {
    return refuse(new ApiError('UPGRADE_REQUIRED'), { 'sec-websocket-version': WEBSOCKET_VERSION })
  }
  if (offeredProtocols(req.headers['sec-websocket-protocol']) === null) {
    return refuse(new ApiError('BAD_REQUEST', 'Invalid Sec-WebSocket-Protocol header.'))
  }
  return null
}
