import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { decodeAll, parseAudioOptions } from '../../src/audio/index.js'
import { getVoice, synthesize } from '../../src/tts/index.js'
import { bootstrapProject, createTestEarmark, type TestEarmark } from '../helpers/earmark.js'

interface WavInfo {
  format: number
  channels: number
  sampleRate: number
  byteRate: number
  blockAlign: number
  bitsPerSample: number
  dataOffset: number
  dataBytes: number
}

/** A strict RIFF/WAVE reader: every size must be the true one. */
function readWav(bytes: Buffer): WavInfo {
  assert.equal(bytes.toString('ascii', 0, 4), 'RIFF')
  assert.equal(bytes.readUInt32LE(4), bytes.length - 8, 'RIFF size')
  assert.equal(bytes.toString('ascii', 8, 12), 'WAVE')
  let at = 12
  let fmt: Omit<WavInfo, 'dataOffset' | 'dataBytes'> | null = null
  while (at + 8 <= bytes.length) {
    const id = bytes.toString('ascii', at, at + 4)
    const size = bytes.readUInt32LE(at + 4)
    if (id === 'fmt ') {
      fmt = {
        format: bytes.readUInt16LE(at + 8),
        channels: bytes.readUInt16LE(at + 10),
        sampleRate: bytes.readUInt32LE(at + 12),
        byteRate: bytes.readUInt32LE(at + 16),
        blockAlign: bytes.readUInt16LE(at + 20),
        bitsPerSample: bytes.readUInt16LE(at + 22),
      }
    }
    if (id === 'data') {
      assert.ok(fmt, 'fmt before data')
      assert.equal(size, bytes.length - at - 8, 'data size')
      return { ...fmt, dataOffset: at + 8, dataBytes: size }
    }
    at += 8 + size + (size % 2)
  }
  assert.fail('no data chunk')
}

function pcmOf(bytes: Buffer): Int16Array {
  const copy = Buffer.from(bytes)
  return new Int16Array(copy.buffer, copy.byteOffset, Math.floor(copy.length / 2))
}

