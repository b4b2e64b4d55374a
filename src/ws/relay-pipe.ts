import { type RawData, WebSocket } from 'ws'

/** While a side is not read, it is pinged this often, so a peer that left is noticed. */
const PAUSED_PROBE_MS = 1000
const MAX_REASON_BYTES = 123

/** Close codes a WebSocket endpoint may put in a close frame (RFC 6455 §7.4, as ws checks them). */
export function sendableCloseCode(code: number): boolean {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  )
}

/** At most 123 bytes of UTF-8 (a close frame's reason limit), cut on a character boundary. */
export function closeReasonText(text: string): string {
  let out = text
  while (Buffer.byteLength(out) > MAX_REASON_BYTES) out = out.slice(0, -1)
  return out
}

/** How one direction of a relay treats the frames it carries. */
export interface PipeOptions {
  /** Above this many bytes queued for `to`, `from` is not read until `to` drained to half of it. */
  maxBuffered: number
  /**
   * Sees every frame before it is sent: returns the frame to send (as is, or rewritten), or undefined to
   * drop it. Absent: every frame passes unchanged.
   */
  frame?: (data: Buffer, isBinary: boolean) => Buffer | string | undefined
}

/**
 * Relays every frame of `from` to `to`, in order and with its type (the app kit's proxy and the upstream
 * engine's gateway both relay this way). Back-pressure: once more than `maxBuffered` bytes wait to be sent
 * to `to`, `from` is not read (TCP pushes back on its sender) until `to` drained to half of that.
 */
export function pipeFrames(from: WebSocket, to: WebSocket, o: PipeOptions): void {
  const max = o.maxBuffered
  let paused = false
  let probe: NodeJS.Timeout | undefined
  const drained = () => {
    if (paused && to.bufferedAmount <= max / 2) {
      paused = false
      clearInterval(probe)
      from.resume()
    }
  }
  from.on('message', (data: RawData, isBinary) => {
    if (to.readyState !== WebSocket.OPEN) return
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
    const out = o.frame ? o.frame(buf, isBinary) : buf
    if (out === undefined) return
    to.send(out, { binary: isBinary }, drained)
    if (!paused && to.bufferedAmount > max) {
      paused = true
      from.pause()
      // A socket that is not read never reports its peer leaving; writing to it does (EPIPE, ECONNRESET).
      probe = setInterval(() => {
        if (from.readyState === WebSocket.OPEN) from.ping()
      }, PAUSED_PROBE_MS)
      probe.unref()
    }
  })
  from.on('close', () => clearInterval(probe))
}
