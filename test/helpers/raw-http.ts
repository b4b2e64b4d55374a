import { connect, type Socket } from 'node:net'

/** A header as it goes on the wire: the value may be raw bytes (control characters, UTF-8, anything). */
export type RawHeader = [name: string, value: string | Buffer]

export interface RawRequest {
  method: string
  /** The request target exactly as written on the request line (no encoding is applied). */
  target: string | Buffer
  headers?: RawHeader[]
  body?: Buffer
  /** Give up after this long without a complete answer (default 15 s). */
  timeoutMs?: number
  /** Send the body with chunked transfer coding (in chunks of this many bytes) instead of Content-Length. */
  chunkBytes?: number
  /** Write only this many bytes of the request, then drop the connection (no answer is awaited). */
  dropAfterBytes?: number
}

/** What came back: `timedOut` when the server neither answered nor closed in time. */
export interface RawResponse {
  status: number
  headers: Record<string, string | string[]>
  /** The body, with chunked transfer coding removed. */
  body: Buffer
  timedOut: boolean
  /** The bytes as received, for reports. */
  raw: Buffer
}

/** Splits an HTTP/1.1 head (status line and headers) from what follows it; undefined until it is complete. */
export function parseHead(
  buf: Buffer,
): { status: number; headers: Record<string, string | string[]>; rest: Buffer } | undefined {
  const end = buf.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0)
  const headers: Record<string, string | string[]> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon < 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    const prior = headers[name]
    headers[name] = prior === undefined ? value : [...(Array.isArray(prior) ? prior : [prior]), value]
  }
  return { status, headers, rest: buf.subarray(end + 4) }
}

/** Removes chunked transfer coding; a truncated stream yields what arrived. */
export function dechunk(buf: Buffer): Buffer {
  const parts: Buffer[] = []
  let at = 0
  while (at < buf.length) {
    const eol = buf.indexOf('\r\n', at)
    if (eol < 0) break
    const size = Number.parseInt(buf.subarray(at, eol).toString('latin1'), 16)
    if (!Number.isFinite(size) || size === 0) break
    parts.push(buf.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(parts)
}

/** The request bytes: nothing is validated or encoded, so inputs node's own client refuses can be sent. */
export function encodeRequest(req: RawRequest, host: string): Buffer {
  const head: Buffer[] = [
    Buffer.from(`${req.method} `, 'latin1'),
    Buffer.isBuffer(req.target) ? req.target : Buffer.from(req.target, 'utf8'),
    Buffer.from(` HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n`, 'latin1'),
  ]
  for (const [name, value] of req.headers ?? []) {
    head.push(Buffer.from(`${name}: `, 'utf8'), Buffer.isBuffer(value) ? value : Buffer.from(value, 'utf8'))
    head.push(Buffer.from('\r\n', 'latin1'))
  }
  const chunk = req.chunkBytes
  if (req.body !== undefined && chunk) {
    head.push(Buffer.from('Transfer-Encoding: chunked\r\n\r\n', 'latin1'))
    for (let at = 0; at < req.body.length; at += chunk) {
      const part = req.body.subarray(at, at + chunk)
      head.push(Buffer.from(`${part.length.toString(16)}\r\n`, 'latin1'), part, Buffer.from('\r\n'))
    }
    head.push(Buffer.from('0\r\n\r\n', 'latin1'))
    return Buffer.concat(head)
  }
  if (req.body !== undefined) head.push(Buffer.from(`Content-Length: ${req.body.length}\r\n`, 'latin1'))
  head.push(Buffer.from('\r\n', 'latin1'))
  if (req.body !== undefined) head.push(req.body)
  return Buffer.concat(head)
}

/**
 * One request over a fresh loopback TCP connection with `Connection: close`, read until the server closes.
 * node's HTTP client refuses control characters, non-Latin-1 header values and malformed targets; this does not.
 */
export function rawRequest(port: number, req: RawRequest): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: '127.0.0.1', port })
    const chunks: Buffer[] = []
    let done = false
    const finish = (timedOut: boolean) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      const raw = Buffer.concat(chunks)
      const head = parseHead(raw)
      if (!head) {
        resolve({ status: 0, headers: {}, body: Buffer.alloc(0), timedOut, raw })
        return
      }
      const chunked = String(head.headers['transfer-encoding'] ?? '').toLowerCase() === 'chunked'
      const length = Number(head.headers['content-length'])
      const body = chunked
        ? dechunk(head.rest)
        : Number.isInteger(length)
          ? head.rest.subarray(0, length)
          : head.rest
      resolve({ status: head.status, headers: head.headers, body, timedOut, raw })
    }
    const timer = setTimeout(() => finish(true), req.timeoutMs ?? 15_000)
    socket.on('data', (d: Buffer) => chunks.push(d))
    socket.on('end', () => finish(false))
    socket.on('close', () => finish(false))
    // A reset after the answer was written is how some refusals end: keep what arrived.
    socket.on('error', () => finish(false))
    socket.on('connect', () => {
      const bytes = encodeRequest(req, `127.0.0.1:${port}`)
      if (req.dropAfterBytes === undefined) {
        socket.write(bytes)
        return
      }
      socket.write(bytes.subarray(0, req.dropAfterBytes), () => finish(false))
    })
  })
}