function rms(pcm: Int16Array): number {
  let sum = 0
  for (const s of pcm) sum += s * s
  return Math.sqrt(sum / Math.max(1, pcm.length))
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

describe('POST /v1/speak', () => {
  let em: TestEarmark
  let projectId: string
  let auth: Record<string, string>

  before(async () => {
    em = await createTestEarmark()
    const fx = await bootstrapProject(em.services)
    projectId = fx.projectId
    auth = { authorization: `Token ${fx.ownerKey}` }
  })
  after(() => em.close())

  const speak = (query: string, payload: unknown = { text: 'hello world' }, headers = auth) =>
    em.app.inject({
      method: 'POST',
      url: `/v1/speak${query}`,
      headers,
      payload: payload as object,
    })

  it('answers MP3 by default, with the Deepgram headers', async () => {
    const res = await speak('', { text: 'Hello there, general listener.' })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.headers['content-type'], 'audio/mpeg')
    assert.equal(res.headers['dg-model-name'], 'aura-2-thalia-en')
    assert.match(String(res.headers['dg-model-uuid']), UUID)
    assert.equal(res.headers['dg-char-count'], '30')
    assert.ok(res.headers['dg-request-id'])
    const b = res.rawPayload
    const id3 = b.toString('ascii', 0, 3) === 'ID3'
    const frameSync = b[0] === 0xff && ((b[1] ?? 0) & 0xe0) === 0xe0
    assert.ok(id3 || frameSync, 'MP3 magic bytes')
    assert.ok(b.length > 1000)
  })

  it('answers linear16 as a WAV whose RIFF sizes are the true ones (24 kHz by default)', async () => {
    const res = await speak('?encoding=linear16')
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.headers['content-type'], 'audio/wav')
    const wav = readWav(res.rawPayload)
    assert.deepEqual(
      { format: wav.format, channels: wav.channels, rate: wav.sampleRate, bits: wav.bitsPerSample },
      { format: 1, channels: 1, rate: 24000, bits: 16 },
    )
    assert.equal(wav.byteRate, 48000)
    assert.equal(wav.blockAlign, 2)
    assert.equal(wav.dataOffset, 44)
  })

  it('answers raw linear16 with container=none, the same samples as the WAV carries', async () => {
    const wav = await speak('?encoding=linear16&container=wav&sample_rate=16000')
    const raw = await speak('?encoding=linear16&container=none&sample_rate=16000')
    assert.equal(raw.statusCode, 200, raw.body)
    assert.equal(raw.headers['content-type'], 'audio/l16;rate=16000')
    const info = readWav(wav.rawPayload)
    assert.equal(raw.rawPayload.length, info.dataBytes)
    assert.ok(raw.rawPayload.equals(wav.rawPayload.subarray(info.dataOffset)))
  })

  it('speaks "hello world" as 16 kHz linear16 of plausible length that is not silent', async () => {
    const res = await speak('?model=aura-2-thalia-en&encoding=linear16&container=none&sample_rate=16000')
    assert.equal(res.statusCode, 200, res.body)
    const pcm = pcmOf(res.rawPayload)
    const seconds = pcm.length / 16000
    assert.ok(seconds >= 0.5 && seconds <= 3, `${seconds} s`)
    assert.ok(rms(pcm) > 300, `RMS ${rms(pcm).toFixed(0)}`)
    // And the decoder the listen side uses reads it back sample for sample.
    const decoded = await decodeAll(
      res.rawPayload,
      parseAudioOptions({ encoding: 'linear16', sample_rate: '16000' }),
    )
    assert.deepEqual(decoded, pcm)
  })

  it('answers µ-law in a WAV and A-law raw, at 8 kHz', async () => {
    const mulaw = await speak('?encoding=mulaw')
    assert.equal(mulaw.statusCode, 200, mulaw.body)
    assert.equal(mulaw.headers['content-type'], 'audio/wav')
    const wav = readWav(mulaw.rawPayload)
    assert.deepEqual([wav.format, wav.sampleRate, wav.bitsPerSample], [7, 8000, 8])
    const alaw = await speak('?encoding=alaw&container=none')
    assert.equal(alaw.statusCode, 200, alaw.body)
    assert.equal(alaw.headers['content-type'], 'audio/alaw;rate=8000')
    assert.equal(alaw.rawPayload.length, wav.dataBytes)
  })

  const magic: Array<[string, string, (b: Buffer) => boolean]> = [
    ['flac', 'audio/flac', (b) => b.toString('ascii', 0, 4) === 'fLaC'],
    ['opus', 'audio/ogg;codecs=opus', (b) => b.toString('ascii', 0, 4) === 'OggS'],
    ['aac', 'audio/aac', (b) => b[0] === 0xff && ((b[1] ?? 0) & 0xf6) === 0xf0],
  ]
  for (const [encoding, type, check] of magic) {
    it(`answers ${encoding} as ${type}`, async () => {
      const res = await speak(`?encoding=${encoding}`)
      assert.equal(res.statusCode, 200, res.body)
      assert.equal(res.headers['content-type'], type)
      assert.ok(check(res.rawPayload), 'magic bytes')
    })
  }

  it('maps Aura names onto flite voices and takes the Earmark voices by name', async () => {
    const female = getVoice('flite-slt').uuid
    const male = getVoice('flite-rms').uuid
    const cases: Array<[string, string]> = [
      ['aura-asteria-en', female],
      ['aura-2-thalia-en', female],
      ['aura-orion-en', male],
      ['aura-2-zeus-en', male],
      ['aura-2-fabian-de', male],
      ['flite-awb', getVoice('flite-awb').uuid],
      ['flite-kal', getVoice('flite-kal').uuid],
      ['espeak-en', getVoice('espeak-en').uuid],
    ]
    for (const [model, uuid] of cases) {
      const res = await speak(`?model=${model}&encoding=linear16&container=none&sample_rate=8000`)
      assert.equal(res.statusCode, 200, `${model}: ${res.body}`)
      assert.equal(res.headers['dg-model-name'], model)
      assert.equal(res.headers['dg-model-uuid'], uuid, model)
      assert.ok(rms(pcmOf(res.rawPayload)) > 100, `${model} is not silent`)
    }
  })

  it('accepts a grant token', async () => {
    const grant = await em.app.inject({ method: 'POST', url: '/v1/auth/grant', headers: auth })
    const token = (grant.json() as { access_token: string }).access_token
    const res = await speak(
      '?encoding=linear16&container=none',
      { text: 'hi' },
      { authorization: `Bearer ${token}` },
    )
    assert.equal(res.statusCode, 200, res.body)
  })

  it('speaks text that looks like options or shell, and runs none of it', async () => {
    const marker = join(tmpdir(), `earmark-speak-pwned-${process.pid}`)
    for (const text of [
      '-o /etc/passwd --help',
      `$(touch ${marker})`,
      '`touch x`; rm -rf / && echo',
      '--voice kal',
    ]) {
      const res = await speak('?encoding=linear16&container=none&sample_rate=8000', { text })
      assert.equal(res.statusCode, 200, `${text}: ${res.body}`)
      assert.ok(res.rawPayload.length > 8000, `${text} was spoken`)
    }
    assert.equal(existsSync(marker), false)
  })

  it('meters the request: endpoint speak, its characters and tags', async () => {
    const res = await speak('?encoding=linear16&container=none&tag=a&tag=b', { text: 'Count these words.' })
    const record = await em.services.store.getUsage(projectId, String(res.headers['dg-request-id']))
    assert.ok(record)
    assert.equal(record.endpoint, 'speak')
    assert.equal(record.characters, 18)
    assert.deepEqual(record.tags, ['a', 'b'])
    assert.equal(record.status, 200)
    assert.equal(record.audioSeconds, 0, 'speak counts characters, not speech-to-text audio')
  })

  const errors: Array<[string, string, unknown, number, string, RegExp?]> = [
    ['empty text', '', { text: '' }, 400, 'INVALID_FIELD', /no characters/],
    ['whitespace-only text', '', { text: ' \n\t ' }, 400, 'INVALID_FIELD', /no characters/],
    ['no text', '', {}, 400, 'INVALID_FIELD', /`text`/],
    ['text that is not a string', '', { text: 42 }, 400, 'INVALID_FIELD', /`text`/],
    ['a url instead of text', '', { url: 'https://example.com/a.txt' }, 400, 'INVALID_FIELD', /`url`/],
    ['2001 characters', '', { text: 'a'.repeat(2001) }, 413, 'PAYLOAD_TOO_LARGE'],
    ['a speech-to-text model', '?model=nova-3', undefined, 400, 'MODEL_NOT_FOUND', /No such model/],
    ['an Aura name Deepgram does not have', '?model=aura-2-nobody-en', undefined, 400, 'MODEL_NOT_FOUND'],
    ['an Aura model with a NUL', '?model=aura-%00', undefined, 400, 'MODEL_NOT_FOUND'],
    [
      'an Aura model with an emoji',
      `?model=aura-${encodeURIComponent('🙂')}`,
      undefined,
      400,
      'MODEL_NOT_FOUND',
    ],
    ['an Aura model with CR/LF', '?model=aura-2-thalia-en%0D%0Ax-evil:1', undefined, 400, 'MODEL_NOT_FOUND'],
    ['an unknown encoding', '?encoding=wav', undefined, 400, 'INVALID_FIELD', /`encoding`/],
    [
      'mulaw at 24 kHz',
      '?encoding=mulaw&sample_rate=24000',
      undefined,
      400,
      'INVALID_FIELD',
      /`sample_rate`/,
    ],
    [
      'linear16 at 44.1 kHz',
      '?encoding=linear16&sample_rate=44100',
      undefined,
      400,
      'INVALID_FIELD',
      /`sample_rate`/,
    ],
    ['mp3 at 48 kHz', '?encoding=mp3&sample_rate=48000', undefined, 400, 'INVALID_FIELD', /`sample_rate`/],
    ['mp3 in a WAV', '?encoding=mp3&container=wav', undefined, 400, 'INVALID_FIELD', /`container`/],
    ['linear16 in Ogg', '?encoding=linear16&container=ogg', undefined, 400, 'INVALID_FIELD', /`container`/],
    [
      'a bit rate for linear16',
      '?encoding=linear16&bit_rate=48000',
      undefined,
      400,
      'INVALID_FIELD',
      /`bit_rate`/,
    ],
    [
      'a sample rate that is not a number',
      '?sample_rate=fast',
      undefined,
      400,
      'INVALID_FIELD',
      /`sample_rate`/,
    ],
    ['a callback', '?callback=https://example.com/cb', undefined, 400, 'INVALID_FIELD', /`callback`/],
  ]
  for (const [name, query, payload, status, code, message] of errors) {
    it(`refuses ${name} with ${status} ${code}`, async () => {
      const res = await speak(query, payload ?? { text: 'hello' })
      assert.equal(res.statusCode, status, res.body)
      const body = res.json() as { err_code: string; err_msg: string; request_id: string }
      assert.equal(body.err_code, code)
      assert.equal(body.request_id, res.headers['dg-request-id'])
      if (message) assert.match(body.err_msg, message)
      assert.match(String(res.headers['dg-error']), /^[\x20-\x7e]+$/)
      if (status < 500) {
        const usage = await em.services.store.getUsage(projectId, body.request_id)
        assert.equal(usage, undefined, 'a refused request is not metered')
      }
    })
  }

  it('takes every Aura voice the v5 SDK names, and Earmark voice ids, in any case', async () => {
    for (const model of [
      'aura-asteria-en',
      'AURA-2-Thalia-EN',
      'aura-2-sirio-es',
      'aura-2-uzume-ja',
      'espeak-en',
    ]) {
      const res = await speak(`?model=${model}&encoding=linear16&container=none&sample_rate=8000`, {
        text: 'hi',
      })
      assert.equal(res.statusCode, 200, `${model}: ${res.body}`)
      assert.equal(res.headers['dg-model-name'], model)
    }
  })

  it('takes exactly 2000 characters', async () => {
    const text = 'Speech. '.repeat(250)
    const res = await speak('?model=flite-kal&encoding=linear16&container=none&sample_rate=8000', { text })
    assert.equal(res.statusCode, 200, res.body)
    assert.equal(res.headers['dg-char-count'], '2000')
  })

  it('refuses a body that is not JSON with 415', async () => {
    const res = await em.app.inject({
      method: 'POST',
      url: '/v1/speak',
      headers: { ...auth, 'content-type': 'text/plain' },
      payload: 'hello',
    })
    assert.equal(res.statusCode, 415)
    assert.equal((res.json() as { err_code: string }).err_code, 'UNSUPPORTED_MEDIA_TYPE')
  })
})

