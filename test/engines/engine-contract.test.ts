// The contract every speech engine keeps, run on real speech made at test time with flite.
// ENGINES=pocketsphinx (comma-separated) chooses the engines; pocketsphinx is the default.
import assert from 'node:assert/strict'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { after, before, describe, test } from 'node:test'
import {
  createEngine,
  type Engine,
  EngineBusyError,
  EngineOptionError,
  type EngineStream,
  type FinalHypothesis,
  type Hypothesis,
  type StreamOptions,
  type StreamSink,
  type Word,
} from '../../src/engines/index.js'
import { chunks, concatPcm, type FliteVoice, silence, speech, wordErrors } from '../helpers/speech.js'

interface EngineUnderTest {
  create(capacity: number): Promise<Engine>
  /**
   * Aggregate WER bound on the flite set. PocketSphinx measured 7-8 % on flite slt/rms over 118 words
   * (pocketsphinx-notes.md §4); on this 46-word set one sentence going wrong costs about 10 points, so 25 %
   * leaves room for about two bad sentences without letting a broken decoder (WER near 100 %) through.
   */
  maxWer: number
}

const ENGINES: Record<string, EngineUnderTest> = {
  pocketsphinx: { create: (capacity) => createEngine('pocketsphinx', { capacity }), maxWer: 0.25 },
}

const SENTENCES = [
  'the quick brown fox jumps over the lazy dog',
  'please call me tomorrow at ten',
  'open the door and turn on the lights',
] as const
const VOICES: FliteVoice[] = ['slt', 'rms']
const CAPACITY = 3
const LIVE: StreamOptions = { language: 'en-US', interimResults: true, endpointingMs: 10 }

type Event =
  | { type: 'interim'; h: Hypothesis }
  | { type: 'final'; h: FinalHypothesis }
  | { type: 'speech'; timestamp: number }
  | { type: 'error'; err: Error }

function recorder() {
  const events: Event[] = []
  const sink: StreamSink = {
    onInterim: (h) => events.push({ type: 'interim', h }),
    onFinal: (h) => events.push({ type: 'final', h }),
    onSpeechStarted: (timestamp) => events.push({ type: 'speech', timestamp }),
    onError: (err) => events.push({ type: 'error', err }),
  }
  const finals = () => events.flatMap((e) => (e.type === 'final' ? [e.h] : []))
  const transcript = () =>
    finals()
      .map((h) => h.transcript)
      .filter((t) => t !== '')
      .join(' ')
  return { events, sink, finals, transcript }
}

function pushAll(stream: EngineStream, pcm: Int16Array, ms = 100): void {
  for (const chunk of chunks(pcm, ms)) stream.push(chunk)
}

