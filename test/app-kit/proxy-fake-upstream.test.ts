import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { type FakeUpstream, startFakeUpstream } from '../helpers/fake-upstream.js'
import {
  type AppServer,
  END_USER_HEADER,
  type Recording,
  record,
  sleep,
  startAppServer,
  waitFor,
} from './app-kit-fixtures.js'

// These tests are about the proxy itself (back-pressure, frame relay, close codes, latency), so the upstream
// is a fake Deepgram-compatible server (test/helpers/fake-upstream.ts), not Earmark.

const SERVER_KEY = `server-held-${randomBytes(16).toString('hex')}`
const MAX = 256 * 1024
/** What the proxy may hold: the bound, one frame past it (frames are at most MAX), one socket read. */
const BOUND = 2 * MAX + 64 * 1024
const as = (endUser: string) => ({ [END_USER_HEADER]: endUser })

/** A browser that completes the upgrade and then never reads a byte. */
async function rawNonReadingClient(port: number, path: string): Promise<{ socket: Socket; status: string }> {
  const socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
      `${END_USER_HEADER}: lee\r\n\r\n`,
  )
  let head = ''
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      head += d.toString('latin1')
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData)
        socket.pause() // from here on, nothing is read: the kernel buffers fill, then the proxy's
        resolve()
      }
    }
    socket.on('data', onData)
  })
  return { socket, status: head.split('\r\n')[0] ?? '' }
}

/** Samples `read` every few ms for `ms`; returns the largest value seen. */
async function peak(read: () => number, ms: number): Promise<number> {
  let max = 0
  const timer = setInterval(() => {
    max = Math.max(max, read())
  }, 2)
  await sleep(ms)
  clearInterval(timer)
  return Math.max(max, read())
}