describe('synthesize', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'earmark-speak-test-'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('leaves no temporary file once the audio was read', async () => {
    const speech = await synthesize('All done here.', { voice: 'flite-slt', encoding: 'mp3', tmpDir: dir })
    for await (const _ of speech.stream) {
      // read to the end
    }
    await waitFor(async () => (await readdir(dir)).length === 0)
  })

  it('stops ffmpeg and removes its files when the reader goes away early', async () => {
    const speech = await synthesize('A long sentence that the client will not wait to hear the end of.', {
      voice: 'flite-slt',
      encoding: 'flac',
      sampleRate: 48000,
      tmpDir: dir,
    })
    speech.stream.destroy()
    await waitFor(async () => (await readdir(dir)).length === 0)
  })

  it('reports a missing voice engine as SERVICE_UNAVAILABLE', async () => {
    await assert.rejects(
      synthesize('hello', { voice: 'flite-slt', tools: { flite: '/nonexistent/flite' }, tmpDir: dir }),
      (err: unknown) => err instanceof Error && 'code' in err && err.code === 'SERVICE_UNAVAILABLE',
    )
    assert.deepEqual(await readdir(dir), [])
  })
})

async function waitFor(condition: () => Promise<boolean>, ms = 3000): Promise<void> {
  const until = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > until) assert.fail('timed out waiting')
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
