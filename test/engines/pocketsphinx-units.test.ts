// The pure parts of the PocketSphinx engine (no native code): words, pool, arguments, the WER helper.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { EngineBusyError } from '../../src/engines/index.js'
import { createDecoderPool } from '../../src/engines/pocketsphinx/decoder-pool.js'
import { capacityForRealTimeFactor } from '../../src/engines/pocketsphinx/measure-real-time-factor.js'
import type { RawSegment } from '../../src/engines/pocketsphinx/pocketsphinx-binding.js'
import {
  decoderArguments,
  type PocketsphinxDecoder,
} from '../../src/engines/pocketsphinx/pocketsphinx-decoder.js'
import { segmentsToWords, toHypothesis } from '../../src/engines/pocketsphinx/pocketsphinx-words.js'
import { wordErrorRate, wordErrors } from '../helpers/speech.js'

const seg = (word: string, startFrame: number, endFrame: number, probability = 0.5): RawSegment => ({
  word,
  startFrame,
  endFrame,
  probability,
})

describe('pocketsphinx words', () => {
  test('markers, fillers and alternate-pronunciation suffixes are removed; frames become seconds', () => {
    const words = segmentsToWords(
      [
        seg('<s>', 0, 20, 1),
        seg('The', 21, 30, 0.9),
        seg('[NOISE]', 31, 35),
        seg('for(2)', 36, 49, 0.4),
        seg('<sil>', 50, 60),
        seg('++BREATH++', 61, 62),
        seg("i'm(3)", 63, 79, 1.2),
        seg('</s>', 80, 99),
      ],
      100,
      true,
    )
    assert.deepEqual(
      words.map((w) => [w.word, w.start, w.end, w.confidence]),
      [
        ['the', 0.21, 0.31, 0.9],
        ['for', 0.36, 0.5, 0.4],
        ["i'm", 0.63, 0.8, 1],
      ],
    )
  })

  test('interim words carry confidence 0 instead of the placeholder probability', () => {
    const words = segmentsToWords([seg('hello', 0, 9, 1)], 100, false)
    assert.equal(words[0]?.confidence, 0)
  })

  test('a hypothesis joins words, averages confidence and clamps times into its stretch', () => {
    const h = toHypothesis(
      [
        { word: 'a', start: 0.9, end: 1.2, confidence: 0.2 },
        { word: 'b', start: 1.2, end: 2.5, confidence: 0.6 },
      ],
      1,
      2,
    )
    assert.equal(h.transcript, 'a b')
    assert.ok(Math.abs(h.confidence - 0.4) < 1e-12)
    assert.equal(h.words[0]?.start, 1)
    assert.equal(h.words[1]?.end, 2)
    assert.deepEqual(toHypothesis([], 3, 3), { transcript: '', words: [], confidence: 0, start: 3, end: 3 })
  })
})

describe('pocketsphinx decoder arguments', () => {
  test('the tuned settings are the defaults and every one can be overridden', () => {
    const args = Object.fromEntries(decoderArguments())
    assert.equal(args['-hmm'], '/usr/share/pocketsphinx/model/en-us/en-us')
    assert.equal(args['-lm'], '/usr/share/pocketsphinx/model/en-us/en-us.lm.bin')
    assert.equal(args['-dict'], '/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict')
    assert.equal(args['-maxhmmpf'], '3000')
    assert.equal(args['-pl_window'], '10')
    assert.equal(args['-vad_postspeech'], '50')
    assert.equal(args['-logfn'], undefined, 'logging is off process-wide instead (see the binding)')
    const custom = Object.fromEntries(
      decoderArguments({
        modelDir: '/m',
        vadPostspeechFrames: 30,
        fwdflat: false,
        extraArgs: { '-beam': '1e-60' },
      }),
    )
    assert.equal(custom['-hmm'], '/m/en-us')
    assert.equal(custom['-vad_postspeech'], '30')
    assert.equal(custom['-fwdflat'], 'no')
    assert.equal(custom['-beam'], '1e-60')
  })
})

