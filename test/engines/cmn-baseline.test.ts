// The cepstral mean every stream starts from (docs/speech.md, "The same audio, the same transcript"): where
// the committed SPEECH_CMN_INIT comes from, and what PocketSphinx's live CMN does with it, measured on real
// read speech from Debian's pocketsphinx-testdata with a real decoder.
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import type { CmnState } from '../../src/engines/pocketsphinx/pocketsphinx-binding.js'
import {
  createPocketsphinxDecoder,
  type PocketsphinxDecoder,
  SPEECH_CMN_INIT,
} from '../../src/engines/pocketsphinx/pocketsphinx-decoder.js'
import { concatPcm } from '../helpers/speech.js'

const TESTDATA = '/usr/share/pocketsphinx/test/data'
const SLICE = 1600

function raw(name: string): Int16Array {
  const bytes = readFileSync(`${TESTDATA}/${name}.raw`)
  const pcm = new Int16Array(bytes.length >> 1)
  new Uint8Array(pcm.buffer).set(bytes.subarray(0, pcm.length * 2))
  return pcm
}

/** Decodes `pcm` as one utterance in 100 ms slices; calls `each` with the CMN state after every slice. */
async function decodeOneUtterance(
  decoder: PocketsphinxDecoder,
  pcm: Int16Array,
  each?: (state: CmnState, seconds: number) => void,
): Promise<CmnState> {
  await decoder.startUtterance()
  for (let at = 0; at < pcm.length; at += SLICE) {
    await decoder.process(pcm.subarray(at, at + SLICE))
    each?.(await decoder.cmnState(), (at + SLICE) / 16_000)
  }
  return decoder.cmnState()
}

const close = (a: number, b: number, tolerance: number) => Math.abs(a - b) <= tolerance

describe('the live cepstral mean baseline', () => {
  let decoder: PocketsphinxDecoder

  before(async () => {
    assert.ok(existsSync(`${TESTDATA}/numbers.raw`), 'pocketsphinx-testdata is installed')
    decoder = await createPocketsphinxDecoder()
  })

  after(async () => {
    await decoder?.close()
  })

  test('the committed speech mean is what live CMN measures on the read speech of pocketsphinx-testdata', async () => {
    // How SPEECH_CMN_INIT was made: each recording one utterance from a state with no history, the sums of
    // the three states over their frames, rounded to 0.01.
    const sum: number[] = new Array(SPEECH_CMN_INIT.length).fill(0)
    let frames = 0
    for (const name of ['goforward', 'numbers', 'something']) {
      await decoder.startStream()
      const state = await decodeOneUtterance(decoder, raw(name))
      await decoder.endUtterance()
      for (const [i, v] of state.sum.entries()) sum[i] = (sum[i] ?? 0) + v
      frames += state.frames
    }
    const measured = sum.map((v) => v / frames)
    assert.ok(frames > 800, `${frames} frames of speech`)
    for (const [i, v] of SPEECH_CMN_INIT.entries()) {
      assert.ok(
        close(measured[i] ?? Number.NaN, v, 0.0051),
        `c${i}: committed ${v}, measured ${measured.map((m) => m.toFixed(2)).join(', ')}`,
      )
    }
  })

  test('every stream starts from the committed mean with no history, whatever the decoder decoded before', async () => {
    await decoder.startStream()
    const state = await decoder.cmnState()
    assert.equal(state.frames, 0)
    assert.deepEqual([...state.sum], new Array(SPEECH_CMN_INIT.length).fill(0))
    for (const [i, v] of SPEECH_CMN_INIT.entries()) assert.ok(close(state.mean[i] ?? Number.NaN, v, 1e-5))
  })

  test("ps_end_utt sets the mean to the average of the frames heard since the baseline, and the next stream's start undoes it", async () => {
    await decoder.startStream()
    const baseline = await decoder.cmnState()
    const heard = await decodeOneUtterance(decoder, raw('numbers'))
    assert.ok(heard.frames > 300 && heard.frames < 800, `${heard.frames} frames`)
    assert.deepEqual([...heard.mean], [...baseline.mean], 'the mean holds within the utterance')
    await decoder.endUtterance()
    const ended = await decoder.cmnState()
    const average = heard.sum.map((v) => v / heard.frames)
    for (const [i, v] of average.entries()) assert.ok(close(ended.mean[i] ?? Number.NaN, v, 1e-3), `c${i}`)
    // numbers.raw is louder than the baseline: the energy term moves by about 4.
    assert.ok(Math.abs((ended.mean[0] ?? 0) - (baseline.mean[0] ?? 0)) > 2, `c0 ${ended.mean[0]}`)

    await decoder.startStream()
    assert.deepEqual(await decoder.cmnState(), baseline)
  })

  test('past 800 frames in one utterance the mean moves to the running average and the history shrinks to 500 frames', async () => {
    await decoder.startStream()
    const baseline = await decoder.cmnState()
    const moves: { seconds: number; frames: number }[] = []
    let last = baseline.mean[0]
    const joined = concatPcm(raw('numbers'), raw('something'), raw('goforward'))
    await decodeOneUtterance(decoder, joined, (state, seconds) => {
      if (state.mean[0] !== last) moves.push({ seconds, frames: state.frames })
      last = state.mean[0]
    })
    await decoder.endUtterance()
    assert.ok(moves.length >= 1, 'the mean moved before the end of the utterance')
    for (const move of moves) assert.ok(move.frames >= 500 && move.frames < 520, JSON.stringify(moves))
    // 9.8 s of audio: the first move comes once more than 800 frames of speech were heard.
    assert.ok((moves[0]?.seconds ?? 0) > 8, JSON.stringify(moves))
  })
})
