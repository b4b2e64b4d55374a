// When a decoder cannot boost keywords (its keyword layout check fails), the engine still starts, says so
// once, and transcribes requests that carry keywords as if they had none (docs/speech.md, "Keywords").
// Triggered for real: a decoder whose default search is PocketSphinx's phone loop (`-allphone`) has no
// n-gram language model for keyword boosting to extend.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import type { Engine, FinalHypothesis } from '../../src/engines/engine.js'
import { createPocketsphinxEngine } from '../../src/engines/pocketsphinx/pocketsphinx-engine.js'
import { warmupSpeech } from '../../src/engines/pocketsphinx/warmup-speech.js'

const PHONE_LM = '/usr/share/pocketsphinx/model/en-us/en-us-phone.lm.bin'
const KEYWORDS = [
  { phrase: 'kubernetes', boost: 10 },
  { phrase: 'meters', boost: 5 },
]

describe('an engine whose decoders cannot boost keywords', () => {
  let engine: Engine
  const reports: string[] = []
  let pcm: Int16Array

  before(async () => {
    const speech = warmupSpeech()
    assert.ok(existsSync(PHONE_LM) && speech, 'pocketsphinx-en-us and pocketsphinx-testdata')
    pcm = speech
    engine = await createPocketsphinxEngine({
      capacity: 2,
      decoder: { extraArgs: { '-allphone': PHONE_LM } },
      onKeywordsUnavailable: (reason) => reports.push(reason),
    })
  })

  after(async () => {
    await engine?.close()
  })

  test('starts and reports it once, whatever the number of decoders', () => {
    assert.equal(engine.capacity, 2)
    assert.equal(reports.length, 1)
    assert.match(reports[0] ?? '', /n-gram language model/)
  })

  test('transcribes a pre-recorded request with keywords as it does without them', async () => {
    const plain = await engine.transcribe(pcm, { language: 'en', endpointingMs: 10 })
    const boosted = await engine.transcribe(pcm, { language: 'en', endpointingMs: 10, keywords: KEYWORDS })
    const text = (t: typeof plain) => t.utterances.map((u) => u.transcript).join(' | ')
    assert.notEqual(text(plain).trim(), '', 'the phone loop recognised something')
    assert.equal(text(boosted), text(plain))
  })

  test('transcribes a live stream with keywords', async () => {
    const finals: FinalHypothesis[] = []
    const stream = await engine.openStream(
      { language: 'en', interimResults: false, endpointingMs: 10, keywords: KEYWORDS },
      {
        onInterim: () => {},
        onFinal: (h) => finals.push(h),
        onSpeechStarted: () => {},
        onError: (err) => assert.fail(err),
      },
    )
    for (let at = 0; at < pcm.length; at += 1600) stream.push(pcm.subarray(at, at + 1600))
    await stream.close()
    assert.ok(
      finals.some((f) => f.words.length > 0),
      finals.map((f) => f.transcript).join(' | '),
    )
    assert.equal(reports.length, 1)
  })
})
