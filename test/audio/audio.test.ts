import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  AUTODETECT,
  AudioDecodeError,
  type AudioDecoder,
  type AudioDecoderOptions,
  createAudioDecoder,
  decodeAll,
  parseAudioOptions,
} from '../../src/audio/index.js'
import { ApiError } from '../../src/errors.js'
import {
  type AudioFixtures,
  chunked,
  energyEnvelope,
  envelopeCorrelation,
  type FixtureName,
  ffmpegChildren,
  makeAudioFixtures,
  referencePcm,
} from '../helpers/audio-fixtures.js'

const TOLERANCE_SECONDS = 0.06
/** Odd sizes around 100 ms of 16 kHz s16le, with single bytes between them. */
const ODD_CHUNKS = [3201, 1, 7, 2999, 1]

const raw16k: AudioDecoderOptions = parseAudioOptions({ encoding: 'linear16', sample_rate: '16000' })
const raw48kStereo = parseAudioOptions({ encoding: 'linear16', sample_rate: '48000', channels: '2' })
const mulaw8k = parseAudioOptions({ encoding: 'mulaw', sample_rate: '8000' })

interface Case {
  name: string
  file: FixtureName
  options: AudioDecoderOptions
  /** ffmpeg's input options for the reference one-shot conversion. */
  reference: (path: string) => string[]
  /** Lossless: every sample must equal the reference. Lossy: the energy envelope must follow it. */
  lossless: boolean
}

const file = (path: string) => ['-i', path]
const CASES: Case[] = [
  { name: 'WAV', file: 'speech.wav', options: { format: AUTODETECT }, reference: file, lossless: true },
  {
    name: 'WAV at 48 kHz stereo',
    file: 'speech-48k-stereo.wav',
    options: { format: AUTODETECT },
    reference: file,
    lossless: true,
  },
  {
    name: 'WebM/Opus',
    file: 'speech.webm',
    options: { format: AUTODETECT },
    reference: file,
    lossless: false,
  },
  {
    name: 'live WebM/Opus (MediaRecorder-like)',
    file: 'speech-live.webm',
    options: { format: AUTODETECT },
    reference: file,
    lossless: false,
  },
  { name: 'Ogg/Opus', file: 'speech.ogg', options: { format: AUTODETECT }, reference: file, lossless: false },
  { name: 'MP3', file: 'speech.mp3', options: { format: AUTODETECT }, reference: file, lossless: false },
  { name: 'FLAC', file: 'speech.flac', options: { format: AUTODETECT }, reference: file, lossless: true },
  {
    name: 'raw linear16 at 16 kHz',
    file: 'speech-16k.raw',
    options: raw16k,
    reference: (p) => ['-f', 's16le', '-ar', '16000', '-ac', '1', '-i', p],
    lossless: true,
  },
  {
    name: 'raw linear16 at 48 kHz stereo',
    file: 'speech-48k-stereo.raw',
    options: raw48kStereo,
    reference: (p) => ['-f', 's16le', '-ar', '48000', '-ac', '2', '-i', p],
    lossless: true,
  },
  {
    name: 'raw mulaw at 8 kHz',
    file: 'speech-8k.mulaw',
    options: mulaw8k,
    reference: (p) => ['-f', 'mulaw', '-ar', '8000', '-ac', '1', '-i', p],
    lossless: true,
  },
]

