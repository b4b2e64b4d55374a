// The same audio gives the same transcript whatever the pooled decoders decoded before (issue 11, item 3):
// one recording decoded again and again over REST and live, interleaved with other audio (real read speech,
// other voices, noise), through the real server and real PocketSphinx. Before the fix the decoders carried
// their live cepstral mean from one request to the next, and live slices depended on how fast the decoder
// kept up: the words or their timings moved from one run to the next.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { pcmBytes, postListen, streamFrames, wav } from '../helpers/listen-e2e.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'

const LIBRIVOX = '/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav'
const ROUNDS = 3

interface Word {
  word: string
  start: number
  end: number
  confidence: number
}

/** What must not change between runs: every word with its timing and confidence, per utterance. */
type Decoded = Array<{ transcript: string; start?: number; words: Word[] }>

interface Alternative {
  transcript: string
  words: Word[]
}

const pick = ({ word, start, end, confidence }: Word): Word => ({ word, start, end, confidence })

async function rest(server: LiveServer, pcm: Int16Array): Promise<Decoded> {
  const res = await postListen(server.url, `Token ${server.ownerKey}`, wav(pcm))
  assert.equal(res.status, 200, JSON.stringify(res.body))
  const body = res.body as { results: { channels: Array<{ alternatives: Alternative[] }> } }
  const best = body.results.channels[0]?.alternatives[0]
  assert.ok(best)
  return [{ transcript: best.transcript, words: best.words.map(pick) }]
}

/** `pcm` in chunks of `chunkMs`, `paceMs` apart: a different pace must not change the answer. */
async function live(server: LiveServer, pcm: Int16Array, chunkMs: number, paceMs: number): Promise<Decoded> {
  const step = (16_000 * chunkMs) / 1000
  const frames: Uint8Array[] = []
  for (let at = 0; at < pcm.length; at += step) frames.push(pcmBytes(pcm.subarray(at, at + step)))
  const outcome = await streamFrames(
    server.wsUrl,
    { headers: { authorization: `Token ${server.ownerKey}` } },
    'encoding=linear16&sample_rate=16000&interim_results=true',
    frames,
    paceMs,
  )
  assert.equal(outcome.close?.code, 1000)
  // Interims too: they come at the same slices of the audio every time.
  return outcome.messages
    .filter((m) => m.type === 'Results')
    .map((m) => {
      const alternative = (m.channel as { alternatives: Alternative[] }).alternatives[0]
      return {
        transcript: `${m.is_final ? 'final' : 'interim'}: ${alternative?.transcript ?? ''}`,
        start: m.start as number,
        words: (alternative?.words ?? []).map(pick),
      }
    })
}

function wavPcm(path: string): Int16Array {
  const bytes = readFileSync(path)
  // A canonical 44-byte header, 16 kHz mono 16-bit (pocketsphinx-testdata's LibriVox clips).
  const body = bytes.subarray(44)
  const pcm = new Int16Array(body.length >> 1)
  new Uint8Array(pcm.buffer).set(body.subarray(0, pcm.length * 2))
  return pcm
}

/** Loud white noise from a fixed seed: it pulls a live cepstral mean far from speech. */
function noise(seconds: number): Int16Array {
  let seed = 12_345
  const pcm = new Int16Array(Math.round(seconds * 16_000))
  for (let i = 0; i < pcm.length; i++) {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    pcm[i] = Math.round((seed / 2 ** 31 - 0.5) * 24_000)
  }
  return pcm
}

describe('decoding does not depend on what the decoders decoded before', () => {
  let server: LiveServer
  /** Two utterances in two voices: live, the second starts from the mean the first left. */
  let target: Int16Array
  let others: Int16Array[]

  before(async () => {
    // Two decoders: requests alternate between them, so the target meets both, each with its own history.
    server = await startLiveServer({ EARMARK_CAPACITY: '2' })
    target = concatPcm(
      silence(0.3),
      await speech('yesterday i went to the hardware store this morning and bought a hammer', 'rms'),
      silence(1),
      await speech('please walk up to the front desk and ask for the manager', 'slt'),
      silence(0.6),
    )
    others = [
      wavPcm(LIBRIVOX),
      concatPcm(silence(0.4), noise(3), await speech('open the door and turn on the lights', 'rms')),
      await speech('the meeting moved to four thirty on thursday afternoon', 'slt'),
    ]
  })

  after(async () => {
    await server?.close()
  })

  test('a recording decoded again and again, between other audio, gives the same words and timings over REST and live', {
    timeout: 600_000,
  }, async () => {
    const restRuns: Decoded[] = []
    const liveRuns: Decoded[] = []
    for (let round = 0; round < ROUNDS; round++) {
      const other = (i: number) => others[(round + i) % others.length] ?? silence(1)
      restRuns.push(await rest(server, target))
      await rest(server, other(0))
      await live(server, other(1), 100, 0)
      // 70 ms chunks that do not line up with the engine's 100 ms slices, sent at a different pace each round.
      liveRuns.push(await live(server, target, 70, round % 2 === 0 ? 0 : 20))
      await live(server, other(2), 250, 0)
      await rest(server, other(1))
    }
    const [firstRest, ...laterRest] = restRuns
    const [firstLive, ...laterLive] = liveRuns
    assert.ok(firstRest && firstLive)
    assert.match(firstRest[0]?.transcript ?? '', /hardware/i, 'the recording is recognised at all')
    assert.ok(firstLive.some((r) => r.transcript.startsWith('final') && /manager/i.test(r.transcript)))
    for (const [i, run] of laterRest.entries()) assert.deepEqual(run, firstRest, `REST run ${i + 2}`)
    for (const [i, run] of laterLive.entries()) assert.deepEqual(run, firstLive, `live run ${i + 2}`)
  })
})
