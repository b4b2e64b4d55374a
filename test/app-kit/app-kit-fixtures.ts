import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import { type AppKit, type AppKitOptions, createAppKit } from '../../src/app-kit/index.js'

/** The header the test app authenticates its end users by (a stand-in for a session cookie). */
export const END_USER_HEADER = 'x-end-user'

/** The test app's `authorize`: the end user named by {@link END_USER_HEADER}, or a refusal. */
export function headerAuthorize(req: IncomingMessage): { endUser: string } | null {
  const user = req.headers[END_USER_HEADER]
  return typeof user === 'string' && user !== '' ? { endUser: user } : null
}

/** A real app server: node:http with the kit mounted, listening on a loopback port. */
export interface AppServer {
  kit: AppKit
  server: Server
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `ws://127.0.0.1:PORT` */
  wsUrl: string
  close(): Promise<void>
}

export async function startAppServer(
  options: Omit<AppKitOptions, 'authorize'> & Partial<Pick<AppKitOptions, 'authorize'>>,
): Promise<AppServer> {
  const kit = createAppKit({ authorize: headerAuthorize, ...options })
  const server = createServer((req, res) => {
    void kit.handleRequest(req, res).then((answered) => {
      if (!answered) {
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end('the app’s own 404')
      }
    })
  })
  server.on('upgrade', (req, socket, head) => {
    if (!kit.handleUpgrade(req, socket, head)) socket.destroy()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    kit,
    server,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    close: async () => {
      await kit.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** A JSON request to the app (or Earmark): status, headers and parsed body. */
export async function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: unknown } = {},
): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: {
      ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...init.headers,
    },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
  })
  const text = await res.text()
  return {
    status: res.status,
    headers: res.headers,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  }
}

/** Everything a WebSocket client received: every frame raw, the upgrade answer, the close. */
export interface Recording {
  ws: WebSocket
  /** The upgrade's status (101 when it opened). */
  status: number
  /** Headers of the 101, or of the refusal. */
  headers: Record<string, string | string[] | undefined>
  /** The refusal's body text. */
  body: string
  frames: { binary: boolean; data: Buffer; at: number }[]
  /** JSON of the text frames. */
  messages(): Record<string, unknown>[]
  closed: Promise<{ code: number; reason: string; at: number }>
}

/** Opens a socket and records everything; resolves once it is open or refused. */
export function record(
  url: string,
  options: { protocols?: string[]; headers?: Record<string, string> } = {},
): Promise<Recording> {
  const ws = new WebSocket(url, options.protocols ?? [], {
    headers: options.headers,
    perMessageDeflate: false,
  })
  const rec: Recording = {
    ws,
    status: 0,
    headers: {},
    body: '',
    frames: [],
    messages: () =>
      rec.frames
        .filter((f) => !f.binary)
        .map((f) => JSON.parse(f.data.toString('utf8')) as Record<string, unknown>),
    closed: new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8'), at: Date.now() }))
    }),
  }
  ws.on('error', () => {})
  ws.on('message', (data, isBinary) => {
    rec.frames.push({ binary: isBinary, data: Buffer.from(data as Buffer), at: Date.now() })
  })
  return new Promise((resolve) => {
    ws.on('upgrade', (res) => {
      rec.status = res.statusCode ?? 0
      rec.headers = res.headers
    })
    ws.on('open', () => resolve(rec))
    ws.on('unexpected-response', (_req, res) => {
      rec.status = res.statusCode ?? 0
      rec.headers = res.headers
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        rec.body += d
      })
      res.on('end', () => {
        ws.terminate()
        resolve(rec)
      })
    })
    ws.on('error', () => resolve(rec))
  })
}

/** The final transcripts of a recording, joined. */
export function finalText(rec: Recording): string {
  return rec
    .messages()
    .filter((m) => m.type === 'Results' && m.is_final === true)
    .map((m) =>
      ((m.channel as { alternatives: { transcript: string }[] }).alternatives[0]?.transcript ?? '').trim(),
    )
    .filter((t) => t !== '')
    .join(' ')
}

/** Sends 16 kHz s16 PCM in `ms` chunks (unpaced unless asked). */
export async function sendPcm(ws: WebSocket, pcm: Int16Array, ms = 100, paced = false): Promise<void> {
  const step = (16000 * ms) / 1000
  for (let i = 0; i < pcm.length; i += step) {
    const part = pcm.subarray(i, i + step)
    ws.send(Buffer.from(part.buffer, part.byteOffset, part.byteLength))
    if (paced) await sleep(ms)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Polls `check` until it holds or `timeoutMs` passes; returns whether it held. */
export async function waitFor(check: () => boolean, timeoutMs = 5000, stepMs = 20): Promise<boolean> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    if (check()) return true
    await sleep(stepMs)
  }
  return check()
}

/** The claims of a JWT, decoded without verifying (the test only reads them). */
export function jwtClaims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >
}

/** Usage records of the project, as the owner sees them. */
export async function usageRecords(
  earmarkUrl: string,
  ownerKey: string,
  projectId: string,
  query: Record<string, string> = {},
): Promise<Record<string, unknown>[]> {
  const q = new URLSearchParams({ limit: '100', ...query })
  const { status, body } = await call(`${earmarkUrl}/v1/projects/${projectId}/requests?${q}`, {
    headers: { authorization: `Token ${ownerKey}` },
  })
  if (status !== 200) throw new Error(`usage records: ${status}`)
  return body.requests as Record<string, unknown>[]
}

/** Usage records matching `query`, once Earmark has completed all of them (it does so just after a close). */
export async function finishedRecords(
  earmarkUrl: string,
  ownerKey: string,
  projectId: string,
  query: Record<string, string>,
): Promise<Record<string, unknown>[]> {
  for (let i = 0; i < 50; i++) {
    const records = await usageRecords(earmarkUrl, ownerKey, projectId, query)
    if (records.length > 0 && records.every((r) => r.code !== null)) return records
    await sleep(100)
  }
  throw new Error(`usage records for ${JSON.stringify(query)} were not completed`)
}

/** The `tags` a completed usage record carries. */
export function recordTags(r: Record<string, unknown> | undefined): string[] {
  const details = (r?.response as { details?: { tags?: string[] } } | undefined)?.details
  return details?.tags ?? []
}
