import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { pcmBytes, streamFrames } from '../helpers/listen-e2e.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import {
  handshakeHeaders,
  type RawAnswer,
  rawConnect,
  rawRequest,
  requestHead,
  socketsReleased,
} from '../helpers/raw-upgrade.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

const RAW = 'encoding=linear16&sample_rate=16000'
const SENTENCE = 'please open the door'

/** A refused upgrade answer in Deepgram's shape, with its request id in the body and both headers. */
function assertRefusal(answer: RawAnswer, status: number, errCode: string, what: string): void {
  assert.equal(answer.status, status, `${what}: ${answer.status} ${answer.body}`)
  const body = JSON.parse(answer.body) as { err_code: string; err_msg: string; request_id: string }
  assert.equal(body.err_code, errCode, what)
  assert.equal(typeof body.err_msg, 'string', what)
  assert.ok(body.request_id, `${what}: request_id`)
  assert.equal(answer.headers['dg-request-id'], body.request_id, `${what}: dg-request-id`)
  assert.equal(answer.headers['x-request-id'], body.request_id, `${what}: x-request-id`)
  assert.match(answer.headers['dg-error'] ?? '', /^[\x20-\x7e]+$/, `${what}: dg-error is printable ASCII`)
}

describe('the /v1/listen upgrade under hostile handshakes', () => {
  let srv: LiveServer
  let port: number
  let auth: string
  let audio: Int16Array

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '2' })
    port = (srv.earmark.app.server.address() as AddressInfo).port
    auth = `Token ${srv.ownerKey}`
    audio = concatPcm(silence(0.3), await speech(SENTENCE), silence(1.2))
  })
  after(() => srv.close())

  const settled = () => socketsReleased(srv.earmark)

  const request = (
    headers: Record<string, string | undefined>,
    method = 'GET',
    target = `/v1/listen?${RAW}`,
  ) =>
    rawRequest(port, requestHead(method, target, { ...handshakeHeaders(), authorization: auth, ...headers }))

  /** Handshakes `ws` would refuse, all with a good credential: each is refused before anything is claimed. */
  const REFUSED: [string, Record<string, string | undefined>, string, number, string][] = [
    [
      'a key of 15 bytes',
      { 'sec-websocket-key': Buffer.alloc(15, 7).toString('base64') },
      'GET',
      400,
      'BAD_REQUEST',
    ],
    [
      'a key of 17 bytes',
      { 'sec-websocket-key': Buffer.alloc(17, 7).toString('base64') },
      'GET',
      400,
      'BAD_REQUEST',
    ],
    [
      'a key that is not base64',
      { 'sec-websocket-key': '!!!!!!!!!!!!!!!!!!!!!!==' },
      'GET',
      400,
      'BAD_REQUEST',
    ],
    ['a key with no padding', { 'sec-websocket-key': 'AAAAAAAAAAAAAAAAAAAAAA' }, 'GET', 400, 'BAD_REQUEST'],
    ['no key', { 'sec-websocket-key': undefined }, 'GET', 400, 'BAD_REQUEST'],
    ['no version', { 'sec-websocket-version': undefined }, 'GET', 426, 'UPGRADE_REQUIRED'],
    ['version 8', { 'sec-websocket-version': '8' }, 'GET', 426, 'UPGRADE_REQUIRED'],
    ['version 12', { 'sec-websocket-version': '12' }, 'GET', 426, 'UPGRADE_REQUIRED'],
    ['a version that is not a number', { 'sec-websocket-version': 'abc' }, 'GET', 426, 'UPGRADE_REQUIRED'],
    ['an Upgrade to another protocol', { upgrade: 'h2c' }, 'GET', 400, 'BAD_REQUEST'],
    ['an Upgrade list', { upgrade: 'websocket, h2c' }, 'GET', 400, 'BAD_REQUEST'],
    ['a POST', {}, 'POST', 405, 'METHOD_NOT_ALLOWED'],
    ['a repeated subprotocol', { 'sec-websocket-protocol': 'token, token' }, 'GET', 400, 'BAD_REQUEST'],
    [
      'a subprotocol list with an empty entry',
      { 'sec-websocket-protocol': 'token,,x' },
      'GET',
      400,
      'BAD_REQUEST',
    ],
  ]
  for (const [what, headers, method, status, code] of REFUSED) {
    it(`refuses ${what} with ${status} ${code} and claims nothing`, async () => {
      const answer = await request(headers, method)
      assertRefusal(answer, status, code, what)
      if (status === 426) assert.equal(answer.headers['sec-websocket-version'], '13')
      await settled()
    })
  }

  it('refuses options holding any character with a Deepgram body and a header-safe dg-error', async () => {
    for (const [query, code] of [
      ['language=%F0%9F%99%82', 'INVALID_FIELD'],
      ['model=nova-%00%0d%0a', 'MODEL_NOT_FOUND'],
      ['encoding=%C3%A9', 'INVALID_FIELD'],
      ['tag=%FF&sample_rate=x', 'INVALID_FIELD'],
    ] as const) {
      assertRefusal(await request({}, 'GET', `/v1/listen?${query}`), 400, code, query)
    }
    await settled()
  })

  it('answers a sound handshake on an unknown path with 404 before looking at the credential', async () => {
    const answer = await request({ authorization: undefined }, 'GET', '/v1/elsewhere')
    assertRefusal(answer, 404, 'NOT_FOUND', 'unknown path')
  })

  it('leaves a request without Upgrade or without Connection: upgrade to the HTTP routes, never a 101', async () => {
    for (const headers of [{ upgrade: undefined }, { connection: 'keep-alive' }]) {
      const answer = await request({ ...headers, connection: headers.connection ?? 'close' })
      assert.ok(answer.status >= 400 && answer.status < 500, `${JSON.stringify(headers)}: ${answer.status}`)
      const body = JSON.parse(answer.body) as { err_code: string; request_id: string }
      assert.ok(body.err_code && body.request_id, answer.body)
    }
    await settled()
  })

  it('releases everything when clients drop at every step of the upgrade', async () => {
    const head = requestHead('GET', `/v1/listen?${RAW}`, { ...handshakeHeaders(), authorization: auth })
    let upgraded = 0
    for (let round = 0; round < 10; round++) {
      // Before the headers end.
      const a = await rawConnect(port)
      a.write(head.slice(0, head.length - 10))
      a.destroy()
      // Right after the headers, while the credential is checked and the stream is claimed.
      const b = await rawConnect(port)
      b.write(requestHead('GET', `/v1/listen?${RAW}`, { ...handshakeHeaders(), authorization: auth }))
      b.destroy()
      // A few milliseconds later (during the usage insert, or just after the 101).
      const c = await rawConnect(port)
      c.write(requestHead('GET', `/v1/listen?${RAW}`, { ...handshakeHeaders(), authorization: auth }))
      setTimeout(() => c.destroy(), round % 4)
      // Right after the 101.
      // Slots the earlier drops held may not be released yet: a 429 is an honest answer, a leak is not.
      const d = await request({})
      assert.ok(d.status === 101 || d.status === 429, `${d.status} ${d.body}`)
      upgraded += d.status === 101 ? 1 : 0
    }
    assert.ok(upgraded > 0, 'some upgrades completed')
    await settled()
  })

  it('refuses a thousand bad handshakes in a row quickly, then admits a stream that transcribes', async () => {
    const started = Date.now()
    const statuses = new Map<number, number>()
    for (let batch = 0; batch < 20; batch++) {
      const answers = await Promise.all(
        Array.from({ length: 50 }, (_, i) =>
          request(
            i % 2 === 0
              ? { 'sec-websocket-key': 'short==' }
              : { 'sec-websocket-version': String(100 + batch * 50 + i) },
          ),
        ),
      )
      for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1)
    }
    const elapsed = Date.now() - started
    assert.deepEqual(Object.fromEntries(statuses), { 400: 500, 426: 500 })
    assert.ok(elapsed < 30_000, `1000 refusals took ${elapsed} ms`)
    await settled()
    const outcome = await streamFrames(srv.wsUrl, { headers: { authorization: auth } }, RAW, [
      pcmBytes(audio),
    ])
    assert.equal(outcome.close?.code, 1000)
    assert.ok(wordErrorRate(SENTENCE, outcome.transcript) <= 0.5, outcome.transcript)
    await settled()
  })

  it('finishes the usage record of every stream whose client dropped', async () => {
    const records = await srv.earmark.services.store.listUsage(srv.projectId, {
      endpoint: 'listen',
      limit: 1000,
    })
    const streaming = records.filter((r) => r.method === 'streaming')
    assert.ok(streaming.length > 0)
    assert.deepEqual(
      streaming.filter((r) => r.endedAt === null || r.status === null).map((r) => r.id),
      [],
      'open usage records',
    )
  })
})

describe('the /v1/listen upgrade at shutdown', () => {
  it('ends open streams and releases their slots when the server closes', async () => {
    const srv = await startLiveServer({ EARMARK_CAPACITY: '2' })
    const port = (srv.earmark.app.server.address() as AddressInfo).port
    const head = () =>
      requestHead('GET', `/v1/listen?${RAW}`, {
        ...handshakeHeaders(),
        authorization: `Token ${srv.ownerKey}`,
      })
    const open = await rawConnect(port)
    const upgraded = new Promise<void>((resolve) => open.once('data', () => resolve()))
    open.write(head())
    await upgraded
    const closed = new Promise<void>((resolve) => open.once('close', () => resolve()))
    open.resume()
    assert.equal(srv.earmark.engine.inUse(), 1)
    // One more upgrade in flight as the server closes.
    const late = await rawConnect(port)
    late.on('error', () => {})
    late.write(head())
    const started = Date.now()
    await srv.earmark.app.close()
    assert.equal(srv.earmark.sockets.active, 0, 'no lease outlives app.close()')
    assert.equal(srv.earmark.engine.inUse(), 0)
    await closed
    assert.ok(Date.now() - started < 5000)
    late.destroy()
    await srv.close()
  })
})
