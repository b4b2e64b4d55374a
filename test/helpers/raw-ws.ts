import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { encodeRequest, parseHead, type RawHeader } from './raw-http.js'

/** WebSocket opcodes (RFC 6455 §5.2). */
export const OP = { CONTINUATION: 0, TEXT: 1, BINARY: 2, CLOSE: 8, PING: 9, PONG: 10 } as const

export interface FrameOptions {
  fin?: boolean
  /** The three reserved bits, 0..7 (a client that sets them is breaking the protocol). */
  rsv?: number
  /** Clients must mask; false sends a protocol violation. */
  masked?: boolean
}

/** One frame as a client writes it: nothing is validated, so broken frames can be sent on purpose. */
export function encodeFrame(opcode: number, payload: Buffer, o: FrameOptions = {}): Buffer {
  const masked = o.masked ?? true
  const len = payload.length
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0))
  head[0] = ((o.fin ?? true) ? 0x80 : 0) | (((o.rsv ?? 0) & 7) << 4) | (opcode & 0x0f)
  head[1] = (masked ? 0x80 : 0) | (ext === 0 ? len : ext === 2 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(len, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(len), 2)
  if (!masked) return Buffer.concat([head, payload])
  const mask = randomBytes(4)
  mask.copy(head, 2 + ext)
  const body = Buffer.alloc(len)
  for (let i = 0; i < len; i++) body[i] = (payload[i] ?? 0) ^ (mask[i & 3] ?? 0)
  return Buffer.concat([head, body])
}

/** The payload of a close frame: a code (omitted when undefined) and a reason, as raw bytes. */
export function closePayload(code: number | undefined, reason: Buffer = Buffer.alloc(0)): Buffer {
  if (code === undefined) return Buffer.alloc(0)
  const b = Buffer.alloc(2)
  b.writeUInt16BE(code & 0xffff)
  return Buffer.concat([b, reason])
}

/** A frame the server sent. */
export interface ServerFrame {
  fin: boolean
  rsv: number
  opcode: number
  masked: boolean
  payload: Buffer
}

/** What the client saw of one raw WebSocket connection. */
export interface RawWsLog {
  /** The upgrade answer's status (101 when upgraded, 0 when nothing complete came back). */
  status: number
  headers: Record<string, string | string[]>
  /** The body of a refused upgrade. */
  body: Buffer
  frames: ServerFrame[]
  /** Bytes after the last whole frame, or a frame the parser could not read. */
  garbage: Buffer
  /** Set when the server's TCP side ended (FIN or reset). */
  ended: boolean
}

export interface RawWs {
  log: RawWsLog
  socket: Socket
  /** Resolves once the upgrade answer's head arrived, or the connection ended before it did. */
  answered: Promise<void>
  /** Resolves when the TCP connection is fully gone. */
  gone: Promise<void>
  send(opcode: number, payload: Buffer, o?: FrameOptions): void
  /** Whether the socket can still be written to. */
  writable(): boolean
}

function parseFrames(buf: Buffer, out: ServerFrame[]): Buffer {
  let at = 0
  for (;;) {
    if (buf.length - at < 2) break
    const b0 = buf[at] ?? 0
    const b1 = buf[at + 1] ?? 0
    let len = b1 & 0x7f
    let off = at + 2
    if (len === 126) {
      if (buf.length - off < 2) break
      len = buf.readUInt16BE(off)
      off += 2
    } else if (len === 127) {
      if (buf.length - off < 8) break
      len = Number(buf.readBigUInt64BE(off))
      off += 8
    }
    const masked = (b1 & 0x80) !== 0
    const maskAt = off
    if (masked) off += 4
    if (buf.length - off < len) break
    let payload = buf.subarray(off, off + len)
    if (masked) {
      const m = buf.subarray(maskAt, maskAt + 4)
      payload = Buffer.from(payload.map((x, i) => x ^ (m[i & 3] ?? 0)))
    }
    out.push({ fin: (b0 & 0x80) !== 0, rsv: (b0 >> 4) & 7, opcode: b0 & 0x0f, masked, payload })
    at = off + len
  }
  return buf.subarray(at)
}

/**
 * Opens a WebSocket by hand over loopback TCP: the upgrade request is written byte for byte (any key, any
 * version, any header), and frames are written unvalidated, so every protocol violation can be sent.
 */
export function openRawWs(
  port: number,
  target: string | Buffer,
  headers: RawHeader[],
  options: { key?: string | null; version?: string | null } = {},
): RawWs {
  const socket = connect({ host: '127.0.0.1', port })
  const log: RawWsLog = {
    status: 0,
    headers: {},
    body: Buffer.alloc(0),
    frames: [],
    garbage: Buffer.alloc(0),
    ended: false,
  }
  const key = options.key === undefined ? randomBytes(16).toString('base64') : options.key
  const version = options.version === undefined ? '13' : options.version
  const all: RawHeader[] = [
    ['Upgrade', 'websocket'],
    ['Connection', 'Upgrade'],
    ...(key === null ? [] : [['Sec-WebSocket-Key', key] as RawHeader]),
    ...(version === null ? [] : [['Sec-WebSocket-Version', version] as RawHeader]),
    ...headers,
  ]
  // encodeRequest adds `Connection: close`; the upgrade needs its own, so write the request line by hand.
  const request = encodeRequest({ method: 'GET', target, headers: all }, `127.0.0.1:${port}`)
  const fixed = Buffer.from(request.toString('latin1').replace('Connection: close\r\n', ''), 'latin1')
  let pending: Buffer = Buffer.alloc(0)
  let upgraded = false
  let headDone = false
  let markAnswered: () => void = () => {}
  const answered = new Promise<void>((resolve) => {
    markAnswered = resolve
  })
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  socket.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d])
    if (!headDone) {
      const head = parseHead(pending)
      if (!head) return
      headDone = true
      log.status = head.status
      log.headers = head.headers
      upgraded = head.status === 101
      pending = head.rest
      markAnswered()
    }
    if (upgraded) pending = parseFrames(pending, log.frames)
    else log.body = pending
  })
  const end = () => {
    log.ended = true
    if (upgraded) log.garbage = pending
    markAnswered()
  }
  socket.on('end', end)
  socket.on('close', end)
  socket.on('error', () => {})
  socket.on('connect', () => socket.write(fixed))
  return {
    log,
    socket,
    answered,
    gone,
    send(opcode, payload, o) {
      if (socket.writable) socket.write(encodeFrame(opcode, payload, o))
    },
    writable: () => socket.writable && !socket.destroyed,
  }
}
