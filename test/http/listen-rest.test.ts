import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { createEngine, type Engine } from '../../src/engines/index.js'
import { warmupSpeech } from '../../src/main.js'
import {
  addMember,
  bearerAuth,
  bootstrapProject,
  createTestEarmark,
  type Fixture,
  makeKey,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'
import { wav } from '../helpers/listen-e2e.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

const SENTENCES = ['please open the door', 'turn on the lights in the kitchen']

interface ListenBody {
  metadata: { request_id: string; duration: number; sha256: string; channels: number; models: string[] }
  results: {
    channels: {
      alternatives: {
        transcript: string
        confidence: number
        words: { word: string; start: number; end: number; confidence: number; punctuated_word?: string }[]
        paragraphs?: unknown
      }[]
    }[]
    utterances?: { transcript: string; start: number; end: number; id: string }[]
  }
}

describe('POST /v1/listen', () => {
  let engine: Engine
  let em: TestEarmark
  let fx: Fixture
  let audio: Buffer
  let audioSeconds: number
  let fileServer: Server
  let fileHost: string

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 1, warmup: warmupSpeech() })
    fileServer = createServer((req, res) => {
      if (req.url === '/speech.wav') {
        res.writeHead(200, { 'content-type': 'audio/wav' }).end(audio)
      } else if (req.url === '/hop') {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' }).end()
      } else {
        res.writeHead(404).end()
      }
    })
    await new Promise<void>((r) => fileServer.listen(0, '127.0.0.1', r))
    fileHost = `127.0.0.1:${(fileServer.address() as AddressInfo).port}`
    em = await createTestEarmark(':memory:', {
      engine,
      options: { fetch: { allowedHosts: [fileHost] }, maxUploadBytes: 4 * 1024 * 1024 },
    })
    fx = await bootstrapProject(em.services)
    const parts = [silence(0.3)]
    for (const s of SENTENCES) parts.push(await speech(s), silence(1))
    const pcm = concatPcm(...parts)
    audioSeconds = pcm.length / 16000
    audio = wav(pcm)
  })
  after(async () => {
    await em.close()
    await engine.close()
    fileServer.close()
  })

  const listen = (payload: Buffer | string | Readable, query = '', headers: Record<string, string> = {}) =>
    em.app.inject({
      method: 'POST',
      url: `/v1/listen${query}`,
      headers: { ...tokenAuth(fx.ownerKey), 'content-type': 'application/octet-stream', ...headers },
      payload,
    })

  it('transcribes an upload of each content type the SDKs send, in the Deepgram shape', async () => {
    for (const type of ['deepgram/audio+video', 'application/octet-stream', 'audio/wav']) {
      const res = await listen(audio, '', { 'content-type': type })
      assert.equal(res.statusCode, 200, `${type}: ${res.body}`)
      const body = res.json() as ListenBody
      const alt = body.results.channels[0]?.alternatives[0]
      assert.ok(alt)
      assert.ok(wordErrorRate(SENTENCES.join(' '), alt.transcript) <= 0.35, alt.transcript)
      assert.equal(body.metadata.request_id, res.headers['dg-request-id'])
      assert.ok(Math.abs(body.metadata.duration - audioSeconds) < 0.02)
      assert.match(body.metadata.sha256, /^[0-9a-f]{64}$/)
      assert.ok(alt.words.length > 0)
      for (const w of alt.words) {
        assert.ok(w.start >= 0 && w.end > w.start && w.end <= audioSeconds + 0.01)
        assert.ok(w.confidence >= 0 && w.confidence <= 1)
      }
    }
  })

  it('streams a chunked upload with no Content-Length', async () => {
    const chunks = []
    for (let i = 0; i < audio.length; i += 7001) chunks.push(audio.subarray(i, i + 7001))
    const res = await listen(Readable.from(chunks))
    assert.equal(res.statusCode, 200, res.body)
    assert.ok((res.json() as ListenBody).results.channels[0]?.alternatives[0]?.transcript)
  })

  it('gives utterances, punctuation and paragraphs when asked', async () => {
    const res = await listen(audio, '?utterances=true&punctuate=true&paragraphs=true')
    const body = res.json() as ListenBody
    assert.equal(body.results.utterances?.length, SENTENCES.length)
    const alt = body.results.channels[0]?.alternatives[0]
    assert.ok(alt?.words.every((w) => typeof w.punctuated_word === 'string'))
    assert.match(alt?.transcript ?? '', /^[A-Z].*\.$/)
    assert.ok(alt?.paragraphs)
  })

  it('reads raw linear16 described by the query', async () => {
    const res = await listen(audio.subarray(44), '?encoding=linear16&sample_rate=16000')
    assert.equal(res.statusCode, 200)
    assert.ok((res.json() as ListenBody).results.channels[0]?.alternatives[0]?.transcript)
  })

  it('refuses audio it cannot decode with 400 BAD_AUDIO and records the failure', async () => {
    const res = await listen(Buffer.from('definitely not audio '.repeat(500)))
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().err_code, 'BAD_AUDIO')
    const record = await em.services.store.getUsage(fx.projectId, res.json().request_id)
    assert.equal(record?.status, 400)
  })

  it('refuses an upload over the limit with 413', async () => {
    const res = await listen(Buffer.alloc(5 * 1024 * 1024))
    assert.equal(res.statusCode, 413)
    assert.equal(res.json().err_code, 'PAYLOAD_TOO_LARGE')
  })

  it('fetches {"url"} audio only from allowed hosts, re-checking every redirect', async () => {
    const ok = await listen(JSON.stringify({ url: `http://${fileHost}/speech.wav` }), '', {
      'content-type': 'application/json',
    })
    assert.equal(ok.statusCode, 200, ok.body)
    assert.ok((ok.json() as ListenBody).results.channels[0]?.alternatives[0]?.transcript)
    for (const url of ['http://10.0.0.1/speech.wav', 'file:///etc/passwd', `http://${fileHost}/hop`]) {
      const res = await listen(JSON.stringify({ url }), '', { 'content-type': 'application/json' })
      assert.equal(res.statusCode, 400, url)
      assert.equal(res.json().err_code, 'REMOTE_CONTENT_ERROR', url)
    }
    const bad = await listen(JSON.stringify({ url: 42 }), '', { 'content-type': 'application/json' })
    assert.equal(bad.statusCode, 400)
  })

  it('takes grant tokens and usage:write keys, refuses keys without usage:write, and meters each request', async () => {
    const member = await addMember(em.services, {
      projectId: fx.projectId,
      email: 'm@example.com',
      role: 'member',
    })
    const usage = await makeKey(em.services, member, { scopes: ['usage:write'] })
    const reader = await makeKey(em.services, member, { scopes: ['keys:read'] })
    const memberKey = await makeKey(em.services, member, { scopes: ['member'] })
    const token = (
      await em.app.inject({ method: 'POST', url: '/v1/auth/grant', headers: tokenAuth(memberKey.secret) })
    ).json().access_token as string
    const asUsage = await listen(audio, '?tag=checkout', tokenAuth(usage.secret))
    assert.equal(asUsage.statusCode, 200)
    const asToken = await listen(audio, '', bearerAuth(token))
    assert.equal(asToken.statusCode, 200)
    const refused = await listen(audio, '', tokenAuth(reader.secret))
    assert.equal(refused.statusCode, 403)
    assert.equal(refused.json().err_code, 'FORBIDDEN')

    const byUsage = await em.services.store.getUsage(fx.projectId, asUsage.json().metadata.request_id)
    assert.equal(byUsage?.keyId, usage.id)
    assert.equal(byUsage?.method, 'sync')
    assert.equal(byUsage?.status, 200)
    assert.deepEqual(byUsage?.tags, ['checkout'])
    assert.ok(Math.abs((byUsage?.audioSeconds ?? 0) - audioSeconds) < 0.02)
    const byToken = await em.services.store.getUsage(fx.projectId, asToken.json().metadata.request_id)
    assert.equal(byToken?.keyId, memberKey.id, "a grant token's usage is its parent key's")
  })

  it('refuses callbacks, which this server does not make, with a 400 naming the field', async () => {
    const res = await listen(audio, '?callback=http%3A%2F%2Fexample.com%2Fhook')
    assert.equal(res.statusCode, 400)
    assert.match(res.json().err_msg, /callback/)
  })
})