/** Every byte the browser got: headers, body and frames. */
function everything(rec: Recording): string {
  return [JSON.stringify(rec.headers), rec.body, ...rec.frames.map((f) => f.data.toString('latin1'))].join(
    '\n',
  )
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

describe('app kit proxy against a fake upstream', () => {
  let fake: FakeUpstream
  let app: AppServer
  let port: number

  before(async () => {
    fake = await startFakeUpstream()
    app = await startAppServer({
      upstream: { url: fake.url, apiKey: SERVER_KEY, projectId: 'p' },
      proxy: { maxBufferedBytes: MAX },
    })
    port = Number(new URL(app.url).port)
  })
  after(async () => {
    await app?.close()
    await fake?.close()
  })

  it('keeps memory bounded when the browser stops reading while the upstream floods', async (t) => {
    const before = fake.connections.length
    const { socket, status } = await rawNonReadingClient(port, '/earmark/listen?mode=flood')
    assert.match(status, / 101 /)
    assert.ok(await waitFor(() => fake.connections.length === before + 1))
    const conn = fake.connections.at(-1)
    assert.ok(conn)
    const heapBefore = process.memoryUsage().heapUsed
    const max = await peak(() => app.kit.stats.bufferedBytes, 2000)
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore
    t.diagnostic(
      `browser not reading: proxy peak bufferedBytes ${max} (bound ${BOUND}); the fake upstream sent ` +
        `${(conn.sent / 1048576).toFixed(1)} MiB and was pushed back to ${(conn.maxBuffered / 1048576).toFixed(1)} MiB ` +
        `queued on its side; heap growth ${(heapGrowth / 1048576).toFixed(1)} MiB`,
    )
    assert.ok(max > MAX / 2, 'the browser side did fill up (the test exercised back-pressure)')
    assert.ok(max <= BOUND, `peak ${max} > ${BOUND}`)
    // Back-pressure reached the upstream: it could not hand its frames on and queued them itself.
    assert.ok(conn.maxBuffered > 4 * 1024 * 1024, `upstream side queued ${conn.maxBuffered}`)
    // The flood stalled: what the upstream managed to send stays far below 2 s of loopback speed.
    const sentThen = conn.sent
    await sleep(300)
    assert.ok(conn.sent - sentThen < 16 * 1024 * 1024, 'the upstream is held back')

    socket.destroy()
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 5000), 'torn down after the browser left')
    const closed = await conn.closed
    assert.equal(closed.code, 1001)
  })

  it('keeps memory bounded when the upstream stops reading while the browser floods', async (t) => {
    const rec = await record(`${app.wsUrl}/earmark/listen?mode=stall`, { headers: as('lee') })
    assert.equal(rec.status, 101)
    const frame = randomBytes(16 * 1024)
    let stop = false
    let sent = 0
    const pump = () => {
      if (stop || rec.ws.readyState !== WebSocket.OPEN) return
      while (rec.ws.bufferedAmount < 8 * 1024 * 1024) {
        rec.ws.send(frame)
        sent += frame.length
      }
      setTimeout(pump, 5)
    }
    pump()
    const max = await peak(() => app.kit.stats.bufferedBytes, 1500)
    stop = true
    t.diagnostic(
      `upstream not reading: proxy peak bufferedBytes ${max} (bound ${BOUND}); browser queued ${sent} bytes`,
    )
    assert.ok(max > MAX / 2, 'the upstream side did fill up')
    assert.ok(max <= BOUND, `peak ${max} > ${BOUND}`)
    rec.ws.terminate()
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 5000))
  })

  it('relays binary and text frames both ways, in order, and measures the latency it adds', async (t) => {
    const rec = await record(`${app.wsUrl}/earmark/listen?mode=echo&model=x&tag=a`, { headers: as('lee') })
    assert.equal(rec.status, 101)
    const conn = fake.connections.at(-1)
    assert.ok(conn)
    // The upstream got the browser's query and the per-stream grant, never the server key.
    const upstreamUrl = new URL(conn.req.url ?? '', 'http://x')
    assert.equal(upstreamUrl.pathname, '/v1/listen')
    assert.equal(upstreamUrl.search, '?mode=echo&model=x&tag=a')
    assert.equal(conn.req.headers.authorization, `Bearer ${fake.tokens.at(-1)}`)
    assert.equal(conn.req.headers[END_USER_HEADER], undefined, 'browser headers stay at the app server')

    const sentFrames: { binary: boolean; data: Buffer }[] = []
    for (let i = 0; i < 50; i++) {
      const f =
        i % 2 === 0
          ? { binary: true, data: randomBytes(1 + i * 97) }
          : { binary: false, data: Buffer.from(JSON.stringify({ type: 'KeepAlive', i })) }
      sentFrames.push(f)
      rec.ws.send(f.data, { binary: f.binary })
    }
    assert.ok(await waitFor(() => rec.frames.length === 50, 3000))
    assert.deepEqual(
      rec.frames.map((f) => ({ binary: f.binary, data: f.data })),
      sentFrames,
    )
    assert.deepEqual(conn.received, sentFrames)

    // Round trips, through the proxy and straight to the fake, one at a time.
    const direct = new WebSocket(`${fake.url.replace('http', 'ws')}/v1/listen?mode=echo`)
    await new Promise((resolve) => direct.once('open', resolve))
    const rtt = async (ws: WebSocket, n: number) => {
      const times: number[] = []
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint()
        await new Promise<void>((resolve) => {
          ws.once('message', () => resolve())
          ws.send(randomBytes(3200)) // 100 ms of 16 kHz audio
        })
        times.push(Number(process.hrtime.bigint() - t0) / 1e6)
      }
      return median(times)
    }
    await rtt(direct, 20)
    await rtt(rec.ws, 20) // warm up
    rec.frames.length = 0
    const viaDirect = await rtt(direct, 200)
    const viaProxy = await rtt(rec.ws, 200)
    t.diagnostic(
      `echo round trip, median of 200 (3200-byte frames): direct ${viaDirect.toFixed(3)} ms, through the proxy ` +
        `${viaProxy.toFixed(3)} ms: +${(viaProxy - viaDirect).toFixed(3)} ms per round trip (two relays)`,
    )
    direct.close()
    rec.ws.close(1000)
    assert.equal((await rec.closed).code, 1000)
  })

  it('propagates close codes and reasons both ways, redacting any secret from a reason', async () => {
    const a = await record(`${app.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    const upA = fake.connections.at(-1)
    assert.ok(upA)
    upA.ws.close(4001, `bye ${SERVER_KEY}`)
    assert.deepEqual(await a.closed.then((c) => [c.code, c.reason]), [4001, 'bye [redacted]'])
    const token = fake.tokens.at(-1) ?? ''
    assert.ok(Buffer.byteLength(token) <= 123)
    const a2 = await record(`${app.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    const upA2 = fake.connections.at(-1)
    assert.ok(upA2)
    const token2 = fake.tokens.at(-1) ?? ''
    assert.notEqual(token2, token)
    upA2.ws.close(4001, token2)
    assert.deepEqual(await a2.closed.then((c) => [c.code, c.reason]), [4001, '[redacted]'])

    const b = await record(`${app.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    const upB = fake.connections.at(-1)
    assert.ok(upB)
    b.ws.close(4002, 'ciao')
    assert.deepEqual(await upB.closed, { code: 4002, reason: 'ciao' })
    assert.equal((await b.closed).code, 4002)

    const c = await record(`${app.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    const upC = fake.connections.at(-1)
    assert.ok(upC)
    upC.ws.terminate() // the upstream vanishes without a close frame
    const closedC = await c.closed
    assert.equal(closedC.code, 1011)
    assert.equal(closedC.reason, 'upstream closed')
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 3000))
  })

  it('answers a refused upstream handshake with its status (a server-key refusal as 502) and a Deepgram body', async () => {
    const busy = await record(`${app.wsUrl}/earmark/listen?reject=503`, { headers: as('lee') })
    assert.equal(busy.status, 503)
    assert.deepEqual(JSON.parse(busy.body), {
      err_code: 'FAKE_REFUSAL',
      err_msg: 'The fake said no.',
      request_id: 'fake-id',
    })
    const keyRefused = await record(`${app.wsUrl}/earmark/listen?reject=401`, { headers: as('lee') })
    assert.equal(keyRefused.status, 502)
    assert.equal(JSON.parse(keyRefused.body).err_code, 'UPSTREAM_ERROR')
    assert.ok(!keyRefused.body.includes(SERVER_KEY))

    // A broken handshake is refused before anything is minted or opened upstream.
    const tokens = fake.tokens.length
    const raw = connect(port, '127.0.0.1')
    raw.write(
      `GET /earmark/listen HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${END_USER_HEADER}: lee\r\n\r\n`,
    )
    const answer = await new Promise<string>((resolve) => {
      let text = ''
      raw.on('data', (d: Buffer) => {
        text += d.toString()
      })
      raw.on('close', () => resolve(text))
    })
    assert.match(answer, /^HTTP\/1\.1 400 /)
    assert.equal(fake.tokens.length, tokens)

    const down = await startAppServer({
      upstream: { url: 'http://127.0.0.1:9', apiKey: SERVER_KEY, projectId: 'p' },
    })
    try {
      const unreachable = await record(`${down.wsUrl}/earmark/listen`, { headers: as('lee') })
      assert.equal(unreachable.status, 502)
      assert.equal(JSON.parse(unreachable.body).err_code, 'UPSTREAM_ERROR')
      assert.equal(down.kit.stats.openProxies, 0)
    } finally {
      await down.close()
    }
  })

  it('refuses a broken browser handshake the way Earmark refuses its own, before anything is minted', async () => {
    const key = `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n`
    const upgrade = `Upgrade: websocket\r\nConnection: Upgrade\r\n${END_USER_HEADER}: lee\r\n`
    const cases = [
      { name: 'no key', head: `GET /earmark/listen HTTP/1.1\r\nHost: x\r\n${upgrade}`, status: 400 },
      {
        name: 'version 8',
        head: `GET /earmark/listen HTTP/1.1\r\nHost: x\r\n${upgrade}${key}Sec-WebSocket-Version: 8\r\n`,
        status: 426,
        header: 'sec-websocket-version: 13',
      },
    ]
    const tokens = fake.tokens.length
    for (const c of cases) {
      const raw = connect(port, '127.0.0.1')
      raw.write(`${c.head}\r\n`)
      const answer = await new Promise<string>((resolve) => {
        let text = ''
        raw.on('data', (d: Buffer) => {
          text += d.toString()
        })
        raw.on('close', () => resolve(text))
      })
      const [head = '', body = ''] = answer.split('\r\n\r\n')
      assert.match(head, new RegExp(`^HTTP/1\\.1 ${c.status} `), c.name)
      if (c.header) assert.ok(head.toLowerCase().includes(c.header), `${c.name}: ${c.header}`)
      const parsed = JSON.parse(body) as { err_code: string; request_id: string }
      assert.equal(typeof parsed.err_code, 'string', c.name)
      assert.ok(head.includes(`dg-request-id: ${parsed.request_id}`), `${c.name}: dg-request-id`)
      assert.ok(head.includes(`x-request-id: ${parsed.request_id}`), `${c.name}: x-request-id`)
    }
    assert.equal(fake.tokens.length, tokens, 'nothing minted')
    assert.equal(app.kit.stats.openProxies, 0)
  })

  it('connects with the server key and an end_user tag when the upstream grants carry no end user', async () => {
    fake.plainGrants = true
    const plain = await startAppServer({ upstream: { url: fake.url, apiKey: SERVER_KEY, projectId: 'p' } })
    try {
      for (let i = 0; i < 2; i++) {
        const tokens = fake.tokens.length
        const rec = await record(`${plain.wsUrl}/earmark/listen?mode=echo&tag=end_user:eve`, {
          headers: as('lee'),
        })
        assert.equal(rec.status, 101)
        const conn = fake.connections.at(-1)
        assert.ok(conn)
        assert.equal(conn.req.headers.authorization, `Token ${SERVER_KEY}`)
        assert.equal(new URL(conn.req.url ?? '', 'http://x').search, '?mode=echo&tag=end_user%3Alee')
        // Tried once; from then on the kit knows and mints no useless grant.
        assert.equal(fake.tokens.length, tokens + (i === 0 ? 1 : 0))
        rec.ws.send('{"type":"KeepAlive"}')
        assert.ok(await waitFor(() => rec.frames.length === 1))
        assert.ok(!everything(rec).includes(SERVER_KEY))
        rec.ws.close(1000)
        await rec.closed
      }
    } finally {
      fake.plainGrants = false
      await plain.close()
    }
  })

  it('ends every open stream on close() and refuses new ones', async () => {
    const other = await startAppServer({ upstream: { url: fake.url, apiKey: SERVER_KEY, projectId: 'p' } })
    const rec = await record(`${other.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    assert.equal(other.kit.stats.openProxies, 1)
    await other.kit.close()
    assert.equal((await rec.closed).code, 1001)
    assert.equal(other.kit.stats.openProxies, 0)
    const late = await record(`${other.wsUrl}/earmark/listen?mode=echo`, { headers: as('lee') })
    assert.equal(late.status, 503)
    assert.equal(JSON.parse(late.body).err_code, 'SERVICE_UNAVAILABLE')
    await other.close()
  })
})