function outcome(decoder: AudioDecoder): Promise<void> {
  return new Promise((resolve, reject) => {
    decoder.onEnd(resolve)
    decoder.onError(reject)
  })
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('parseAudioOptions', () => {
  const rejects: Array<[Record<string, unknown>, string]> = [
    [{ encoding: 'linear16' }, 'sample_rate'],
    [{ encoding: 'mulaw', channels: '1' }, 'sample_rate'],
    [{ encoding: 'speex', sample_rate: '16000' }, 'encoding'],
    [{ encoding: 'wav' }, 'encoding'],
    [{ encoding: 'linear16', sample_rate: 'fast' }, 'sample_rate'],
    [{ encoding: 'linear16', sample_rate: '16000.5' }, 'sample_rate'],
    [{ encoding: 'linear16', sample_rate: '0' }, 'sample_rate'],
    [{ encoding: 'linear16', sample_rate: '16000', channels: '0' }, 'channels'],
    [{ encoding: 'linear16', sample_rate: '16000', channels: '99' }, 'channels'],
    [{ encoding: ['linear16', 'mulaw'], sample_rate: '16000' }, 'encoding'],
    [{ sample_rate: '-1' }, 'sample_rate'],
  ]
  for (const [query, field] of rejects) {
    it(`rejects ${JSON.stringify(query)} with INVALID_FIELD naming ${field}`, () => {
      assert.throws(
        () => parseAudioOptions(query),
        (err: unknown) =>
          err instanceof ApiError && err.code === 'INVALID_FIELD' && err.message.includes(`\`${field}\``),
      )
    })
  }

  it('reads raw encodings with their rate and channels, and containers with a hint', () => {
    assert.deepEqual(parseAudioOptions({}), { format: { kind: 'container', hint: null } })
    assert.deepEqual(parseAudioOptions({ sample_rate: '44100', channels: '2' }), {
      format: { kind: 'container', hint: null },
    })
    assert.deepEqual(parseAudioOptions({ encoding: 'opus' }), { format: { kind: 'container', hint: 'opus' } })
    assert.deepEqual(parseAudioOptions({ encoding: 'linear16', sample_rate: '48000', channels: '2' }), {
      format: { kind: 'raw', encoding: 'linear16', sampleRate: 48000, channels: 2 },
    })
    assert.deepEqual(parseAudioOptions(new URLSearchParams('encoding=alaw&sample_rate=8000')), {
      format: { kind: 'raw', encoding: 'alaw', sampleRate: 8000, channels: 1 },
    })
  })
})

describe('audio decoding', () => {
  let fx: AudioFixtures
  before(async () => {
    fx = await makeAudioFixtures()
  })
  after(() => fx.cleanup())

  for (const c of CASES) {
    it(`decodes ${c.name} to PCM of the source's length that matches ffmpeg's own conversion`, async () => {
      const pcm = await decodeAll(await fx.read(c.file), c.options)
      const seconds = pcm.length / 16000
      assert.ok(
        Math.abs(seconds - fx.seconds) <= TOLERANCE_SECONDS,
        `${seconds.toFixed(3)} s decoded, ${fx.seconds.toFixed(3)} s in the source`,
      )
      const reference = await referencePcm(c.reference(fx.path(c.file)))
      if (c.lossless) {
        assert.equal(pcm.length, reference.length)
        assert.ok(Buffer.from(pcm.buffer).equals(Buffer.from(reference.buffer)), 'sample-by-sample equal')
      } else {
        const r = envelopeCorrelation(energyEnvelope(pcm), energyEnvelope(fx.source))
        assert.ok(r > 0.95, `energy envelope correlation ${r.toFixed(3)} with the source`)
      }
    })

    it(`decodes ${c.name} fed in small odd-sized chunks as it does in one piece`, async () => {
      const bytes = await fx.read(c.file)
      const whole = await decodeAll(bytes, c.options)
      const pieces = await decodeAll(chunked(bytes, ODD_CHUNKS), c.options)
      if (c.lossless) {
        assert.ok(Buffer.from(pieces.buffer).equals(Buffer.from(whole.buffer)), 'the same samples')
      } else {
        assert.ok(Math.abs(pieces.length - whole.length) <= 0.02 * 16000)
        const r = envelopeCorrelation(energyEnvelope(pieces), energyEnvelope(whole))
        assert.ok(r > 0.99, `energy envelope correlation ${r.toFixed(3)}`)
      }
    })
  }

  it('passes 16 kHz mono linear16 straight through with no process, carrying odd bytes', async () => {
    const bytes = await fx.read('speech-16k.raw')
    const decoder = createAudioDecoder(raw16k)
    const parts: Int16Array[] = []
    decoder.onPcm((pcm) => parts.push(pcm))
    const done = outcome(decoder)
    for (const chunk of chunked(bytes, [1, 3, 5, 2])) decoder.write(chunk)
    assert.equal(decoder.pid, undefined)
    decoder.end()
    await done
    const total = parts.reduce((n, p) => n + p.length, 0)
    assert.equal(total, bytes.length / 2)
    const joined = Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)))
    assert.ok(joined.equals(bytes))
  })

  it('reads a 16 kHz mono WAV header itself and passes the samples through with no process', async () => {
    const decoder = createAudioDecoder({ format: AUTODETECT })
    decoder.write(await fx.read('speech.wav'))
    assert.equal(decoder.pid, undefined)
    await decoder.kill()
  })

  it('decodes a WAV streamed with placeholder sizes (as tools write to a pipe)', async () => {
    const bytes = Buffer.from(await fx.read('speech.wav'))
    // 0xFFFFFFFF in both the RIFF and the data size, as a streaming writer leaves them.
    bytes.writeUInt32LE(0xffffffff, 4)
    const dataAt = bytes.indexOf('data', 12)
    bytes.writeUInt32LE(0xffffffff, dataAt + 4)
    const pcm = await decodeAll(bytes, { format: AUTODETECT })
    assert.equal(pcm.length, fx.source.length)
  })

  it('decodes an upload that arrives as an async stream of chunks', async () => {
    const bytes = await fx.read('speech-live.webm')
    async function* upload() {
      for (const chunk of chunked(bytes, [4096, 777])) {
        await sleep(0)
        yield chunk
      }
    }
    const streamed = await decodeAll(upload(), { format: AUTODETECT })
    const whole = await decodeAll(bytes, { format: AUTODETECT })
    assert.ok(Buffer.from(streamed.buffer).equals(Buffer.from(whole.buffer)))
  })

  it('yields PCM while a live WebM stream is still being fed in real time', async (t) => {
    const bytes = await fx.read('speech-live.webm')
    const decoder = createAudioDecoder({ format: AUTODETECT })
    // A failed assertion must not leave ffmpeg running (it would hold the test process open).
    t.after(() => decoder.kill())
    const started = performance.now()
    let firstPcmAt = -1
    let samples = 0
    decoder.onPcm((pcm) => {
      if (firstPcmAt < 0) firstPcmAt = performance.now() - started
      samples += pcm.length
    })
    const done = outcome(decoder)
    // 100 ms of media a write, at the media's pace, until PCM has come (at least 12 writes) or all but the
    // last write went out: the PCM must come while the stream is still being fed, however slow the machine.
    const chunkBytes = Math.ceil(bytes.length / fx.seconds / 10)
    let sentAt = 0
    for (let i = 0; sentAt + chunkBytes < bytes.length && (i < 12 || firstPcmAt < 0); i++) {
      const wait = i * 100 - (performance.now() - started)
      if (wait > 0) await sleep(wait)
      decoder.write(bytes.subarray(sentAt, sentAt + chunkBytes))
      sentAt += chunkBytes
    }
    const samplesBeforeEnd = samples
    assert.ok(firstPcmAt >= 0, 'PCM came before end()')
    assert.ok(samplesBeforeEnd > 0, `${samplesBeforeEnd} samples before end()`)
    t.diagnostic(`first PCM after ${firstPcmAt.toFixed(0)} ms of real-time feeding`)
    decoder.write(bytes.subarray(sentAt))
    decoder.end()
    await done
    assert.ok(Math.abs(samples / 16000 - fx.seconds) <= TOLERANCE_SECONDS)
  })

  const garbage: Array<[string, () => Buffer]> = [
    ['random bytes', () => randomBytes(64 * 1024)],
    ['text', () => Buffer.from('this is not audio, only words. '.repeat(500))],
    [
      'a WebM header and nothing else of use',
      () => Buffer.concat([Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), randomBytes(20000)]),
    ],
  ]
  for (const [name, make] of garbage) {
    it(`rejects ${name} with AudioDecodeError UNDECODABLE`, async () => {
      await assert.rejects(decodeAll(make(), { format: AUTODETECT }), (err: unknown) => {
        assert.ok(err instanceof AudioDecodeError)
        assert.equal(err.code, 'UNDECODABLE')
        assert.ok(!err.message.includes('not audio'), 'no client data in the message')
        return true
      })
    })
  }

  it('reports a streaming failure through onError and stops calling other listeners', async () => {
    const decoder = createAudioDecoder({ format: AUTODETECT })
    let ended = false
    decoder.onEnd(() => {
      ended = true
    })
    decoder.write(randomBytes(32 * 1024))
    decoder.end()
    const err = await new Promise<AudioDecodeError>((resolve) => decoder.onError(resolve))
    assert.equal(err.code, 'UNDECODABLE')
    assert.equal(decoder.state, 'failed')
    assert.equal(ended, false)
  })

  it('kill() ends the ffmpeg process and silences the decoder', async () => {
    const bytes = await fx.read('speech-live.webm')
    const decoder = createAudioDecoder({ format: AUTODETECT })
    let calls = 0
    decoder.onPcm(() => calls++)
    decoder.onEnd(() => calls++)
    decoder.onError(() => calls++)
    decoder.write(bytes.subarray(0, 8192))
    const pid = decoder.pid
    assert.ok(pid !== undefined && isAlive(pid), 'ffmpeg runs')
    await decoder.kill()
    assert.equal(decoder.state, 'killed')
    assert.equal(isAlive(pid), false, 'ffmpeg is gone')
    const before = calls
    decoder.write(bytes.subarray(8192))
    decoder.end()
    await sleep(50)
    assert.equal(calls, before, 'no listener ran after kill()')
  })

  it('kills ffmpeg when an upload fails half-way, and rethrows the upload error', async () => {
    const bytes = await fx.read('speech.webm')
    let runningMidUpload: number[] = []
    async function* upload() {
      yield bytes.subarray(0, 4096)
      await sleep(50)
      runningMidUpload = await ffmpegChildren()
      throw new Error('client went away')
    }
    await assert.rejects(decodeAll(upload(), { format: AUTODETECT }), /client went away/)
    assert.equal(runningMidUpload.length, 1, 'ffmpeg ran while the upload went on')
    assert.deepEqual(await ffmpegChildren(), [], 'and is gone once decodeAll has thrown')
  })

  it('fails with BACKLOG_FULL when more than maxPendingBytes wait for ffmpeg', async () => {
    const bytes = await fx.read('speech-48k-stereo.raw')
    const decoder = createAudioDecoder({ ...raw48kStereo, maxPendingBytes: 100_000 })
    const done = outcome(decoder)
    decoder.write(bytes)
    const pid = decoder.pid
    await assert.rejects(
      done,
      (err: unknown) => err instanceof AudioDecodeError && err.code === 'BACKLOG_FULL',
    )
    await decoder.kill()
    assert.ok(pid !== undefined && !isAlive(pid), 'ffmpeg was stopped')
  })

  it('decodes raw PCM sent in one burst far past maxBytesBeforeAudio (the bound is for containers)', async () => {
    // A live client replaying a file at 8 kHz or 48 kHz sends faster than ffmpeg starts: before the fix the
    // stream was closed as undecodable before its first PCM came out.
    const bytes = await fx.read('speech-48k-stereo.raw')
    const decoder = createAudioDecoder({ ...raw48kStereo, maxBytesBeforeAudio: 1024 })
    let samples = 0
    decoder.onPcm((pcm) => {
      samples += pcm.length
    })
    const done = outcome(decoder)
    decoder.write(bytes)
    decoder.end()
    await done
    assert.ok(Math.abs(samples / 16000 - fx.seconds) <= TOLERANCE_SECONDS, `${samples} samples decoded`)
  })

  it('fails with TOO_LONG past maxSamples', async () => {
    await assert.rejects(
      decodeAll(await fx.read('speech.flac'), { format: AUTODETECT, maxSamples: 16000 }),
      (err: unknown) => err instanceof AudioDecodeError && err.code === 'TOO_LONG',
    )
  })

  it('fails with DECODER_UNAVAILABLE when ffmpeg cannot be started', async () => {
    await assert.rejects(
      decodeAll(await fx.read('speech.webm'), { format: AUTODETECT, ffmpegPath: '/nonexistent/ffmpeg' }),
      (err: unknown) => err instanceof AudioDecodeError && err.code === 'DECODER_UNAVAILABLE',
    )
  })

  it('ends with no PCM and no error, and spawns nothing, when no byte was sent', async () => {
    const decoder = createAudioDecoder({ format: AUTODETECT })
    const done = outcome(decoder)
    decoder.end()
    await done
    assert.equal(decoder.pid, undefined)
    assert.equal((await decodeAll(new Uint8Array(0), raw48kStereo)).length, 0)
  })
})
