import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type WebSocket from 'ws'
import { pcmBytes } from '../helpers/listen-e2e.js'
import { finals, type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { socketsReleased } from '../helpers/raw-upgrade.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

const RAW = 'encoding=linear16&sample_rate=16000'
const SENTENCE = 'please open the door'

/** Text frames that are not control messages, or are control messages at the wrong time. */
const ODD_TEXT = [
  'null',
  '1',
  '-0',
  '"x"',
  '"CloseStream"',
  '[]',
  '[{"type":"CloseStream"}]',
  '{}',
  '{"type":null}',
  '{"type":{}}',
  '{"type":1}',
  '{"type":[]}',
  '{"type":true}',
  '{"type":"closestream"}',
  '{"type":"__proto__"}',
  '{"__proto__":{"type":"CloseStream"}}',
  '{"constructor":{"prototype":{"type":"CloseStream"}}}',
  '{"type":"Configure","processors":null}',
  'not json',
  '{"type":"KeepAlive"',
  '',
  `"${'x'.repeat(1_000_000)}"`,
  `{"type":"${'y'.repeat(1_000_000)}"}`,
  '['.repeat(100_000),
]

describe('live /v1/listen under hostile input', () => {
  let srv: LiveServer
  let audio: Int16Array
  /** The idle timeout stays Deepgram's 10 s, so "fast" below means well under it. */
  const IDLE_MS = 10_000

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '3', EARMARK_WS_IDLE_TIMEOUT_MS: String(IDLE_MS) })
    audio = concatPcm(silence(0.3), await speech(SENTENCE), silence(1.2))
  })
  after(() => srv.close())

  const open = (query = RAW) =>
    openSocket(`${srv.wsUrl}/v1/listen?${query}`, { protocols: ['token', srv.ownerKey] })
  const released = () => socketsReleased(srv.earmark)
  const stillServing = async () => {
    const res = await fetch(`${srv.url}/v1/projects`, { headers: { authorization: `Token ${srv.ownerKey}` } })
    assert.equal(res.status, 200)
  }

  it('ignores text frames of any JSON value or none, while another stream transcribes undisturbed', async () => {
    const other = await open()
    const speaking = sendPcm(other.ws, audio, 100, true)
    const odd = await open()
    for (const text of ODD_TEXT) odd.ws.send(text)
    await sendPcm(odd.ws, audio.subarray(0, 16000))
    for (const text of ODD_TEXT.slice(0, 20)) odd.ws.send(text)
    odd.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const end = await odd.closed
    assert.equal(end.close?.code, 1000)
    assert.equal(end.messages.at(-1)?.type, 'Metadata')
    await speaking
    other.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const reference = await other.closed
    assert.equal(reference.close?.code, 1000)
    assert.ok(wordErrorRate(SENTENCE, finals(reference)) <= 0.5, finals(reference))
    await released()
    await stillServing()
  })

  it('takes Finalize after CloseStream, CloseStream twice and messages after the end without a fault', async () => {
    for (const after of [
      [{ type: 'CloseStream' }, { type: 'Finalize' }],
      [{ type: 'CloseStream' }, { type: 'CloseStream' }, { type: 'Finalize' }, { type: 'KeepAlive' }],
      [{ type: 'Finalize' }, { type: 'CloseStream' }, { type: 'Finalize' }, { type: 'CloseStream' }],
    ]) {
      const { ws, closed } = await open()
      await sendPcm(ws, audio)
      for (const message of after) ws.send(JSON.stringify(message))
      ws.send(pcmBytes(audio.subarray(0, 1600)))
      const end = await closed
      assert.equal(end.close?.code, 1000, JSON.stringify(after))
      assert.equal(end.messages.at(-1)?.type, 'Metadata')
      assert.ok(wordErrorRate(SENTENCE, finals(end)) <= 0.5, finals(end))
    }
    await released()
    await stillServing()
  })

  it('survives a flood of KeepAlive and Finalize mixed with audio, and still ends normally', async () => {
    const { ws, log, closed } = await open(`${RAW}&endpointing=false`)
    const frames = audio.length / 1600
    for (let i = 0; i < frames; i++) {
      ws.send(pcmBytes(audio.subarray(i * 1600, (i + 1) * 1600)))
      for (let k = 0; k < 200; k++) ws.send('{"type":"KeepAlive"}')
      for (let k = 0; k < 20; k++) ws.send('{"type":"Finalize"}')
    }
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    const end = await closed
    assert.equal(end.close?.code, 1000)
    assert.ok(log.messages.some((m) => m.from_finalize === true))
    await released()
  })

  it('closes a stream that sends invalid UTF-8 text with 1007, and that stream alone', async () => {
    const other = await open()
    const { ws, closed } = await open()
    ;(ws as WebSocket).send(Buffer.from([0x7b, 0xff, 0xfe, 0xc3, 0x28, 0x7d]), { binary: false })
    const end = await closed
    assert.equal(end.close?.code, 1007)
    assert.equal(other.log.close, undefined, 'the other stream is still open')
    await sendPcm(other.ws, audio)
    other.ws.send(JSON.stringify({ type: 'CloseStream' }))
    assert.equal((await other.closed).close?.code, 1000)
    await released()
  })

  it('closes a stream whose text frame passes the size limit with 1009', async () => {
    const { ws, closed } = await open()
    ws.send('x'.repeat(5 * 1024 * 1024))
    assert.equal((await closed).close?.code, 1009)
    await released()
    await stillServing()
  })

  it('closes random binary frames with no encoding with 1008 DATA-0000, well before the idle timeout', async () => {
    for (let round = 0; round < 6; round++) {
      const { ws, closed } = await open('')
      const started = Date.now()
      for (let i = 0; i < 8; i++) {
        const frame = randomBytes(1024)
        frame[0] = 0 // not an MPEG frame sync or any container's magic
        ws.send(frame)
      }
      const end = await closed
      const elapsed = Date.now() - started
      assert.equal(end.close?.code, 1008)
      assert.equal(end.close?.reason, 'DATA-0000')
      assert.ok(elapsed < 4000, `closed after ${elapsed} ms (idle timeout ${IDLE_MS} ms)`)
    }
    await released()
  })

  it('closes a stream whose few bytes are too short to name any format with 1008 DATA-0000, before the idle timeout', async () => {
    for (const size of [1, 11]) {
      const { ws, closed } = await open('')
      const started = Date.now()
      ws.send(Buffer.alloc(size))
      const end = await closed
      const elapsed = Date.now() - started
      assert.deepEqual(end.close, { code: 1008, reason: 'DATA-0000' }, `${size} bytes`)
      assert.ok(elapsed < 4000, `closed after ${elapsed} ms (idle timeout ${IDLE_MS} ms)`)
    }
    await released()
  })

  it('closes random bytes that only look like a container (an MPEG sync, an Ogg page) with 1008 DATA-0000', async () => {
    for (const magic of [Buffer.from([0xff, 0xfb, 0x90, 0x64]), Buffer.from('OggS')]) {
      const { ws, closed } = await open('')
      const started = Date.now()
      ws.send(Buffer.concat([magic, randomBytes(16 * 1024)]))
      for (let i = 0; i < 40; i++) ws.send(randomBytes(16 * 1024))
      const end = await closed
      const elapsed = Date.now() - started
      assert.equal(end.close?.code, 1008, magic.toString('hex'))
      assert.equal(end.close?.reason, 'DATA-0000')
      assert.ok(elapsed < 5000, `closed after ${elapsed} ms`)
    }
    await released()
  })
})
