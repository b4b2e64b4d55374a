import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createEngine, type Engine } from '../../src/engines/index.js'
import { POCKETSPHINX_MODEL } from '../../src/engines/pocketsphinx/pocketsphinx-engine.js'
import { headerSafe, MAX_HEADER_VALUE_LENGTH } from '../../src/http/header-value.js'
import { isListenModel } from '../../src/listen/index.js'
import { warmupSpeech } from '../../src/main.js'
import { bootstrapProject, createTestEarmark, type Fixture, type TestEarmark } from '../helpers/earmark.js'
import { wav } from '../helpers/listen-e2e.js'
import { silence } from '../helpers/speech.js'

/** Text that Node refuses in a header, or that would split one. */
const HOSTILE = ['🙂', '\u0000', 'a\r\nx-injected: 1', '\u00e9t\u00e9', '\ud800', 'x'.repeat(5000)]

interface Case {
  name: string
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  url: (fx: Fixture, hostile: string) => string
  payload?: (hostile: string) => unknown
  contentType?: string
}

/** Percent-encoded; a lone surrogate has no UTF-8, so it goes as the bytes of invalid UTF-8 instead. */
function q(text: string): string {
  try {
    return encodeURIComponent(text)
  } catch {
    return '%ED%A0%80%FF'
  }
}

/** Every place a client's text can reach on the HTTP API. */
const CASES: Case[] = [
  {
    name: 'a key scope',
    method: 'POST',
    url: (fx) => `/v1/projects/${fx.projectId}/keys`,
    payload: (h) => ({ comment: 'c', scopes: [h] }),
  },
  {
    name: 'a key comment and tag',
    method: 'POST',
    url: (fx) => `/v1/projects/${fx.projectId}/keys`,
    payload: (h) => ({ comment: h, scopes: ['member'], tags: [h], expiration_date: h }),
  },
  {
    name: 'a key time to live',
    method: 'POST',
    url: (fx) => `/v1/projects/${fx.projectId}/keys`,
    payload: (h) => ({ comment: 'c', scopes: ['member'], time_to_live_in_seconds: h }),
  },
  { name: 'a project id', method: 'GET', url: (_fx, h) => `/v1/projects/${q(h)}/keys` },
  { name: 'a key id', method: 'DELETE', url: (fx, h) => `/v1/projects/${fx.projectId}/keys/${q(h)}` },
  { name: 'a member id', method: 'DELETE', url: (fx, h) => `/v1/projects/${fx.projectId}/members/${q(h)}` },
  {
    name: 'a member scope',
    method: 'PUT',
    url: (fx) => `/v1/projects/${fx.projectId}/members/nobody/scopes`,
    payload: (h) => ({ scope: h }),
  },
  {
    name: 'a project name',
    method: 'PATCH',
    url: (fx) => `/v1/projects/${fx.projectId}`,
    payload: (h) => ({ name: h }),
  },
  { name: 'a grant ttl', method: 'POST', url: () => '/v1/auth/grant', payload: (h) => ({ ttl_seconds: h }) },
  {
    name: 'a usage query',
    method: 'GET',
    url: (fx, h) => `/v1/projects/${fx.projectId}/usage?start=${q(h)}&end=${q(h)}`,
  },
  { name: 'a request id', method: 'GET', url: (fx, h) => `/v1/projects/${fx.projectId}/requests/${q(h)}` },
  { name: 'an unknown path', method: 'GET', url: (_fx, h) => `/v1/${q(h)}` },
  {
    name: 'a listen model',
    method: 'POST',
    url: (_fx, h) => `/v1/listen?model=${q(h)}`,
    contentType: 'audio/wav',
  },
  {
    name: 'a listen language',
    method: 'POST',
    url: (_fx, h) => `/v1/listen?language=${q(h)}`,
    contentType: 'audio/wav',
  },
  {
    name: 'listen encoding, sample rate and tag',
    method: 'POST',
    url: (_fx, h) => `/v1/listen?encoding=${q(h)}&sample_rate=${q(h)}&tag=${q(h)}&callback=${q(h)}`,
    contentType: 'audio/wav',
  },
  {
    name: 'a listen url',
    method: 'POST',
    url: () => '/v1/listen',
    payload: (h) => ({ url: `http://${h}/a.wav` }),
  },
  {
    name: 'a speak model',
    method: 'POST',
    url: (_fx, h) => `/v1/speak?model=aura-${q(h)}`,
    payload: () => ({ text: 'hi' }),
  },
  {
    name: 'speak encoding, container, sample rate and tag',
    method: 'POST',
    url: (_fx, h) => `/v1/speak?encoding=${q(h)}&container=${q(h)}&sample_rate=${q(h)}&tag=${q(h)}`,
    payload: () => ({ text: 'hi' }),
  },
]

