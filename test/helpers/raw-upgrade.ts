import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'

/** A valid `Sec-WebSocket-Key`: base64 of 16 random bytes. */
export function websocketKey(): string {
  return randomBytes(16).toString('base64')
}

/** The headers of a sound WebSocket opening handshake (RFC 6455 §4.1), without credentials. */
export function handshakeHeaders(): Record<string, string> {
  return {
    host: '127.0.0.1',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': websocketKey(),
    'sec-websocket-version': '13',
  }
}

/** A request head as bytes: `headers` entries whose value is undefined are left out. */
export function requestHead(
  method: string,
  target: string,
  headers: Record<string, string | undefined>,
): string {
  const lines = Object.entries(headers)
    .filter((e): e is [string, string] => e[1] !== undefined)
    .map(([k, v]) => `${k}: ${v}`)
  return `${method} ${target} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`
}

/** What came back on a raw connection. */
export interface RawAnswer {
  /** 0 when no whole status line arrived. */
  status: number
  headers: Record<string, string>
  body: string
}

function parseAnswer(bytes: Buffer): RawAnswer {
  const text = bytes.toString('latin1')
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { status: 0, headers: {}, body: '' }
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n')
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  return { status: Number(statusLine.split(' ')[1] ?? 0), headers, body: text.slice(end + 4) }
}

/** Connects to 127.0.0.1:`port`. */
export function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket))
    socket.once('error', reject)
  })
}

/**
 * Writes `request` on a fresh connection and reads the answer: for a 101, up to the end of its head (the
 * socket is then destroyed, as a client that drops right after the upgrade would); otherwise until the
 * server closes or `timeoutMs` passes.
 */
export async function rawRequest(
  port: number,
  request: string | Buffer,
  timeoutMs = 5000,
): Promise<RawAnswer> {
  const socket = await rawConnect(port)
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const done = () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(parseAnswer(Buffer.concat(chunks)))
    }
    const timer = setTimeout(done, timeoutMs)
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      const answer = parseAnswer(Buffer.concat(chunks))
      if (answer.status === 101) done()
      const length = Number(answer.headers['content-length'] ?? Number.NaN)
      if (answer.status > 0 && Buffer.byteLength(answer.body, 'latin1') >= length) done()
    })
    socket.on('error', done)
    socket.on('close', done)
    socket.write(request)
  })
}

/**
 * Resolves once no upgrade is in flight, no socket holds a lease and every engine slot is free (releases
 * are asynchronous: ffmpeg has to exit, the usage record to be written); throws after `timeoutMs`.
 */
export async function socketsReleased(
  earmark: { engine: { inUse(): number }; sockets: { readonly active: number } },
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (earmark.engine.inUse() !== 0 || earmark.sockets.active !== 0) {
    if (Date.now() > deadline) {
      throw new Error(`still held: ${earmark.engine.inUse()} engine slots, ${earmark.sockets.active} sockets`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
}
