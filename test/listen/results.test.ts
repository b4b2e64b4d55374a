import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Engine, FinalHypothesis } from '../../src/engines/index.js'
import { parseListenOptions, prerecordedResponse, resultsMessage } from '../../src/listen/index.js'
import { MAX_SPEED, MIN_SPEED, parseSpeakQuery } from '../../src/tts/index.js'

// The shapes of the fields clients read (docs/deepgram-compat.md §6.1, §8.1), without an engine: results are
// built from hypotheses, options from query strings. test/sdk/sdk-fields.test.ts checks the same end to end.

const engine = {
  formatting: { punctuation: false, casing: false },
  model: {
    name: 'general',
    version: '1',
    arch: 'pocketsphinx',
    uuid: '00000000-0000-5000-8000-000000000000',
  },
} as unknown as Engine

function utterance(words: [string, number, number, number][]): FinalHypothesis {
  return {
    transcript: words.map(([w]) => w).join(' '),
    words: words.map(([word, start, end, confidence]) => ({ word, start, end, confidence })),
    confidence: words.length ? words.reduce((a, [, , , c]) => a + c, 0) / words.length : 0,
    start: words[0]?.[1] ?? 0,
    end: words.at(-1)?.[2] ?? 0,
    speechFinal: true,
    fromFinalize: false,
  }
}

const SPOKEN = [
  utterance([
    ['please', 0.5, 0.8, 0.9],
    ['open', 0.8, 1.1, 0.7],
  ]),
  utterance([['door', 2, 2.4, 0.5]]),
]

const rest = (query: Record<string, unknown>, utterances = SPOKEN) =>
  prerecordedResponse(utterances, {
    requestId: 'r',
    engine,
    sha256: '',
    created: '',
    duration: 3,
    options: parseListenOptions(query),
  })

const live = (query: Record<string, unknown>, h: FinalHypothesis) =>
  resultsMessage(
    h,
    { requestId: 'r', engine, options: parseListenOptions(query) },
    {
      isFinal: true,
      speechFinal: true,
      fromFinalize: false,
    },
  )

describe('detect_language', () => {
  const table: [string, Record<string, unknown>, string | null][] = [
    ['off by default', {}, null],
    ['true', { detect_language: 'true' }, 'en'],
    ['false', { detect_language: 'false' }, null],
    ['true overrides language', { detect_language: 'true', language: 'fr' }, 'en'],
    ['a list naming an English tag', { detect_language: ['es', 'en-GB'] }, 'en'],
    ['a list without English names its first language', { detect_language: ['es', 'fr'] }, 'es'],
  ]
  for (const [name, query, language] of table) {
    it(`${name}: the options say ${language ?? 'no detection'}`, () => {
      const options = parseListenOptions(query)
      assert.equal(options.detectLanguage !== null, language !== null)
      if (language) assert.equal(options.language, language)
    })
  }

  for (const bad of ['true!', '123', 'e', 'en_US', 'english-language-x']) {
    it(`detect_language=${bad} is a 400 INVALID_FIELD`, () => {
      assert.throws(() => parseListenOptions({ detect_language: bad }), { code: 'INVALID_FIELD' })
    })
  }

  it('a pre-recorded channel carries detected_language and the mean word confidence', () => {
    const channel = rest({ detect_language: 'true' }).results.channels[0] as Record<string, unknown>
    assert.equal(channel.detected_language, 'en')
    assert.equal(channel.language_confidence, 0.7)
    const alt = (channel.alternatives as { confidence: number; languages?: unknown }[])[0]
    assert.equal(channel.language_confidence, alt?.confidence)
    assert.equal(alt && 'languages' in alt, false, 'languages is the live (multilingual) shape')
  })

  it('no words: language_confidence 0', () => {
    const channel = rest({ detect_language: 'true' }, []).results.channels[0] as Record<string, unknown>
    assert.equal(channel.language_confidence, 0)
  })

  it('live: languages on the alternative ([] without words) and language on every word', () => {
    const spoken = live({ detect_language: 'true' }, SPOKEN[0] as FinalHypothesis).channel.alternatives[0]
    assert.deepEqual(spoken?.languages, ['en'])
    assert.ok(spoken?.words.every((w) => (w as { language?: string }).language === 'en'))
    const empty = live({ detect_language: 'true' }, utterance([])).channel.alternatives[0]
    assert.deepEqual(empty?.languages, [])
    assert.equal('languages' in (live({}, SPOKEN[0] as FinalHypothesis).channel.alternatives[0] ?? {}), false)
  })
})

