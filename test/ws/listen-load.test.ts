import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { pcmBytes, percent, wsUrlOf } from '../helpers/listen-e2e.js'
import { finals, openSocket, type StreamLog } from '../helpers/live-server.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { chunks, concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

// Ten live streams at once on a real `earmark serve` process with ten real PocketSphinx decoders: each stream
// hears only its own audio and gets only its own Results (docs/deepgram-compat.md §7.3).

const OWNER_KEY = `emk_test_${randomBytes(16).toString('hex')}`
const RAW = 'encoding=linear16&sample_rate=16000'
const STREAMS = 10

/** Ten different sentences, each decoded one-shot at 0–25 % WER; together they share few words but "the". */
const SENTENCES = [
  'the children are playing football in the park',
  'can you tell me the way to the station',
  'the coffee shop on main street opens at seven',
  'my sister lives in a small house near the river',
  'please remember to lock the door when you leave',
  'the dog ran across the yard to catch the ball',
  'i want to buy two tickets for the concert on friday',
  'the price of bread went up again this year',
  'we watched a movie about a family of farmers',
  'the doctor said i should drink more water',
]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('ten concurrent live streams on a real Earmark process', { timeout: 180_000 }, () => {
  let server: ServerProcess | undefined

  before(async () => {
    assert.equal(SENTENCES.length, STREAMS)
    server = await startServerProcess({
      bootstrapKey: OWNER_KEY,
      env: { EARMARK_CAPACITY: String(STREAMS) },
      // Ten decoders load and warm up on two cores.
      timeoutMs: 90_000,
    })
  })

  after(async () => {
    if (!server) return
    await server.stop()
    removeDir(server.dataDir)
  })

  it('gives each of ten concurrent streams its own transcript, never another stream’s words or request id', async (t) => {
    if (!server) throw new Error('the server did not start')
    const wsUrl = wsUrlOf(server.url)
    const audio = await Promise.all(
      SENTENCES.map(async (s) => concatPcm(silence(0.3), await speech(s), silence(1))),
    )

    // All ten are open before any audio flows, and an eleventh is refused: they really run at once.
    const streams = await Promise.all(
      SENTENCES.map(() => openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['token', OWNER_KEY] })),
    )
    for (const s of streams) assert.equal(s.log.status, undefined, JSON.stringify(s.log.body))
    const extra = await openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['token', OWNER_KEY] })
    assert.equal(extra.log.status, 429, 'capacity is ten')

    // Real-time pace, 100 ms chunks, interleaved: each tick sends the next chunk of every stream.
    const parts = audio.map((pcm) => chunks(pcm, 100))
    const ticks = Math.max(...parts.map((p) => p.length))
    for (let tick = 0; tick < ticks; tick++) {
      streams.forEach(({ ws }, i) => {
        const chunk = parts[i]?.[tick]
        if (chunk) ws.send(pcmBytes(chunk))
      })
      await sleep(100)
    }
    for (const { ws } of streams) ws.send(JSON.stringify({ type: 'CloseStream' }))
    const logs: StreamLog[] = await Promise.all(streams.map((s) => s.closed))

    const requestIds = logs.map((log) => String(log.headers?.['dg-request-id'] ?? ''))
    assert.equal(new Set(requestIds).size, STREAMS, 'ten distinct request ids')
    logs.forEach((log, i) => {
      const own = SENTENCES[i] ?? ''
      const transcript = finals(log)
      const rates = SENTENCES.map((s) => wordErrorRate(s, transcript))
      t.diagnostic(`stream ${i}: WER ${percent(rates[i] ?? 1)}: ${transcript}`)
      assert.equal(log.close?.code, 1000, `stream ${i} closes normally`)
      assert.ok(transcript.length > 0, `stream ${i} got a transcript`)
      rates.forEach((rate, j) => {
        if (j !== i) {
          assert.ok(
            (rates[i] ?? 1) < rate,
            `stream ${i} matches its own sentence (${percent(rates[i] ?? 1)}) better than sentence ${j} (${percent(rate)}): ${transcript} / ${own}`,
          )
        }
      })
      // Every message of the stream carries its own request id, none of another stream's.
      for (const message of log.messages) {
        const id =
          message.type === 'Results'
            ? (message.metadata as { request_id: string }).request_id
            : (message.request_id as string | undefined)
        if (id !== undefined)
          assert.equal(id, requestIds[i], `stream ${i}: a ${String(message.type)} message`)
      }
      assert.equal(log.messages.at(-1)?.type, 'Metadata')
    })
  })
})
