import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { type Deepgram, DeepgramClient } from 'dg5'
import WebSocket from 'ws'
import { postListen, prerecordedTranscript, spokenSentences, wav } from '../helpers/listen-e2e.js'
import { type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { finalTranscript, liveThroughSdkV5 } from '../helpers/sdk-v5-live.js'
import { wordErrorRate } from '../helpers/speech.js'

// The Deepgram fields third-party clients read (docs/deepgram-compat.md §6.1, §8.1): `detected_language` and
// `language_confidence` with `detect_language`, `speaker` (and `speaker_confidence`) with `diarize`, and
// `speed` on `/v1/speak`. Real server (its composition root), real PocketSphinx, real flite; read through the
// official SDK v5 types where its calls reach the option, and raw HTTP and WebSocket otherwise.

const SENTENCES = ['the meeting starts at nine in the morning on monday', 'please open the door']
const REFERENCE = SENTENCES.join(' ')
/**
 * What `/v1/speak` says in the speed tests. PocketSphinx hears this sentence whole at every speed from 0.7 to
 * 1.5; harder ones lose words as flite speeds up (docs/deepgram-compat.md §8.1 has the figures).
 */
const SPOKEN = 'the meeting starts at nine in the morning on monday'

type RestChannel = Deepgram.ListenV1ResponseResultsChannelsItem & { language_confidence?: number }
type RestBody = {
  metadata: { request_id: string }
  results: { channels: RestChannel[]; utterances?: Deepgram.ListenV1ResponseResultsUtterancesItem[] }
}

describe('the Deepgram fields clients read', { timeout: 300_000 }, () => {
  let srv: LiveServer
  let pcm: Int16Array
  let wavBytes: Buffer

  /** `POST /v1/listen?query` with the owner key; the WAV of the test sentences unless told otherwise. */
  const listen = async (query: string, body: Uint8Array = wavBytes) => {
    const answer = await postListen(srv.url, `Token ${srv.ownerKey}`, body, `?${query}`)
    return { status: answer.status, body: answer.body as RestBody & { err_code?: string } }
  }

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    pcm = await spokenSentences(SENTENCES)
    wavBytes = wav(pcm)
  })
  after(() => srv.close())

  describe('pre-recorded', () => {
    it('SDK v5 with detect_language and diarize reads detected_language and a speaker on every word', async () => {
      const client = new DeepgramClient({ apiKey: srv.ownerKey, baseUrl: srv.url })
      const body = await client.listen.v1.media.transcribeFile(wavBytes, {
        model: 'nova-3',
        detect_language: true,
        diarize: true,
        punctuate: true,
        utterances: true,
        paragraphs: true,
      })
      assert.ok('results' in body, 'a synchronous response')
      const channel = body.results.channels[0] as RestChannel | undefined
      const alt = channel?.alternatives?.[0]
      assert.ok(channel && alt, 'one channel, one alternative')
      assert.ok(wordErrorRate(REFERENCE, alt.transcript ?? '') <= 0.35, alt.transcript)
      assert.equal(channel.detected_language, 'en')
      // language_confidence is in Deepgram's docs, not in v5's type: the mean word confidence here.
      assert.equal(typeof channel.language_confidence, 'number')
      assert.equal(channel.language_confidence, alt.confidence)
      assert.ok((channel.language_confidence ?? 0) > 0 && (channel.language_confidence ?? 2) <= 1)
      const words = alt.words ?? []
      assert.ok(words.length >= 8, `${words.length} words`)
      for (const w of words) {
        assert.equal(w.speaker, 0)
        assert.equal(w.speaker_confidence, 0)
        assert.equal(typeof (w as { punctuated_word?: string }).punctuated_word, 'string')
      }
      const utterances = body.results.utterances ?? []
      assert.ok(utterances.length >= 2, `${utterances.length} utterances`)
      for (const u of utterances) {
        assert.equal(u.speaker, 0)
        for (const w of u.words ?? []) assert.equal(w.speaker, 0)
      }
      const paragraphs = alt.paragraphs
      assert.match(paragraphs?.transcript ?? '', /^\nSpeaker 0: \S/)
      assert.ok((paragraphs?.paragraphs?.length ?? 0) > 0)
      for (const p of paragraphs?.paragraphs ?? []) assert.equal(p.speaker, 0)
    })

    it('without detect_language or diarize none of these fields appears', async () => {
      const { status, body } = await listen('model=nova-3&utterances=true&paragraphs=true')
      assert.equal(status, 200)
      const channel = body.results.channels[0]
      assert.ok(channel)
      assert.equal('detected_language' in channel, false)
      assert.equal('language_confidence' in channel, false)
      const alt = channel.alternatives?.[0]
      for (const w of alt?.words ?? []) assert.equal('speaker' in w, false)
      for (const u of body.results.utterances ?? []) assert.equal('speaker' in u, false)
      assert.doesNotMatch(alt?.paragraphs?.transcript ?? '', /Speaker/)
      assert.equal('speaker' in (alt?.paragraphs?.paragraphs?.[0] ?? {}), false)
    })

    it('detection overrides language, as at Deepgram: language=fr with detect_language=true is English', async () => {
      const { status, body } = await listen('language=fr&detect_language=true')
      assert.equal(status, 200)
      assert.equal(body.results.channels[0]?.detected_language, 'en')
      // Without detection the engine refuses French, as before.
      const refused = await listen('language=fr')
      assert.equal(refused.status, 400)
      assert.equal(refused.body.err_code, 'INVALID_FIELD')
    })

    it('a restricted detect_language list is honoured: en among them gives en, none of them English is a 400', async () => {
      const withEn = await listen('detect_language=es&detect_language=en-GB')
      assert.equal(withEn.status, 200)
      assert.equal(withEn.body.results.channels[0]?.detected_language, 'en')
      const withoutEn = await listen('detect_language=es&detect_language=fr')
      assert.equal(withoutEn.status, 400)
      assert.equal(withoutEn.body.err_code, 'INVALID_FIELD')
      const bogus = await listen('detect_language=maybe!')
      assert.equal(bogus.status, 400)
      assert.equal(bogus.body.err_code, 'INVALID_FIELD')
      const off = await listen('detect_language=false')
      assert.equal(off.status, 200)
      assert.equal('detected_language' in (off.body.results.channels[0] ?? {}), false)
    })

    it('silence has a detected language with language_confidence 0', async () => {
      const { status, body } = await listen('detect_language=true', wav(new Int16Array(16_000)))
      assert.equal(status, 200)
      assert.equal(body.results.channels[0]?.detected_language, 'en')
      assert.equal(body.results.channels[0]?.language_confidence, 0)
    })
  })

  describe('live', () => {
    it('SDK v5 with diarize and detect_language: speaker 0 on every word, languages on every alternative', async () => {
      const run = await liveThroughSdkV5(srv.url, { apiKey: srv.ownerKey }, pcm, {
        model: 'nova-3',
        diarize: 'true',
        // v5's live arguments have no detect_language (Deepgram documents it for pre-recorded audio only).
        queryParams: { detect_language: 'true' },
      })
      assert.equal(run.closeCode, 1000)
      const { results } = run
      const transcript = finalTranscript(run)
      assert.ok(wordErrorRate(REFERENCE, transcript) <= 0.35, transcript)
      const words = results.flatMap((r) => r.channel.alternatives[0]?.words ?? [])
      assert.ok(words.length >= 8, `${words.length} words`)
      for (const w of words) {
        assert.equal(w.speaker, 0)
        assert.equal(w.language, 'en')
        // Deepgram sends speaker_confidence for pre-recorded diarization only (v5's type says so).
        assert.equal('speaker_confidence' in w, false)
      }
      for (const r of results) {
        const alt = r.channel.alternatives[0]
        assert.deepEqual(alt?.languages, alt?.words.length ? ['en'] : [])
        assert.equal('detected_language' in r.channel, false)
      }
    })

    it('raw WebSocket without the options: no speaker, no languages', async () => {
      const { ws, log, closed } = await openSocket(
        `${srv.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`,
        { protocols: ['token', srv.ownerKey] },
      )
      assert.equal(log.status, undefined)
      await sendPcm(ws, pcm)
      ws.send(JSON.stringify({ type: 'CloseStream' }))
      await closed
      const results = log.messages.filter(
        (m) => m.type === 'Results',
      ) as unknown as Deepgram.listen.ListenV1Results[]
      assert.ok(results.some((r) => (r.channel.alternatives[0]?.words.length ?? 0) > 0))
      for (const r of results) {
        const alt = r.channel.alternatives[0]
        assert.equal(alt && 'languages' in alt, false)
        for (const w of alt?.words ?? []) assert.equal('speaker' in w || 'language' in w, false)
      }
    })
  })

  describe('speed on /v1/speak', () => {
    /** Seconds of 16 kHz linear16 audio that SDK v5 got for `speed` (undefined: not sent). */
    const speakSeconds = async (speed: number | undefined): Promise<{ seconds: number; pcm: Buffer }> => {
      const client = new DeepgramClient({ apiKey: srv.ownerKey, baseUrl: srv.url })
      const answer = await client.speak.v1.audio.generate({
        text: SPOKEN,
        model: 'aura-2-thalia-en',
        encoding: 'linear16',
        container: 'none',
        sample_rate: 16000,
        ...(speed === undefined ? {} : { speed }),
      })
      const bytes = Buffer.from(await answer.arrayBuffer())
      return { seconds: bytes.length / 32_000, pcm: bytes }
    }

    const transcribe = async (raw: Buffer): Promise<string> => {
      const answer = await postListen(
        srv.url,
        `Token ${srv.ownerKey}`,
        raw,
        '?encoding=linear16&sample_rate=16000',
      )
      assert.equal(answer.status, 200)
      return prerecordedTranscript(answer.body)
    }

    it('SDK v5: speed changes the length monotonically (1.5 is about 1/1.5 as long) and stays recognisable', async (t) => {
      const plain = await speakSeconds(undefined)
      const runs = new Map<number, { seconds: number; pcm: Buffer }>()
      for (const speed of [0.7, 1, 1.25, 1.5]) runs.set(speed, await speakSeconds(speed))
      const lengths = [...runs].map(([speed, r]) => `${speed}: ${r.seconds.toFixed(3)} s`)
      t.diagnostic(`speak lengths by speed (none: ${plain.seconds.toFixed(3)} s) ${lengths.join(', ')}`)
      assert.equal(runs.get(1)?.seconds, plain.seconds, 'speed=1 is the default')
      const seconds = [...runs.values()].map((r) => r.seconds)
      for (let i = 1; i < seconds.length; i++)
        assert.ok((seconds[i] ?? 0) < (seconds[i - 1] ?? 0), lengths.join(', '))
      const fast = (runs.get(1.5)?.seconds ?? 0) / plain.seconds
      const slow = (runs.get(0.7)?.seconds ?? 0) / plain.seconds
      assert.ok(Math.abs(fast - 1 / 1.5) < 0.05, `1.5: ${fast.toFixed(3)} of the length`)
      assert.ok(Math.abs(slow - 1 / 0.7) < 0.07, `0.7: ${slow.toFixed(3)} of the length`)
      for (const speed of [0.7, 1.5]) {
        const heard = await transcribe(runs.get(speed)?.pcm ?? Buffer.alloc(0))
        const wer = wordErrorRate(SPOKEN, heard)
        t.diagnostic(`speed ${speed}: WER ${(wer * 100).toFixed(1)} % "${heard}"`)
        assert.ok(wer <= 0.2, `speed ${speed}: "${heard}"`)
      }
    })

    for (const bad of ['0.69', '1.51', '2', '0', '-1', 'fast', '1e0', 'NaN']) {
      it(`POST /v1/speak with speed=${bad} is a 400 INVALID_FIELD before anything is spoken`, async () => {
        const res = await fetch(
          `${srv.url}/v1/speak?model=aura-2-thalia-en&speed=${encodeURIComponent(bad)}`,
          {
            method: 'POST',
            headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ text: SPOKEN }),
          },
        )
        assert.equal(res.status, 400)
        const body = (await res.json()) as { err_code: string; err_msg: string }
        assert.equal(body.err_code, 'INVALID_FIELD')
        assert.match(body.err_msg, /speed/)
      })
    }

    it('the speak socket refuses an out-of-range speed at the upgrade with a 400 INVALID_FIELD', async () => {
      const { log } = await openSocket(
        `${srv.wsUrl}/v1/speak?encoding=linear16&sample_rate=16000&speed=1.6`,
        {
          protocols: ['token', srv.ownerKey],
        },
      )
      assert.equal(log.status, 400)
      assert.equal(log.body?.err_code, 'INVALID_FIELD')
    })

    it('the speak socket speaks faster with speed=1.5 than without', async () => {
      const spoken = async (query: string): Promise<number> => {
        const ws = new WebSocket(`${srv.wsUrl}/v1/speak?encoding=linear16&sample_rate=16000${query}`, [
          'token',
          srv.ownerKey,
        ])
        let bytes = 0
        const flushed = new Promise<void>((resolve, reject) => {
          ws.on('message', (data, isBinary) => {
            if (isBinary) bytes += (data as Buffer).length
            else if ((JSON.parse(String(data)) as { type?: string }).type === 'Flushed') resolve()
          })
          ws.once('unexpected-response', (_req, res) =>
            reject(new Error(`upgrade refused: ${res.statusCode}`)),
          )
        })
        await new Promise((resolve) => ws.once('open', resolve))
        ws.send(JSON.stringify({ type: 'Speak', text: SPOKEN }))
        ws.send(JSON.stringify({ type: 'Flush' }))
        await flushed
        ws.close()
        return bytes / 32_000
      }
      const normal = await spoken('')
      const fast = await spoken('&speed=1.5')
      assert.ok(Math.abs(fast / normal - 1 / 1.5) < 0.05, `${fast.toFixed(3)} s vs ${normal.toFixed(3)} s`)
    })
  })
})
