// Keyword boosting (issue 11, item 5): Deepgram's `keywords=word:intensifier` and `keyterm=phrase` make the
// real PocketSphinx engine recognise domain words (a name, product terms, words its dictionary lacks) that
// it misses without them, over REST and live, through the real server. Speech is made at test time with
// flite; the lift (domain words heard with and without boosting) is printed.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { letterToPhones, pronunciations } from '../../src/engines/pocketsphinx/letter-to-phone.js'
import { keywordArpa, normalizeKeywords } from '../../src/engines/pocketsphinx/pocketsphinx-keywords.js'
import { isApiError } from '../../src/errors.js'
import { parseListenOptions } from '../../src/listen/listen-options.js'
import { pcmBytes, postListen, prerecordedTranscript, streamFrames, wav } from '../helpers/listen-e2e.js'
import { type LiveServer, openSocket, startLiveServer } from '../helpers/live-server.js'
import { chunks, concatPcm, type FliteVoice, normalizeWords, silence, speech } from '../helpers/speech.js'

/** The domain words: a name the dictionary has, and product terms it mostly lacks (letter-to-sound). */
const DOMAIN = ['siobhan', 'kubernetes', 'grafana', 'redis', 'terraform', 'ansible'] as const
const SENTENCES = [
  'Please ask Siobhan to restart the kubernetes cluster and check grafana before the rollout.',
  'Our team moved the billing service to redis, and terraform now manages the ansible jobs.',
] as const
const NEUTRAL = 'The weather was cold this morning, so we stayed inside and read the newspaper.'
const VOICES: readonly FliteVoice[] = ['slt', 'rms']
/** As a client would send them: intensifiers on some keywords, a phrase as a keyterm. */
const BOOSTED =
  'keywords=siobhan:2&keywords=kubernetes:10&keywords=grafana:5&keywords=redis:5' +
  `&keyterm=terraform&keyterm=${encodeURIComponent('ansible jobs')}`
/** Rare words the dictionary and language model already have: boosted in place, not by a second search. */
const KNOWN = ['jenkins', 'kafka'] as const
const KNOWN_SENTENCE = 'Siobhan asked Jenkins to move the Kafka cluster onto the new servers before Thursday.'
const KNOWN_BOOSTED = 'keywords=jenkins:5&keywords=kafka:5'
/** Another set of such words: it replaces the keyword model boosted in place. */
const KNOWN_OTHER = 'keywords=london:3&keyterm=thursday'

function optionError(query: Record<string, string | string[]>): string | undefined {
  try {
    parseListenOptions(query)
    return undefined
  } catch (err) {
    assert.ok(isApiError(err), String(err))
    return err.code
  }
}

describe('keywords and keyterm options', () => {
  test('keywords take an optional intensifier, keyterms are phrases, both in the order given', () => {
    const options = parseListenOptions({
      keywords: ['kubernetes:2', 'grafana', 'um:-5', 'ok:0.5'],
      keyterm: 'ansible jobs',
    })
    assert.deepEqual(options.keywords, [
      { phrase: 'kubernetes', boost: 2 },
      { phrase: 'grafana', boost: 1 },
      { phrase: 'um', boost: -5 },
      { phrase: 'ok', boost: 0.5 },
      { phrase: 'ansible jobs', boost: 1 },
    ])
    assert.deepEqual(parseListenOptions({}).keywords, [])
  })

  test('a bad intensifier, an empty word, too many or too long keywords are INVALID_FIELD', () => {
    const many = Array.from({ length: 101 }, (_, i) => `word${i}`)
    const cases: Array<Record<string, string | string[]>> = [
      { keywords: 'kubernetes:lots' },
      { keywords: 'kubernetes:' },
      { keywords: 'kubernetes:1000' },
      { keywords: ':3' },
      { keywords: many },
      { keywords: many.slice(0, 60), keyterm: many.slice(0, 41) },
      { keyterm: 'x'.repeat(101) },
      { keyterm: 'tab\there' },
    ]
    for (const query of cases)
      assert.equal(optionError(query), 'INVALID_FIELD', JSON.stringify(query).slice(0, 80))
  })

  test('the keyword model favours positive intensifiers only, and chains the words of a phrase', () => {
    const phrases = normalizeKeywords([
      { phrase: 'Kubernetes', boost: 2 },
      { phrase: 'um', boost: -5 },
      { phrase: 'ansible  jobs', boost: 1 },
      { phrase: 'kubernetes', boost: 10 },
    ])
    assert.deepEqual(
      [...phrases],
      [
        ['kubernetes', 10],
        ['ansible jobs', 1],
      ],
    )
    const arpa = keywordArpa(phrases)
    assert.match(arpa, /ngram 1=5\n/)
    assert.match(arpa, /^-2\.0000 kubernetes /m, 'intensifier 10 is ten times intensifier 1')
    assert.match(arpa, /^-3\.0000 ansible /m)
    assert.match(arpa, /^-0\.0500 ansible jobs$/m)
  })

  test('words the dictionary lacks get CMUdict phones from the letter-to-sound rules', () => {
    assert.deepEqual(letterToPhones('grafana'), ['G', 'R', 'EY', 'F', 'EY', 'N', 'AH'])
    assert.deepEqual(letterToPhones('knight'), ['N', 'AY', 'T'])
    assert.deepEqual(letterToPhones('terraform'), ['T', 'EH', 'R', 'EY', 'F', 'AO', 'R', 'M'])
    assert.deepEqual(pronunciations('grafana')[1], ['G', 'R', 'AE', 'F', 'AE', 'N', 'AH'])
    assert.deepEqual(pronunciations('1234'), [])
  })
})

