import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocket, WebSocketServer } from 'ws'

/** One upstream connection the fake accepted. */
export interface FakeConnection {
  ws: WebSocket
  req: IncomingMessage
  /** Bytes the fake sent in `flood` mode. */
  sent: number
  /** The largest `bufferedAmount` the fake's own socket reached (back-pressure pushed back onto it). */
  maxBuffered: number
  received: { binary: boolean; data: Buffer }[]
  closed: Promise<{ code: number; reason: string }>
}

/**
 * A fake Deepgram-compatible upstream for the proxy's own tests (this tests the proxy, not Earmark):
 * `POST /v1/auth/grant` answers a JWT-shaped token carrying `end_user`; `/v1/listen` behaves by its `mode`
 * query parameter: `flood` (sends 16 KiB text frames as fast as its socket takes them), `stall` (never
 * reads), `echo` (sends every frame back), or `reject=<status>` (refuses the handshake). `POST /v1/listen`
 * answers 200 with a body stating its request id (and no `dg-request-id` header), `status=<n>` a Deepgram-shaped
 * error with `Retry-After: 7`, or with `mode=hang` nothing at all (the gateway's tests, docs/gateway.md).
 */
export interface FakeUpstream {
  url: string
  server: Server
  connections: FakeConnection[]
  /** Every grant token it issued. */
  tokens: string[]
  /** When set, grants do not carry `end_user` (as an upstream that is not Earmark). */
  plainGrants: boolean
  /** Every `POST /v1/listen` and its body length. */
  requests: { req: IncomingMessage; bytes: number }[]
  close(): Promise<void>
}

const FLOOD_FRAME = `{"type":"Results","pad":"${'x'.repeat(16 * 1024 - 30)}"}`
/** The fake stops queueing once its own socket holds this much (so the test process stays small). */
const FLOOD_CAP = 8 * 1024 * 1024

function fakeJwt(claims: Record<string, unknown>): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}.${Buffer.from(`sig-${Math.random()}`).toString('base64url')}`
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const connections: FakeConnection[] = []
  const tokens: string[] = []
  const server = createServer((req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => {
      text += d.toString('latin1')
    })
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/auth/grant') {
        const body = JSON.parse(text || '{}') as { ttl_seconds?: number; end_user?: string }
        const exp = Math.floor(Date.now() / 1000) + 30
        const token = fakeJwt(fake.plainGrants ? { exp } : { end_user: body.end_user, exp })
        tokens.push(token)
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ access_token: token, expires_in: body.ttl_seconds ?? 30 }))
        return
      }
      const url = new URL(req.url ?? '/', 'http://fake')
      if (req.method === 'POST' && url.pathname === '/v1/listen') {
        fake.requests.push({ req, bytes: Buffer.byteLength(text, 'latin1') })
        const status = Number(url.searchParams.get('status') ?? 200)
        if (url.searchParams.get('mode') === 'hang') return
        if (status !== 200) {
          // `echo_auth`: a careless service that quotes the credential it was sent.
          const quoted = url.searchParams.get('echo_auth') ? ` (${req.headers.authorization})` : ''
          res.writeHead(status, {
            'content-type': 'application/json',
            'retry-after': '7',
            'dg-request-id': 'fake-rest-id',
          })
          res.end(
            JSON.stringify({
              err_code: 'FAKE_REFUSAL',
              err_msg: `The fake said ${status}${quoted}.`,
              request_id: 'fake-rest-id',
            }),
          )
          return
        }
        // No dg-request-id header: the id is only in the body, as a service might state it.
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(
          JSON.stringify({
            metadata: { request_id: 'fake-rest-id', duration: 1.5 },
            results: { channels: [] },
          }),
        )
        return
      }
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ err_code: 'NOT_FOUND', err_msg: 'Not found.', request_id: 'fake' }))
    })
  })
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  server.on('upgrade', (req, socket, head) => {
    const url = new URL(req.url ?? '/', 'http://fake')
    const reject = url.searchParams.get('reject')
    if (reject) {
      const body = JSON.stringify({
        err_code: 'FAKE_REFUSAL',
        err_msg: 'The fake said no.',
        request_id: 'fake-id',
      })
      socket.end(
        `HTTP/1.1 ${reject} No\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n` +
          `dg-request-id: fake-id\r\nconnection: close\r\n\r\n${body}`,
      )
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const conn: FakeConnection = {
        ws,
        req,
        sent: 0,
        maxBuffered: 0,
        received: [],
        closed: new Promise((resolve) =>
          ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })),
        ),
      }
      connections.push(conn)
      ws.on('error', () => {})
      ws.on('message', (data, isBinary) => {
        const buf = Buffer.from(data as Buffer)
        conn.received.push({ binary: isBinary, data: buf })
        if (url.searchParams.get('mode') === 'echo') ws.send(buf, { binary: isBinary })
      })
      const mode = url.searchParams.get('mode')
      if (mode === 'stall') ws.pause()
      if (mode === 'flood') {
        const pump = () => {
          if (ws.readyState !== WebSocket.OPEN) return
          while (ws.bufferedAmount < FLOOD_CAP) {
            ws.send(FLOOD_FRAME)
            conn.sent += FLOOD_FRAME.length
          }
          conn.maxBuffered = Math.max(conn.maxBuffered, ws.bufferedAmount)
          setTimeout(pump, 5)
        }
        pump()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const fake: FakeUpstream = {
    url: `http://127.0.0.1:${port}`,
    server,
    connections,
    tokens,
    plainGrants: false,
    requests: [],
    close: async () => {
      for (const c of wss.clients) c.terminate()
      wss.close()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return fake
}