function fakeDecoder(closed: PocketsphinxDecoder[]): PocketsphinxDecoder {
  const decoder: PocketsphinxDecoder = {
    settings: {
      sampleRate: 16_000,
      frameRate: 100,
      vadPostspeechFrames: 50,
      vadPrespeechFrames: 20,
      vadStartspeechFrames: 10,
    },
    startStream: async () => {},
    cmnState: async () => ({ mean: [], sum: [], frames: 0 }),
    startUtterance: async () => {},
    process: async () => false,
    partial: async () => [],
    endUtterance: async () => [],
    close: async () => {
      closed.push(decoder)
    },
  }
  return decoder
}

describe('decoder pool', () => {
  test('lends each decoder once, queues waiters first come first served, and times them out', async () => {
    const closed: PocketsphinxDecoder[] = []
    const pool = await createDecoderPool({ size: 2, create: async () => fakeDecoder(closed) })
    const a = pool.tryAcquire()
    const b = await pool.acquire(0)
    assert.ok(a && b && a !== b)
    assert.equal(pool.inUse(), 2)
    assert.equal(pool.tryAcquire(), undefined)
    await assert.rejects(pool.acquire(0), EngineBusyError)
    await assert.rejects(pool.acquire(20), EngineBusyError)
    const first = pool.acquire(1000)
    const second = pool.acquire(1000)
    pool.release(a)
    assert.equal(await first, a)
    pool.release(b)
    assert.equal(await second, b)
    pool.release(a)
    pool.release(a) // a second release of the same decoder is ignored
    assert.equal(pool.inUse(), 1)
    pool.release(b)
    await pool.close()
    assert.equal(closed.length, 2)
  })

  test('a broken decoder is freed and replaced by a fresh one', async () => {
    const closed: PocketsphinxDecoder[] = []
    let created = 0
    const pool = await createDecoderPool({
      size: 1,
      create: async () => {
        created++
        return fakeDecoder(closed)
      },
    })
    const broken = await pool.acquire(0)
    const waiting = pool.acquire(1000)
    pool.release(broken, { broken: true })
    const fresh = await waiting
    assert.notEqual(fresh, broken)
    assert.deepEqual(closed, [broken])
    assert.equal(created, 2)
    pool.release(fresh)
    await pool.close()
    assert.equal(closed.length, 2)
  })

  test('close rejects waiters and a failed load frees the decoders already loaded', async () => {
    const closed: PocketsphinxDecoder[] = []
    const pool = await createDecoderPool({ size: 1, create: async () => fakeDecoder(closed) })
    const lent = await pool.acquire(0)
    const waiting = pool.acquire(10_000)
    const closing = pool.close()
    await assert.rejects(waiting, EngineBusyError)
    pool.release(lent)
    await closing
    assert.equal(closed.length, 1)

    let n = 0
    const loaded: PocketsphinxDecoder[] = []
    await assert.rejects(
      createDecoderPool({
        size: 3,
        create: async () => {
          if (++n === 2) throw new Error('no model')
          return fakeDecoder(loaded)
        },
      }),
      /no model/,
    )
    assert.equal(loaded.length, 2)
  })
})

describe('capacity from RTF', () => {
  test('streams per cores at a target load, at least one', () => {
    assert.equal(capacityForRealTimeFactor(0.2, 2), 7)
    assert.equal(capacityForRealTimeFactor(0.3, 2, 0.7), 4)
    assert.equal(capacityForRealTimeFactor(5, 1), 1)
    assert.equal(capacityForRealTimeFactor(0, 4), 1)
  })
})

describe('wordErrorRate helper', () => {
  test('counts substitutions, insertions and deletions over lower-case words without punctuation', () => {
    assert.equal(wordErrorRate('The quick, brown fox!', 'the quick brown fox'), 0)
    assert.equal(wordErrorRate('the quick brown fox', 'the quack brown fox'), 0.25)
    assert.equal(wordErrorRate('the quick brown fox', 'the brown fox'), 0.25)
    assert.equal(wordErrorRate('the quick brown fox', 'the quick brown fox jumps'), 0.25)
    assert.equal(wordErrorRate('a b', ''), 1)
    assert.deepEqual(wordErrors("I'm here", "i'm  here"), { errors: 0, words: 2 })
    assert.equal(wordErrorRate('', ''), 0)
  })
})
