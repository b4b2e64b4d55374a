import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { headerSafe } from '../http/header-value.js'

/** Deepgram's error body (docs/deepgram-compat.md §5), as a refused upgrade carries it. */
export interface UpgradeRefusal {
  status: number
  err_code: string
  err_msg: string
  request_id: string
}

/** How long a refused client gets to read the answer before its socket is destroyed, ms. */
export const REFUSAL_LINGER_MS = 2000

/**
 * Writes a Deepgram-shaped HTTP error in place of the 101 (docs/deepgram-compat.md §7.1, "Upgrade outcome"):
 * the body `{err_code, err_msg, request_id}`, `dg-request-id`, `x-request-id` (where SDK v5 reads it) and a
 * header-safe `dg-error`, then closes. Used by every WebSocket route Earmark serves and by the app kit's
 * proxy, so a browser sees one refusal shape whichever it reached. Dependency-free on purpose: the app kit
 * imports it without the server.
 */
export function refuseUpgrade(
  socket: Duplex,
  refusal: UpgradeRefusal,
  headers: Record<string, string> = {},
  lingerMs = REFUSAL_LINGER_MS,
): void {
  if (socket.destroyed) return
  const { status, ...fields } = refusal
  const body = JSON.stringify(fields)
  const id = headerSafe(refusal.request_id)
  const all: Record<string, string> = {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
    'cache-control': 'no-store',
    'dg-request-id': id,
    'x-request-id': id,
    'dg-error': headerSafe(refusal.err_msg),
    connection: 'close',
    ...headers,
  }
  const head = Object.entries(all)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\r\n')
  // Whatever the client sends after its request is read and dropped, so the close is a FIN, not a reset
  // that could destroy the answer before the client reads it; a client that never closes is cut.
  socket.resume()
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${head}\r\n\r\n${body}`)
  setTimeout(() => socket.destroy(), lingerMs).unref()
}