interface Clip {
  text: string
  voice: FliteVoice
  pcm: Int16Array
}

const hits = (transcript: string, domain: readonly string[] = DOMAIN) => {
  const words = new Set(normalizeWords(transcript))
  return domain.filter((w) => words.has(w))
}
const expected = (text: string) => hits(text).length

async function rest(server: LiveServer, pcm: Int16Array, query: string): Promise<string> {
  const res = await postListen(server.url, `Token ${server.ownerKey}`, wav(pcm), query ? `?${query}` : '')
  assert.equal(res.status, 200, JSON.stringify(res.body))
  return prerecordedTranscript(res.body)
}

async function live(server: LiveServer, pcm: Int16Array, query: string): Promise<string> {
  const outcome = await streamFrames(
    server.wsUrl,
    { headers: { authorization: `Token ${server.ownerKey}` } },
    `encoding=linear16&sample_rate=16000${query ? `&${query}` : ''}`,
    chunks(pcm, 100).map(pcmBytes),
  )
  assert.equal(outcome.close?.code, 1000)
  return outcome.transcript
}

describe('keyword boosting on the real engine', () => {
  let server: LiveServer
  let clips: Clip[]
  let neutral: Int16Array
  /** The first clip without keywords, decoded before any decoder had met a keyword. */
  let pristine: string | undefined

  before(async () => {
    // Two decoders: requests alternate between them, so each meets keywords, other keywords and none.
    server = await startLiveServer({ EARMARK_CAPACITY: '2' })
    clips = []
    for (const voice of VOICES) {
      for (const text of SENTENCES) {
        clips.push({ text, voice, pcm: concatPcm(silence(0.3), await speech(text, voice), silence(0.6)) })
      }
    }
    neutral = concatPcm(silence(0.3), await speech(NEUTRAL, 'rms'), silence(0.6))
  })

  after(async () => {
    await server?.close()
  })

  test('domain words missed without boosting are recognised with it, over REST and live', {
    timeout: 600_000,
  }, async () => {
    let total = 0
    let without = 0
    let withRest = 0
    let withLive = 0
    for (const clip of clips) {
      const plain = await rest(server, clip.pcm, '')
      pristine ??= plain
      const boosted = await rest(server, clip.pcm, BOOSTED)
      const streamed = await live(server, clip.pcm, BOOSTED)
      total += expected(clip.text)
      without += hits(plain).length
      withRest += hits(boosted).length
      withLive += hits(streamed).length
      console.log(`${clip.voice}: without: ${plain}\n  REST with: ${boosted}\n  live with: ${streamed}`)
    }
    console.log(
      `keyword lift: domain words heard without boosting ${without}/${total}, ` +
        `with it ${withRest}/${total} (REST), ${withLive}/${total} (live)`,
    )
    assert.ok(withRest >= without + total / 2, `REST: ${withRest} with against ${without} without`)
    assert.ok(withLive >= without + total / 2, `live: ${withLive} with against ${without} without`)
    assert.ok(withRest >= (total * 2) / 3, `REST recognises most domain words (${withRest}/${total})`)
  })

  test('bad keywords are refused with a Deepgram-shaped 400 INVALID_FIELD, REST and at the upgrade', async () => {
    const pcm = silence(0.5)
    for (const query of ['keywords=kubernetes:lots', `keyterm=${'x'.repeat(101)}`]) {
      const res = await postListen(server.url, `Token ${server.ownerKey}`, wav(pcm), `?${query}`)
      assert.equal(res.status, 400, query)
      const body = res.body as { err_code?: string; err_msg?: string; request_id?: string }
      assert.equal(body.err_code, 'INVALID_FIELD', query)
      assert.match(body.err_msg ?? '', /keywords|keyterm/, query)
      assert.equal(body.request_id, res.requestId)
      const { log } = await openSocket(
        `${server.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000&${query}`,
        {
          protocols: ['token', server.ownerKey],
        },
      )
      assert.equal(log.status, 400, query)
      assert.match(log.body?.err_msg ?? '', /keywords|keyterm/, query)
    }
  })

  test('rare words the dictionary has are favoured in place, over REST and live', {
    timeout: 300_000,
  }, async () => {
    let without = 0
    let withRest = 0
    let withLive = 0
    for (const voice of VOICES) {
      const pcm = concatPcm(silence(0.3), await speech(KNOWN_SENTENCE, voice), silence(0.6))
      const plain = await rest(server, pcm, '')
      const boosted = await rest(server, pcm, KNOWN_BOOSTED)
      const streamed = await live(server, pcm, KNOWN_BOOSTED)
      without += hits(plain, KNOWN).length
      withRest += hits(boosted, KNOWN).length
      withLive += hits(streamed, KNOWN).length
      console.log(`${voice}: without: ${plain}\n  REST with: ${boosted}\n  live with: ${streamed}`)
    }
    const total = KNOWN.length * VOICES.length
    console.log(
      `keyword lift (in place): ${without}/${total} without, ${withRest}/${total} REST, ${withLive}/${total} live`,
    )
    assert.ok(
      withRest > without && withLive > without,
      `${withRest} and ${withLive} with against ${without} without`,
    )
  })

  test('speech without the keywords gains none of them', { timeout: 300_000 }, async () => {
    const plain = await rest(server, neutral, '')
    const boosted = await rest(server, neutral, BOOSTED)
    console.log(`neutral: without: ${plain}\n  with: ${boosted}`)
    assert.deepEqual(hits(boosted), [])
    assert.match(boosted, /newspaper/)
  })

  // Between the runs: other keywords boosted in place or by the other search, other audio, and none at all.
  test('the same audio and keywords give the same transcript whatever the decoders did before', {
    timeout: 600_000,
  }, async () => {
    const target = clips[0]?.pcm
    assert.ok(target)
    const boostedRest: string[] = []
    const plainRest: string[] = []
    const boostedLive: string[] = []
    const inPlace: string[] = []
    for (let round = 0; round < 3; round++) {
      boostedRest.push(await rest(server, target, BOOSTED))
      plainRest.push(await rest(server, target, ''))
      inPlace.push(await rest(server, target, KNOWN_BOOSTED))
      await rest(server, clips[3]?.pcm ?? neutral, KNOWN_OTHER)
      boostedLive.push(await live(server, target, BOOSTED))
      await live(server, neutral, round % 2 === 0 ? KNOWN_BOOSTED : '')
      await rest(server, clips[1]?.pcm ?? neutral, round % 2 === 0 ? BOOSTED : KNOWN_OTHER)
    }
    for (const runs of [boostedRest, plainRest, boostedLive, inPlace]) {
      for (const [i, run] of runs.entries()) assert.equal(run, runs[0], `run ${i + 1}`)
    }
    // Words added to the dictionaries and keyword searches built since leave the base search as it was.
    if (pristine !== undefined) assert.equal(plainRest[0], pristine, 'as before any keyword was used')
    assert.notEqual(boostedRest[0], plainRest[0], 'the keywords changed the transcript')
    assert.ok(hits(boostedRest[0] ?? '').length > hits(plainRest[0] ?? '').length)
  })
})