function assertWords(words: readonly Word[], from: number, to: number): void {
  let previousEnd = from
  for (const w of words) {
    assert.ok(w.start >= previousEnd - 1e-6, `"${w.word}" starts at ${w.start}, before ${previousEnd}`)
    assert.ok(w.end > w.start, `"${w.word}" ends at ${w.end}, not after its start ${w.start}`)
    assert.ok(w.end <= to + 1e-6, `"${w.word}" ends at ${w.end}, after ${to}`)
    assert.ok(w.confidence >= 0 && w.confidence <= 1, `confidence ${w.confidence} of "${w.word}"`)
    assert.match(w.word, /^[a-z0-9']+$/)
    previousEnd = w.end
  }
}

const selected = (process.env.ENGINES ?? 'pocketsphinx').split(',').filter((n) => n !== '')

for (const name of selected) {
  const under = ENGINES[name]
  if (!under) throw new Error(`No contract setup for engine ${name}`)

  describe(`engine contract: ${name}`, () => {
    let engine: Engine
    const clips = new Map<string, Int16Array>()
    const clip = (sentence: string, voice: FliteVoice = 'slt') => {
      const pcm = clips.get(`${voice}:${sentence}`)
      assert.ok(pcm, `no clip for ${voice}:${sentence}`)
      return pcm
    }
    /** The three slt sentences with 1 s pauses and 1 s of silence at the end. */
    let paced: Int16Array
    const pacedReference = SENTENCES.join(' ')

    before(async () => {
      const made = await Promise.all(
        VOICES.flatMap((voice) =>
          SENTENCES.map(async (s) => [`${voice}:${s}`, await speech(s, voice)] as const),
        ),
      )
      for (const [key, pcm] of made) clips.set(key, pcm)
      paced = concatPcm(...SENTENCES.flatMap((s) => [clip(s), silence(1)]))
      engine = await under.create(CAPACITY)
    })

    after(async () => {
      await engine?.close()
    })

    test('the engine describes itself', () => {
      assert.equal(engine.sampleRate, 16_000)
      assert.equal(engine.capacity, CAPACITY)
      assert.equal(engine.inUse(), 0)
      assert.match(engine.model.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/)
      assert.ok(engine.model.name && engine.model.version && engine.model.arch)
    })

    test('transcribe recognises flite speech within the WER bound, with ordered timings and confidences', async () => {
      let errors = 0
      let words = 0
      const lines: string[] = []
      for (const voice of VOICES) {
        for (const sentence of SENTENCES) {
          const pcm = concatPcm(silence(0.5), clip(sentence, voice), silence(0.5))
          const result = await engine.transcribe(pcm, { language: 'en', endpointingMs: 10 })
          const duration = pcm.length / 16_000
          assert.ok(Math.abs(result.duration - duration) < 1e-9)
          const hypothesis = result.utterances.map((u) => u.transcript).join(' ')
          const counted = wordErrors(sentence, hypothesis)
          errors += counted.errors
          words += counted.words
          lines.push(`${voice}: "${hypothesis}" (${counted.errors}/${counted.words})`)
          let previousEnd = 0
          for (const u of result.utterances) {
            assert.ok(u.start >= previousEnd - 1e-6 && u.end > u.start && u.end <= duration + 1e-6)
            assert.equal(u.transcript, u.words.map((w) => w.word).join(' '))
            assert.ok(u.confidence >= 0 && u.confidence <= 1)
            assert.equal(u.fromFinalize, false)
            assertWords(u.words, u.start, u.end)
            previousEnd = u.end
          }
          // Real timings, not a spread over the buffer: speech starts after the 0.5 s of leading silence.
          const first = result.utterances[0]?.words[0]
          assert.ok(first && first.start >= 0.4, `first word at ${first?.start}`)
        }
      }
      const wer = errors / words
      console.log(
        `# ${name} flite WER ${(wer * 100).toFixed(1)} % (${errors}/${words})\n# ${lines.join('\n# ')}`,
      )
      assert.ok(wer <= under.maxWer, `WER ${wer} above ${under.maxWer}`)
    })

    test('a stream in 100 ms chunks gives SpeechStarted, interims and speechFinal finals, as good as one-shot', async () => {
      const oneShot = await engine.transcribe(paced, { language: 'en', endpointingMs: 10 })
      const oneShotText = oneShot.utterances.map((u) => u.transcript).join(' ')

      const rec = recorder()
      const stream = await engine.openStream(LIVE, rec.sink)
      pushAll(stream, paced)
      assert.ok(Math.abs(stream.audioSeconds - paced.length / 16_000) < 1e-9)
      await stream.close()

      assert.deepEqual(
        rec.events.filter((e) => e.type === 'error'),
        [],
      )
      const finals = rec.finals()
      const spoken = finals.filter((f) => f.words.length > 0)
      assert.equal(spoken.length, 3, `one final per sentence: ${finals.map((f) => f.transcript).join(' | ')}`)
      for (const f of spoken) assert.equal(f.speechFinal, true)
      // Finals tile the stream.
      let previousEnd = 0
      for (const f of finals) {
        assert.ok(
          Math.abs(f.start - previousEnd) < 1e-6,
          `final starts at ${f.start}, previous ended ${previousEnd}`,
        )
        assertWords(f.words, f.start, f.end)
        previousEnd = f.end
      }
      // Each spoken final is preceded by SpeechStarted (no later than its first word) and by interims.
      let sinceFinal: Event[] = []
      for (const e of rec.events) {
        if (e.type !== 'final') {
          sinceFinal.push(e)
          continue
        }
        if (e.h.words.length > 0) {
          const firstWordEvent = sinceFinal.findIndex(
            (x) => (x.type === 'interim' && x.h.words.length > 0) || x.type === 'final',
          )
          const started = sinceFinal.findIndex((x) => x.type === 'speech')
          assert.ok(started >= 0 && (firstWordEvent < 0 || started < firstWordEvent), 'SpeechStarted first')
          const at = sinceFinal[started]
          assert.ok(at?.type === 'speech' && at.timestamp <= (e.h.words[0]?.start ?? 0) + 1e-6)
          assert.ok(
            sinceFinal.some((x) => x.type === 'interim'),
            'interims before the final',
          )
        }
        sinceFinal = []
      }
      for (const e of rec.events) {
        if (e.type === 'interim') {
          assert.ok(e.h.transcript !== '')
          assertWords(e.h.words, e.h.start, e.h.end)
        }
      }
      // The rule: the streamed WER is at most the one-shot WER of the same audio plus one percentage point.
      const streamed = wordErrors(pacedReference, rec.transcript())
      const single = wordErrors(pacedReference, oneShotText)
      console.log(
        `# streamed "${rec.transcript()}" ${streamed.errors}/${streamed.words}; one-shot ${single.errors}`,
      )
      assert.ok(streamed.errors / streamed.words <= single.errors / single.words + 0.01)
    })

    test('finalize in the middle of speech delivers a final with fromFinalize before it resolves', async () => {
      const pcm = clip(SENTENCES[0])
      const half = Math.round(pcm.length * 0.6)
      const rec = recorder()
      const stream = await engine.openStream({ ...LIVE, endpointingMs: false }, rec.sink)
      pushAll(stream, pcm.subarray(0, half))
      await stream.finalize()
      assert.equal(stream.backlogMs, 0)
      const cut = rec.finals()
      assert.equal(cut.length, 1)
      assert.equal(cut[0]?.fromFinalize, true)
      assert.notEqual(cut[0]?.transcript, '')
      assert.ok(Math.abs((cut[0]?.end ?? 0) - half / 16_000) < 1e-6)

      // Nothing new since the last final: Deepgram still answers a Finalize with (empty) Results.
      await stream.finalize()
      assert.equal(rec.finals().length, 2)
      assert.equal(rec.finals()[1]?.fromFinalize, true)
      assert.equal(rec.finals()[1]?.transcript, '')

      pushAll(stream, concatPcm(pcm.subarray(half), silence(0.3)))
      await stream.close()
      const last = rec.finals().at(-1)
      assert.equal(rec.finals().length, 3, 'close flushes the pending speech')
      assert.equal(last?.fromFinalize, false)
      assert.notEqual(last?.transcript, '')
      await assert.rejects(stream.finalize())
    })

    test('capacity: one stream too many is refused with EngineBusyError, and closing one frees a slot', async () => {
      const streams = await Promise.all(
        Array.from({ length: CAPACITY }, () => engine.openStream(LIVE, recorder().sink)),
      )
      assert.equal(engine.inUse(), CAPACITY)
      await assert.rejects(engine.openStream(LIVE, recorder().sink), EngineBusyError)
      await assert.rejects(
        engine.transcribe(clip(SENTENCES[1]), { language: 'en', endpointingMs: 10 }, 0),
        EngineBusyError,
      )
      // A one-shot decode waiting for capacity gets the first slot that frees.
      const waiting = engine.transcribe(clip(SENTENCES[1]), { language: 'en', endpointingMs: 10 }, 10_000)
      await streams[0]?.close()
      const result = await waiting
      assert.ok(result.utterances.length > 0)
      const again = await engine.openStream(LIVE, recorder().sink)
      assert.equal(engine.inUse(), CAPACITY)
      await Promise.all([again, ...streams.slice(1)].map((s) => s.close()))
      assert.equal(engine.inUse(), 0)
    })

    test('transcribe takes PCM chunks pulled one at a time, with the same result as one buffer', async () => {
      const whole = await engine.transcribe(paced, { language: 'en', endpointingMs: 10 })
      let pulled = 0
      async function* source() {
        // Odd chunk sizes, so slices straddle chunks.
        for (let at = 0, i = 0; at < paced.length; i++) {
          const size = [1234, 16_000, 7, 4000][i % 4] ?? 1
          pulled++
          yield paced.slice(at, at + size)
          at += size
        }
      }
      const streamed = await engine.transcribe(source(), { language: 'en', endpointingMs: 10 })
      assert.equal(streamed.duration, whole.duration)
      assert.deepEqual(
        streamed.utterances.map((u) => u.transcript),
        whole.utterances.map((u) => u.transcript),
      )
      assert.ok(pulled > 1)
      assert.equal(engine.inUse(), 0)
    })

    test('a streamed transcribe stops pulling and frees its decoder when its signal aborts or its source fails', async () => {
      const ac = new AbortController()
      let closed = false
      let pulled = 0
      async function* endless() {
        try {
          for (;;) {
            pulled++
            if (pulled === 20) ac.abort(new Error('client gone'))
            yield silence(0.1)
          }
        } finally {
          closed = true
        }
      }
      await assert.rejects(
        engine.transcribe(endless(), { language: 'en', endpointingMs: 10 }, { signal: ac.signal }),
        /client gone/,
      )
      assert.ok(closed, 'the source was closed')
      assert.ok(pulled <= 22, `pulled ${pulled} chunks after the abort`)
      assert.equal(engine.inUse(), 0)

      async function* failing() {
        yield clip(SENTENCES[0])
        throw new Error('upload broke')
      }
      await assert.rejects(
        engine.transcribe(failing(), { language: 'en', endpointingMs: 10 }),
        /upload broke/,
      )
      assert.equal(engine.inUse(), 0)
      // The decoder went back clean (no utterance left open): the next decode recognises speech as usual.
      const padded = concatPcm(silence(0.5), clip(SENTENCES[1]), silence(0.5))
      const after = await engine.transcribe(padded, { language: 'en', endpointingMs: 10 })
      const counted = wordErrors(SENTENCES[1], after.utterances.map((u) => u.transcript).join(' '))
      assert.ok(counted.errors <= 1, `${counted.errors} errors in ${counted.words} words`)
    })

    test('one-shot decodes queue for the decoders streams hold: the queue is bounded, and a waiter can leave', async () => {
      const streams = await Promise.all(
        Array.from({ length: CAPACITY }, () => engine.openStream(LIVE, recorder().sink)),
      )
      const options = { language: 'en', endpointingMs: 10 } as const
      await assert.rejects(engine.transcribe(clip(SENTENCES[1]), options, { maxQueue: 0 }), EngineBusyError)
      const first = engine.transcribe(clip(SENTENCES[1]), options, { waitMs: 10_000, maxQueue: 1 })
      const started = performance.now()
      await assert.rejects(
        engine.transcribe(clip(SENTENCES[1]), options, { waitMs: 10_000, maxQueue: 1 }),
        EngineBusyError,
      )
      assert.ok(performance.now() - started < 100, 'a full queue refuses at once')
      const waited = performance.now()
      await assert.rejects(engine.transcribe(clip(SENTENCES[1]), options, { waitMs: 200 }), EngineBusyError)
      const waitedMs = performance.now() - waited
      assert.ok(waitedMs >= 190 && waitedMs < 1000, `gave up after ${waitedMs.toFixed(0)} ms`)
      const ac = new AbortController()
      const leaving = engine.transcribe(clip(SENTENCES[1]), options, { waitMs: 10_000, signal: ac.signal })
      ac.abort(new Error('gave up'))
      await assert.rejects(leaving, /gave up/)
      await streams[0]?.close()
      assert.ok((await first).utterances.length > 0)
      await Promise.all(streams.slice(1).map((s) => s.close()))
      assert.equal(engine.inUse(), 0)
    })

    test('parallel streams each get their own transcript', async () => {
      const voices: FliteVoice[] = ['slt', 'rms', 'slt']
      const inputs = SENTENCES.map((s, i) => concatPcm(clip(s, voices[i]), silence(0.8)))
      const recs = inputs.map(() => recorder())
      const streams = await Promise.all(recs.map((r) => engine.openStream(LIVE, r.sink)))
      const split = inputs.map((pcm) => chunks(pcm, 100))
      // Interleaved, as sockets would deliver them.
      for (let i = 0; i < Math.max(...split.map((c) => c.length)); i++) {
        split.forEach((c, s) => {
          const chunk = c[i]
          if (chunk) streams[s]?.push(chunk)
        })
      }
      await Promise.all(streams.map((s) => s.close()))
      recs.forEach((rec, s) => {
        const own = wordErrors(SENTENCES[s] ?? '', rec.transcript())
        assert.ok(own.errors / own.words <= 0.5, `stream ${s}: "${rec.transcript()}"`)
        SENTENCES.forEach((other, o) => {
          if (o === s) return
          const theirs = wordErrors(other, rec.transcript())
          assert.ok(own.errors / own.words < theirs.errors / theirs.words, `stream ${s} looks like ${o}`)
        })
      })
    })

    test('decoding does not block the event loop', async () => {
      const histogram = monitorEventLoopDelay({ resolution: 10 })
      histogram.enable()
      const recs = [recorder(), recorder()]
      const streams = await Promise.all(recs.map((r) => engine.openStream(LIVE, r.sink)))
      // Everything pushed at once: the decoders run flat out on the threadpool.
      for (const s of streams) pushAll(s, paced)
      const oneShot = engine.transcribe(paced, { language: 'en', endpointingMs: 10 })
      await Promise.all([...streams.map((s) => s.close()), oneShot])
      histogram.disable()
      const maxMs = histogram.max / 1e6
      console.log(
        `# max event-loop delay ${maxMs.toFixed(1)} ms (p99 ${(histogram.percentile(99) / 1e6).toFixed(1)})`,
      )
      assert.ok(maxMs < 150, `event loop blocked for ${maxMs} ms`)
      for (const r of recs) assert.ok(r.transcript().length > 0)
    })

    test('an unsupported language is refused with EngineOptionError on the language field', async () => {
      for (const language of ['fr', 'de-DE', 'en-GB']) {
        await assert.rejects(engine.openStream({ ...LIVE, language }, recorder().sink), (err: unknown) => {
          assert.ok(err instanceof EngineOptionError)
          assert.equal(err.field, 'language')
          return true
        })
        await assert.rejects(
          engine.transcribe(clip(SENTENCES[1]), { language, endpointingMs: 10 }),
          EngineOptionError,
        )
      }
      assert.equal(engine.inUse(), 0)
      for (const language of ['en', 'en-US', 'en-us', '']) {
        const stream = await engine.openStream({ ...LIVE, language }, recorder().sink)
        await stream.close()
      }
    })
  })
}
