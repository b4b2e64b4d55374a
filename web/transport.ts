import { DeepgramClient } from 'dg5'
import type { Credential } from './credentials.js'
import { frameText, record } from './log.js'

/** The server messages the page reads (docs/deepgram-compat.md §7.3); others are logged and ignored. */
export type ServerMessage =
  | {
      type: 'Results'
      is_final: boolean
      speech_final: boolean
      channel: { alternatives: { transcript: string }[] }
    }
  | { type: 'Metadata'; request_id: string }
  | { type: 'UtteranceEnd' | 'SpeechStarted' }

export interface CloseInfo {
  code: number
  reason: string
}

/** One live `/v1/listen` stream, whichever way it was opened. */
export interface ListenConnection {
  /** Where it goes (no secret in it). */
  readonly url: string
  /** Settles when the socket opens, or rejects when it closes first. */
  readonly opened: Promise<void>
  /** Settles when the socket has closed. */
  readonly closed: Promise<CloseInfo>
  send(audio: Blob | ArrayBuffer): void
  /** `{"type":"CloseStream"}`: the server flushes, sends the last Results and Metadata, then closes 1000. */
  closeStream(): void
  close(): void
}

export interface ListenParams {
  /** `linear16` at 16 kHz (AudioWorklet) or containerised audio detected by the server (MediaRecorder). */
  linear16: boolean
}

function queryOf(params: ListenParams): Record<string, string> {
  return {
    // Earmark accepts and ignores the model name; Deepgram needs one.
    model: 'nova-3',
    interim_results: 'true',
    punctuate: 'true',
    ...(params.linear16 ? { encoding: 'linear16', sample_rate: '16000' } : {}),
  }
}

function messageOf(data: unknown): ServerMessage | undefined {
  if (typeof data !== 'string') return undefined
  try {
    return JSON.parse(data) as ServerMessage
  } catch {
    return undefined
  }
}

/**
 * Patterns 1 and 2: the official v5 SDK straight to Earmark's `/v1/listen`. In a browser it cannot set headers,
 * so it offers the subprotocols `token, <key>` or `bearer, <jwt>` (docs/deepgram-compat.md §1.2), and Earmark
 * echoes the scheme name only.
 */
export async function connectWithSdk(
  earmarkUrl: string,
  credential: Credential,
  params: ListenParams,
  onMessage: (message: ServerMessage) => void,
): Promise<ListenConnection> {
  const wsBase = earmarkUrl.replace(/^http/, 'ws')
  const client = new DeepgramClient(
    credential.scheme === 'bearer'
      ? { accessToken: credential.secret, baseUrl: wsBase }
      : { apiKey: credential.secret, baseUrl: wsBase },
  )
  const socket = await client.listen.v1.connect({
    ...queryOf(params),
    model: 'nova-3',
    // v5 reconnects on any close but 1000 (docs/deepgram-compat.md §0 #8): a demo stream that ends should
    // stay ended.
    reconnectAttempts: 0,
  })
  const url = `${wsBase}/v1/listen`
  const closed = new Promise<CloseInfo>((resolve) => {
    socket.on('close', (event) => {
      record({ kind: 'ws-close', url, status: event.code, data: event.reason })
      resolve({ code: event.code, reason: event.reason })
    })
  })
  socket.on('error', (err) => record({ kind: 'error', url, data: String(err.message ?? err) }))
  socket.connect()
  // The raw frames, as they arrive (what the tests inspect). Added after connect(): v5's connect() removes
  // every `message` listener of the underlying socket but its own.
  socket.socket.addEventListener('message', (event) => {
    record({ kind: 'ws-in', url, data: frameText(event.data) })
    const message = messageOf(event.data)
    if (message) onMessage(message)
  })
  const opened = Promise.race([
    socket.waitForOpen().then(() => undefined),
    closed.then((c) => Promise.reject(new Error(`the stream closed before it opened (${c.code})`))),
  ])
  return {
    url,
    opened,
    closed,
    send: (audio) => socket.sendMedia(audio),
    closeStream: () => {
      record({ kind: 'ws-out', url, data: '{"type":"CloseStream"}' })
      socket.sendCloseStream({ type: 'CloseStream' })
    },
    close: () => socket.close(),
  }
}

/**
 * Pattern 3: a plain `WebSocket` to the app server's own `{prefix}/listen`, which proxies to Earmark with a
 * credential the browser never sees. The session cookie identifies the user.
 */
export function connectToProxy(
  prefix: string,
  params: ListenParams,
  onMessage: (message: ServerMessage) => void,
): ListenConnection {
  const origin = location.origin.replace(/^http/, 'ws')
  const url = `${origin}${prefix}/listen?${new URLSearchParams(queryOf(params))}`
  const ws = new WebSocket(url)
  ws.binaryType = 'arraybuffer'
  ws.addEventListener('message', (event) => {
    record({ kind: 'ws-in', url, data: frameText(event.data) })
    const message = messageOf(event.data)
    if (message) onMessage(message)
  })
  const closed = new Promise<CloseInfo>((resolve) => {
    ws.addEventListener('close', (event) => {
      record({ kind: 'ws-close', url, status: event.code, data: event.reason })
      resolve({ code: event.code, reason: event.reason })
    })
  })
  ws.addEventListener('error', () => record({ kind: 'error', url, data: 'WebSocket error' }))
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve())
    void closed.then((c) => reject(new Error(`the stream closed before it opened (${c.code})`)))
  })
  return {
    url,
    opened,
    closed,
    send: (audio) => ws.send(audio),
    closeStream: () => {
      const text = JSON.stringify({ type: 'CloseStream' })
      record({ kind: 'ws-out', url, data: text })
      ws.send(text)
    },
    close: () => ws.close(),
  }
}