describe('diarize', () => {
  it('pre-recorded: speaker 0 and speaker_confidence 0 on every word, speaker on utterances and paragraphs', () => {
    const body = rest({ diarize: 'true', utterances: 'true', paragraphs: 'true', punctuate: 'true' })
    const alt = body.results.channels[0]?.alternatives[0] as Record<string, unknown>
    const words = alt.words as Record<string, unknown>[]
    assert.equal(words.length, 3)
    for (const w of words) {
      assert.equal(w.speaker, 0)
      assert.equal(w.speaker_confidence, 0)
      assert.equal(typeof w.punctuated_word, 'string')
    }
    for (const u of body.results.utterances ?? []) assert.equal(u.speaker, 0)
    const paragraphs = alt.paragraphs as { transcript: string; paragraphs: { speaker?: number }[] }
    assert.equal(paragraphs.transcript, '\nSpeaker 0: Please open. Door.')
    assert.equal(paragraphs.paragraphs[0]?.speaker, 0)
  })

  it('pre-recorded without diarize: no speaker anywhere', () => {
    const body = rest({ utterances: 'true', paragraphs: 'true' })
    const text = JSON.stringify(body)
    assert.doesNotMatch(text, /speaker/i)
  })

  it('live: speaker 0 on every word, no speaker_confidence (Deepgram sends it pre-recorded only)', () => {
    const words = live({ diarize: 'true' }, SPOKEN[0] as FinalHypothesis).channel.alternatives[0]?.words ?? []
    assert.equal(words.length, 2)
    for (const w of words) {
      assert.equal((w as { speaker?: number }).speaker, 0)
      assert.equal('speaker_confidence' in w, false)
    }
  })
})

describe('punctuate and the engine that writes its own words', () => {
  it('an engine that gives bare lower-case words gets the best-effort punctuation', () => {
    const alt = live({ punctuate: 'true' }, SPOKEN[0] as FinalHypothesis).channel.alternatives[0]
    assert.equal(alt?.transcript, 'Please open.')
    assert.deepEqual(
      alt?.words.map((w) => (w as { punctuated_word?: string }).punctuated_word),
      ['Please', 'open.'],
    )
  })

  it('an engine that punctuates keeps its own written words, nothing added twice', () => {
    const writer = { ...engine, formatting: { punctuation: true, casing: true } } as Engine
    const h = utterance([
      ['please', 0.5, 0.8, 0.9],
      ['open', 0.8, 1.1, 0.7],
    ])
    h.words = h.words.map((w, i) => ({ ...w, punctuatedWord: i === 0 ? 'Please,' : 'open!' }))
    const msg = resultsMessage(
      h,
      { requestId: 'r', engine: writer, options: parseListenOptions({ punctuate: 'true' }) },
      { isFinal: true, speechFinal: true, fromFinalize: false },
    )
    const alt = msg.channel.alternatives[0]
    assert.equal(alt?.transcript, 'Please, open!')
    assert.deepEqual(
      alt?.words.map((w) => [w.word, (w as { punctuated_word?: string }).punctuated_word]),
      [
        ['please', 'Please,'],
        ['open', 'open!'],
      ],
    )
    const body = prerecordedResponse([h], {
      requestId: 'r',
      engine: writer,
      sha256: '',
      created: '',
      duration: 2,
      options: parseListenOptions({ punctuate: 'true' }),
    })
    assert.equal(body.results.channels[0]?.alternatives[0]?.transcript, 'Please, open!')
  })
})

describe('speed on /v1/speak', () => {
  for (const [text, value] of [
    [undefined, 1],
    ['0.7', 0.7],
    ['1', 1],
    ['1.25', 1.25],
    ['1.5', 1.5],
    ['0.7000000000000001', 0.7000000000000001],
  ] as const) {
    it(`speed=${text ?? '(none)'} is ${value}`, () => {
      assert.equal(parseSpeakQuery(text === undefined ? {} : { speed: text }).speed, value)
    })
  }
  for (const bad of ['0.69', '1.51', '0', '-1', 'fast', '1e0', 'NaN', 'Infinity', '.9', ' 1']) {
    it(`speed=${JSON.stringify(bad)} is a 400 INVALID_FIELD (${MIN_SPEED}–${MAX_SPEED})`, () => {
      assert.throws(() => parseSpeakQuery({ speed: bad }), { code: 'INVALID_FIELD' })
    })
  }
})