describe('hostile text in requests', () => {
  let engine: Engine
  let em: TestEarmark
  let fx: Fixture
  let audio: Buffer

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 1, warmup: warmupSpeech() })
    em = await createTestEarmark(':memory:', { engine })
    fx = await bootstrapProject(em.services)
    audio = wav(silence(0.2))
  })
  after(async () => {
    await em.close()
    await engine.close()
  })

  for (const c of CASES) {
    it(`answers ${c.name} holding emoji, NUL, CR/LF, Latin-1, a lone surrogate or 5000 characters in the Deepgram shape`, async () => {
      for (const hostile of HOSTILE) {
        const payload = c.payload?.(hostile)
        const res = await em.app.inject({
          method: c.method,
          url: c.url(fx, hostile),
          headers: {
            authorization: `Token ${fx.ownerKey}`,
            'content-type': c.contentType ?? 'application/json',
          },
          payload: payload === undefined ? (c.contentType ? audio : undefined) : JSON.stringify(payload),
        })
        const what = `${c.name} = ${JSON.stringify(hostile.slice(0, 20))}: ${res.statusCode} ${res.body.slice(0, 200)}`
        assert.ok(res.statusCode < 500, what)
        if (res.statusCode < 400) continue
        const body = res.json() as Record<string, unknown>
        assert.deepEqual(Object.keys(body).sort(), ['err_code', 'err_msg', 'request_id'], what)
        assert.equal(body.request_id, res.headers['dg-request-id'], what)
        const dgError = res.headers['dg-error']
        if (dgError !== undefined) {
          assert.match(String(dgError), /^[\x20-\x7e]*$/, what)
          assert.ok(String(dgError).length <= MAX_HEADER_VALUE_LENGTH, what)
        }
        assert.equal(res.headers['x-injected'], undefined, what)
        const usage = await em.services.store.getUsage(fx.projectId, String(body.request_id))
        assert.notEqual(usage?.status, 200, `${what}: metered as a success`)
      }
    })
  }

  it('refuses a listen model Earmark does not serve with 400 MODEL_NOT_FOUND, before metering', async () => {
    const res = await em.app.inject({
      method: 'POST',
      url: '/v1/listen?model=gpt-4o-transcribe',
      headers: { authorization: `Token ${fx.ownerKey}`, 'content-type': 'audio/wav' },
      payload: audio,
    })
    assert.equal(res.statusCode, 400)
    const body = res.json() as { err_code: string; request_id: string }
    assert.equal(body.err_code, 'MODEL_NOT_FOUND')
    assert.equal(await em.services.store.getUsage(fx.projectId, body.request_id), undefined)
  })

  it('serves every model family the SDKs name, their use-case suffixes and its own engine', async () => {
    for (const model of [
      'nova-3',
      'nova-2-meeting',
      'nova-general',
      'enhanced-phonecall',
      'base',
      'whisper-large',
    ]) {
      const res = await em.app.inject({
        method: 'POST',
        url: `/v1/listen?model=${model}`,
        headers: { authorization: `Token ${fx.ownerKey}`, 'content-type': 'audio/wav' },
        payload: audio,
      })
      assert.equal(res.statusCode, 200, `${model}: ${res.body}`)
    }
    assert.ok(isListenModel(POCKETSPHINX_MODEL.name))
    assert.ok(isListenModel('Nova-3-Medical'))
    assert.equal(isListenModel('nova-4'), false)
  })
})

