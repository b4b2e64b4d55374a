import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { type FakeUpstream, startFakeUpstream } from '../helpers/fake-upstream.js'
import { freePort } from '../helpers/free-port.js'
import { eventually, wsUrlOf } from '../helpers/listen-e2e.js'
import { type LiveServer, openSocket, startLiveServer } from '../helpers/live-server.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The gateway's edges (docs/gateway.md): Earmark relaying to a scripted Deepgram-compatible far end
// (test/helpers/fake-upstream.ts) that refuses, floods, stalls, dies or answers without a request-id header,
// as real services and networks do. test/engines/upstream-gateway.test.ts relays to a real Earmark instead.

const UPSTREAM_KEY = `upstream_${randomBytes(20).toString('hex')}`

/** Any data the relay holds for a stream: Earmark's heap, which must stay bounded. */
const heapMiB = () => process.memoryUsage().heapUsed / 1024 / 1024

describe('the upstream relay at its edges', { timeout: 180_000 }, () => {
  let far: FakeUpstream
  let gw: LiveServer
  const relayInUse = () => gw.earmark.engines.default.inUse()

  before(async () => {
    recordSecrets(UPSTREAM_KEY)
    far = await startFakeUpstream()
    gw = await startLiveServer({
      EARMARK_ENGINE: 'upstream',
      EARMARK_UPSTREAM_URL: far.url,
      EARMARK_UPSTREAM_KEY: UPSTREAM_KEY,
    })
  })
  after(async () => {
    await gw?.close()
    await far?.close()
  })

  const open = (query: string) =>
    openSocket(`${gw.wsUrl}/v1/listen?${query}`, { protocols: ['token', gw.ownerKey] })

  it('passes frames both ways byte for byte, with the query as sent and only the server key upstream', async () => {
    const query = 'mode=echo&encoding=linear16&sample_rate=16000&keywords=caf%C3%A9:2&x=%20y'
    const { ws, log } = await open(query)
    const conn = far.connections.at(-1)
    assert.ok(conn)
    assert.equal(conn.req.url, `/v1/listen?${query}`)
    assert.equal(conn.req.headers.authorization, `Token ${UPSTREAM_KEY}`)
    assert.equal(
      conn.req.headers['sec-websocket-protocol'],
      undefined,
      "the client's key stays at the gateway",
    )
    const audio = randomBytes(3200)
    const echoed: { data: Buffer; binary: boolean }[] = []
    ws.removeAllListeners('message')
    ws.on('message', (data, binary) => echoed.push({ data: Buffer.from(data as Buffer), binary }))
    ws.send(audio)
    ws.send('{"type":"KeepAlive"}')
    ws.send('{ "type" : "Finalize", "extra": [1, 2.50] }')
    await eventually(async () => (echoed.length === 3 ? true : undefined), 5000, 'three echoes')
    assert.deepEqual(
      echoed.map((e) => [e.binary, e.data.toString('base64')]),
      [
        [true, audio.toString('base64')],
        [false, Buffer.from('{"type":"KeepAlive"}').toString('base64')],
        [false, Buffer.from('{ "type" : "Finalize", "extra": [1, 2.50] }').toString('base64')],
      ],
    )
    ws.close(1000)
    await eventually(async () => (relayInUse() === 0 ? true : undefined), 5000, 'the relay slot')
    assert.equal(log.close?.code, 1000)
  })

  it("maps the far end's request id, learnt from its first message when no header names it", async () => {
    const { ws, log, closed } = await open('mode=echo')
    const ours = String(log.headers?.['dg-request-id'])
    ws.send(JSON.stringify({ type: 'Results', metadata: { request_id: 'far-id-1' }, note: 'far-id-1 again' }))
    await eventually(async () => (log.messages.length > 0 ? true : undefined), 5000, 'the echo')
    assert.deepEqual(log.messages[0], {
      type: 'Results',
      metadata: { request_id: ours },
      note: `${ours} again`,
    })
    ws.close()
    await closed
  })

  it('sorts refusals at the upgrade by whose fault they are', async () => {
    const cases: [number, number, string][] = [
      [401, 502, 'UPSTREAM_ERROR'],
      [403, 502, 'UPSTREAM_ERROR'],
      [429, 429, 'TOO_MANY_REQUESTS'],
      [503, 503, 'SERVICE_UNAVAILABLE'],
      [500, 502, 'UPSTREAM_ERROR'],
      [400, 400, 'BAD_REQUEST'],
    ]
    for (const [farStatus, status, code] of cases) {
      const { log } = await open(`reject=${farStatus}`)
      assert.equal(log.status, status, `far end ${farStatus}`)
      assert.equal(log.body?.err_code, code)
      assert.equal(log.body?.request_id, log.headers?.['dg-request-id'], "the gateway's own request id")
      if (farStatus === 400) assert.equal(log.body?.err_msg, 'The fake said no.')
    }
    assert.equal(relayInUse(), 0)
  })

  it('sorts refusals of a pre-recorded request the same way, and never passes the server key on', async () => {
    const post = (query: string) =>
      fetch(`${gw.url}/v1/listen?${query}`, {
        method: 'POST',
        headers: { authorization: `Token ${gw.ownerKey}`, 'content-type': 'application/octet-stream' },
        body: randomBytes(1000),
      })
    for (const [farStatus, status, code] of [
      [401, 502, 'UPSTREAM_ERROR'],
      [500, 502, 'UPSTREAM_ERROR'],
      [429, 429, 'TOO_MANY_REQUESTS'],
      [413, 413, 'PAYLOAD_TOO_LARGE'],
      [400, 400, 'BAD_REQUEST'],
    ] as const) {
      const res = await post(`status=${farStatus}&echo_auth=1`)
      const body = (await res.json()) as { err_code: string; err_msg: string; request_id: string }
      assert.equal(res.status, status, `far end ${farStatus}`)
      assert.equal(body.err_code, code)
      assert.equal(body.request_id, res.headers.get('dg-request-id'))
      assert.ok(!JSON.stringify(body).includes(UPSTREAM_KEY), 'the server key reached a client')
      if (farStatus === 429) assert.equal(res.headers.get('retry-after'), '7')
      if (farStatus === 400) assert.match(body.err_msg, /\[redacted\]/)
    }
  })

  it('answers a 200 under its own request id and meters what the far end reports for a container', async () => {
    const res = await fetch(`${gw.url}/v1/listen?model=nova-3`, {
      method: 'POST',
      headers: { authorization: `Token ${gw.ownerKey}`, 'content-type': 'audio/webm' },
      body: randomBytes(5000),
    })
    assert.equal(res.status, 200)
    const id = res.headers.get('dg-request-id') ?? ''
    assert.deepEqual(await res.json(), {
      metadata: { request_id: id, duration: 1.5 },
      results: { channels: [] },
    })
    const last = far.requests.at(-1)
    assert.equal(last?.bytes, 5000, 'the bytes as sent')
    assert.equal(last?.req.headers['content-type'], 'audio/webm')
    const record = await gw.earmark.services.store.getUsage(gw.projectId, id)
    assert.equal(record?.audioSeconds, 1.5)
  })

  it('closes the client 1011 NET-0000 when the far end dies mid-stream, and frees the slot', async () => {
    const { ws, closed } = await open('mode=echo&encoding=linear16&sample_rate=16000')
    ws.send(Buffer.alloc(3200))
    const conn = far.connections.at(-1)
    assert.ok(conn)
    conn.ws.terminate()
    const log = await closed
    assert.deepEqual(log.close, { code: 1011, reason: 'NET-0000' })
    await eventually(async () => (relayInUse() === 0 ? true : undefined), 5000, 'the relay slot')
  })

  it('closes the far end when the client leaves, and keeps memory bounded when one side stops reading', async () => {
    const { ws } = await open('mode=flood')
    const conn = far.connections.at(-1)
    assert.ok(conn)
    // The client stops reading: the gateway stops reading the far end, whose own queue then fills.
    ;(ws as unknown as { _socket: { pause(): void } })._socket.pause()
    const heapBefore = heapMiB()
    await eventually(
      async () => (conn.maxBuffered >= 7 * 1024 * 1024 ? true : undefined),
      20_000,
      'push-back',
    )
    assert.ok(heapMiB() - heapBefore < 64, `heap grew ${Math.round(heapMiB() - heapBefore)} MiB`)
    ws.terminate()
    const farClose = await conn.closed
    assert.ok(farClose.code >= 1000)
    await eventually(async () => (relayInUse() === 0 ? true : undefined), 10_000, 'the relay slot')
  })

  it('answers 502 at the upgrade and on REST when the far end cannot be reached', async () => {
    const nowhere = await startLiveServer({
      EARMARK_ENGINE: 'upstream',
      EARMARK_UPSTREAM_URL: `http://127.0.0.1:${await freePort()}`,
      EARMARK_UPSTREAM_KEY: UPSTREAM_KEY,
    })
    try {
      const { log } = await openSocket(`${wsUrlOf(nowhere.url)}/v1/listen`, {
        protocols: ['token', nowhere.ownerKey],
      })
      assert.equal(log.status, 502)
      assert.equal(log.body?.err_code, 'UPSTREAM_ERROR')
      const res = await fetch(`${nowhere.url}/v1/listen`, {
        method: 'POST',
        headers: { authorization: `Token ${nowhere.ownerKey}` },
        body: randomBytes(100),
      })
      assert.equal(res.status, 502)
      assert.equal(((await res.json()) as { err_code: string }).err_code, 'UPSTREAM_ERROR')
      assert.equal(nowhere.earmark.engines.default.inUse(), 0)
    } finally {
      await nowhere.close()
    }
  })
})
