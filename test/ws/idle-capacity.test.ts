import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type WebSocket from 'ws'
import { eventually, type OwnerApi, ownerApi, pcmBytes, wav } from '../helpers/listen-e2e.js'
import {
  finals,
  type LiveServer,
  openSocket,
  type StreamLog,
  sendPcm,
  startLiveServer,
} from '../helpers/live-server.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

// Idle and greedy credentials on the live /v1/listen socket of a real Earmark (real SQLite, real PocketSphinx):
// a stream that sends only KeepAlive is closed after EARMARK_WS_KEEPALIVE_ONLY_MS, and one key or end user
// holds at most its share of the slots (docs/speech.md "Idle and greedy credentials").

const RAW = 'encoding=linear16&sample_rate=16000'
const KEEPALIVE_ONLY_MS = 1500
const PER_KEY = 2
const PER_END_USER = 1
const KEEPALIVE = JSON.stringify({ type: 'KeepAlive' })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Sends KeepAlive every 250 ms until the socket closes or `ms` passed. */
async function keepAliveFor(ws: WebSocket, ms: number): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until && ws.readyState === ws.OPEN) {
    ws.send(KEEPALIVE)
    await sleep(250)
  }
}

describe('idle credentials do not hold speech capacity', { timeout: 120_000 }, () => {
  let srv: LiveServer
  let owner: OwnerApi
  const listen = (credential: string, scheme: 'token' | 'bearer' = 'token') =>
    openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: [scheme, credential] })
  const grant = async (key: string, endUser?: string) => {
    const res = await fetch(`${srv.url}/v1/auth/grant`, {
      method: 'POST',
      headers: { authorization: `Token ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl_seconds: 600, ...(endUser ? { end_user: endUser } : {}) }),
    })
    assert.equal(res.status, 200)
    return ((await res.json()) as { access_token: string }).access_token
  }
  let recording: Buffer
  const transcribe = (key: string) =>
    fetch(`${srv.url}/v1/listen`, {
      method: 'POST',
      headers: { authorization: `Token ${key}`, 'content-type': 'audio/wav' },
      body: recording,
    })
  const closeStream = async (s: { ws: WebSocket; closed: Promise<StreamLog> }) => {
    s.ws.send(JSON.stringify({ type: 'CloseStream' }))
    return s.closed
  }
  const assertRefused = (log: StreamLog, what: string) => {
    assert.equal(log.status, 429, `${what}: ${JSON.stringify(log.body)}`)
    assert.equal(log.body?.err_code, 'TOO_MANY_REQUESTS')
    assert.equal(typeof log.body?.err_msg, 'string')
    assert.match(log.body?.request_id ?? '', /^[0-9a-f-]{36}$/)
  }
  const idleEngine = () =>
    eventually(async () => (srv.earmark.engine.inUse() === 0 ? true : undefined), 10_000, 'inUse() 0')

  before(async () => {
    srv = await startLiveServer({
      EARMARK_CAPACITY: '4',
      EARMARK_WS_KEEPALIVE_ONLY_MS: String(KEEPALIVE_ONLY_MS),
      EARMARK_MAX_STREAMS_PER_KEY: String(PER_KEY),
      EARMARK_MAX_STREAMS_PER_END_USER: String(PER_END_USER),
    })
    owner = await ownerApi(srv.url, srv.ownerKey)
    recording = wav(concatPcm(silence(0.3), await speech('good morning'), silence(0.5)))
  })
  after(() => srv.close())

  it('a stream that sends only KeepAlive is closed 1011 NET-0001 after the limit, its slot and usage released', async () => {
    const s = await listen(srv.ownerKey)
    assert.equal(s.log.status, undefined)
    const requestId = String(s.log.headers?.['dg-request-id'])
    const opened = Date.now()
    await keepAliveFor(s.ws, 10_000)
    const log = await s.closed
    const held = Date.now() - opened
    console.log(`KeepAlive-only stream closed after ${held} ms (limit ${KEEPALIVE_ONLY_MS} ms)`)
    assert.deepEqual(log.close, { code: 1011, reason: 'NET-0001' })
    assert.ok(held >= KEEPALIVE_ONLY_MS - 50 && held < KEEPALIVE_ONLY_MS + 2000, `closed after ${held} ms`)
    await idleEngine()
    const record = await eventually(
      async () => {
        const r = await srv.earmark.services.store.getUsage(srv.projectId, requestId)
        return r?.endedAt ? r : undefined
      },
      5000,
      'the usage record to close',
    )
    assert.equal(record.status, 1011)
    assert.equal(record.detail, 'NET-0001')
  })

  it('a stream that sent audio and then only KeepAlive is closed the limit after its last audio', async () => {
    const s = await listen(srv.ownerKey)
    await sendPcm(s.ws, silence(0.5), 100, true)
    const lastAudio = Date.now()
    await keepAliveFor(s.ws, 10_000)
    const log = await s.closed
    const held = Date.now() - lastAudio
    console.log(`closed ${held} ms after the last audio (limit ${KEEPALIVE_ONLY_MS} ms)`)
    assert.deepEqual(log.close, { code: 1011, reason: 'NET-0001' })
    assert.ok(held >= KEEPALIVE_ONLY_MS - 50 && held < KEEPALIVE_ONLY_MS + 2000, `closed after ${held} ms`)
    await idleEngine()
  })

  it('a client pausing with KeepAlive for less than the limit between utterances stays open and is transcribed', async () => {
    const sentences = ['please open the door', 'the weather is nice today', 'turn off the lights']
    const s = await listen(srv.ownerKey)
    // Three pauses of 1 s each: 3 s of KeepAlive in all, twice the limit, but never 1.5 s without audio.
    for (const sentence of sentences) {
      s.ws.send(pcmBytes(concatPcm(silence(0.3), await speech(sentence), silence(0.8))))
      await keepAliveFor(s.ws, 1000)
      assert.equal(
        s.ws.readyState,
        s.ws.OPEN,
        'the stream is still open after a pause shorter than the limit',
      )
    }
    const log = await closeStream(s)
    assert.deepEqual(log.close, { code: 1000, reason: '' })
    const wer = wordErrorRate(sentences.join(' '), finals(log))
    assert.ok(wer <= 0.35, `WER ${wer}: "${finals(log)}"`)
    await idleEngine()
  })

  it('one key holds at most its cap of streams (429 in the Deepgram shape) while another key still opens one, and opens again once one closes', async () => {
    const a = await owner.createKey('greedy')
    const b = await owner.createKey('other')
    const held = [await listen(a.key), await listen(a.key)]
    for (const s of held) assert.equal(s.log.status, undefined)
    assertRefused((await listen(a.key)).log, 'a third stream of the key')
    // A grant token counts against the key that minted it.
    assertRefused((await listen(await grant(a.key), 'bearer')).log, 'a grant of the key at its cap')
    const other = await listen(b.key)
    assert.equal(other.log.status, undefined, 'another key still opens a stream')
    // Pre-recorded requests draw on the same share.
    const refused = await transcribe(a.key)
    assert.equal(refused.status, 429)
    assert.equal(((await refused.json()) as { err_code: string }).err_code, 'TOO_MANY_REQUESTS')
    assert.equal((await transcribe(b.key)).status, 200, 'another key still transcribes')

    const first = held.shift()
    assert.ok(first)
    assert.equal((await closeStream(first)).close?.code, 1000)
    assert.equal((await transcribe(a.key)).status, 200, 'the key transcribes once a stream closed')
    const again = await listen(await grant(a.key), 'bearer')
    assert.equal(again.log.status, undefined, 'a grant of the key opens once a stream closed')
    assertRefused((await listen(a.key)).log, 'the key at its cap again, the grant counted')

    for (const s of [...held, again, other]) await closeStream(s)
    await idleEngine()
    const last = await listen(a.key)
    assert.equal(last.log.status, undefined, 'every share was given back')
    await closeStream(last)
    await idleEngine()
  })

  it('two end users of one key are capped separately', async () => {
    const k = await owner.createKey('app')
    const alice = [await listen(await grant(k.key, 'alice'), 'bearer')]
    assert.equal(alice[0]?.log.status, undefined)
    assertRefused((await listen(await grant(k.key, 'alice'), 'bearer')).log, "alice's second stream")
    const bob = await listen(await grant(k.key, 'bob'), 'bearer')
    assert.equal(bob.log.status, undefined, "bob's first stream, with alice at her cap")
    // Now the key holds its cap of two: a third end user is refused for the key's share.
    assertRefused(
      (await listen(await grant(k.key, 'carol'), 'bearer')).log,
      'a third end user at the key cap',
    )

    const first = alice[0]
    assert.ok(first)
    await closeStream(first)
    const alice2 = await listen(await grant(k.key, 'alice'), 'bearer')
    assert.equal(alice2.log.status, undefined, 'alice opens again once her stream closed')
    for (const s of [alice2, bob]) await closeStream(s)
    await idleEngine()
  })
})

describe('the default share is per credential: one key or one token, not every token of a key', () => {
  let srv: LiveServer
  before(async () => {
    // Capacity 2 with the shipped defaults: one slot per credential, no cap per key.
    srv = await startLiveServer({
      EARMARK_CAPACITY: '2',
      EARMARK_MAX_STREAMS_PER_CREDENTIAL: '1',
      EARMARK_MAX_STREAMS_PER_KEY: '0',
    })
  })
  after(() => srv.close())

  it('a token takes one slot, a second token of the same key the other, and neither can take both', async () => {
    const mint = async () => {
      const res = await fetch(`${srv.url}/v1/auth/grant`, {
        method: 'POST',
        headers: { authorization: `Token ${srv.ownerKey}` },
      })
      return ((await res.json()) as { access_token: string }).access_token
    }
    const open = (token: string) =>
      openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['bearer', token] })
    const first = await mint()
    const a = await open(first)
    assert.equal(a.log.status, undefined)
    const again = await open(first)
    assert.equal(again.log.status, 429, 'the same token twice')
    assert.equal(again.log.body?.err_code, 'TOO_MANY_REQUESTS')
    const b = await open(await mint())
    assert.equal(b.log.status, undefined, 'another token of the same key (the app server pattern)')
    for (const s of [a, b]) {
      s.ws.send(JSON.stringify({ type: 'CloseStream' }))
      await s.closed
    }
    await eventually(async () => (srv.earmark.engine.inUse() === 0 ? true : undefined), 10_000, 'inUse 0')
  })
})