describe('the JSON body parser', () => {
  let em: TestEarmark
  let fx: Fixture
  before(async () => {
    em = await createTestEarmark()
    fx = await bootstrapProject(em.services)
  })
  after(() => em.close())

  const post = (url: string, payload: string) =>
    em.app.inject({
      method: 'POST',
      url,
      headers: { authorization: `Token ${fx.ownerKey}`, 'content-type': 'application/json' },
      payload,
    })

  const poisoned: Array<[string, string]> = [
    ['a top-level __proto__', '{"comment":"c","scopes":["member"],"__proto__":{"admin":true}}'],
    ['a nested __proto__', '{"comment":"c","scopes":["member"],"tags":[{"__proto__":{"x":1}}]}'],
    ['constructor.prototype', '{"comment":"c","scopes":["member"],"constructor":{"prototype":{"x":1}}}'],
  ]
  for (const [name, payload] of poisoned) {
    it(`refuses ${name} with 400 INVALID_JSON and creates nothing`, async () => {
      const before = (await em.services.store.listKeys(fx.projectId)).length
      const res = await post(`/v1/projects/${fx.projectId}/keys`, payload)
      assert.equal(res.statusCode, 400, res.body)
      assert.equal((res.json() as { err_code: string }).err_code, 'INVALID_JSON')
      assert.equal((await em.services.store.listKeys(fx.projectId)).length, before)
      assert.equal(({} as Record<string, unknown>).admin, undefined)
    })
  }

  it('still takes an empty or blank body as {} (v3/v4 grant) and refuses malformed JSON', async () => {
    for (const payload of ['', '  \n']) {
      const res = await post('/v1/auth/grant', payload)
      assert.equal(res.statusCode, 200, res.body)
    }
    const bad = await post('/v1/auth/grant', '{"ttl_seconds":')
    assert.equal(bad.statusCode, 400)
    assert.equal((bad.json() as { err_code: string }).err_code, 'INVALID_JSON')
  })

  it('keeps a "constructor" key that is only data', async () => {
    const res = await post(
      `/v1/projects/${fx.projectId}/keys`,
      '{"comment":"constructor","scopes":["member"]}',
    )
    assert.equal(res.statusCode, 200, res.body)
  })
})

describe('headerSafe', () => {
  it('keeps printable ASCII and replaces everything else, one ? per character', () => {
    assert.equal(headerSafe('Invalid `model`: aura-🙂\r\n\u0000é'), 'Invalid `model`: aura-?????')
    assert.equal(headerSafe('\ud800x'), '?x')
  })
  it('caps the length', () => {
    assert.equal(headerSafe('a'.repeat(1000)).length, MAX_HEADER_VALUE_LENGTH)
    assert.equal(headerSafe('🙂'.repeat(1000), 10), '??????????')
  })
})

/** Sends `head` (and nothing else) on a fresh connection and resolves with all the server wrote back. */
function rawExchange(port: number, head: Buffer | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    socket.on('data', (c) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    socket.end(head)
  })
}

describe('requests the HTTP parser refuses', () => {
  let em: TestEarmark
  let port: number
  before(async () => {
    em = await createTestEarmark()
    await em.app.listen({ port: 0, host: '127.0.0.1' })
    port = (em.app.server.address() as AddressInfo).port
  })
  after(() => em.close())

  const cases: Array<[string, Buffer | string, number]> = [
    ['a control character in a header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nOrigin: a\u0001b\r\n\r\n', 400],
    ['a malformed request line', 'GET /healthz HTTP/9\r\n\r\n', 400],
    ['a header without a colon', 'GET /healthz HTTP/1.1\r\nHost x\r\n\r\n', 400],
    [
      'headers past the size limit',
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
    ],
  ]
  for (const [name, head, status] of cases) {
    it(`answers ${name} with ${status} in the Deepgram shape, not the framework's`, async () => {
      const answer = await rawExchange(port, head)
      assert.match(answer, new RegExp(`^HTTP/1.1 ${status} `))
      const [headers = '', body = ''] = answer.split('\r\n\r\n')
      const parsed = JSON.parse(body) as Record<string, unknown>
      assert.deepEqual(Object.keys(parsed).sort(), ['err_code', 'err_msg', 'request_id'])
      assert.match(headers, new RegExp(`dg-request-id: ${parsed.request_id}`))
    })
  }

  it('answers UTF-8 bytes in a credential with 401 in the Deepgram shape', async () => {
    const head = Buffer.concat([
      Buffer.from('GET /v1/projects HTTP/1.1\r\nHost: x\r\nAuthorization: Token '),
      Buffer.from('🙂é', 'utf8'),
      Buffer.from('\r\nConnection: close\r\n\r\n'),
    ])
    const answer = await rawExchange(port, head)
    assert.match(answer, /^HTTP\/1.1 401 /)
    const body = JSON.parse(answer.split('\r\n\r\n')[1] ?? '') as { err_code: string }
    assert.equal(body.err_code, 'INVALID_AUTH')
  })
})
