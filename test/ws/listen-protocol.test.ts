import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { finals, type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

const RAW = 'encoding=linear16&sample_rate=16000'
const SENTENCE = 'please open the door'

describe('live /v1/listen protocol', () => {
  let srv: LiveServer
  let audio: Int16Array
  const keys: Record<string, string> = {}
  let grant = ''
  let expiredGrant = ''

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '2', EARMARK_WS_IDLE_TIMEOUT_MS: '1500' })
    audio = concatPcm(silence(0.3), await speech(SENTENCE), silence(1.2))
    const { services } = srv.earmark
    const create = async (scopes: string[], extra: Record<string, unknown> = {}) => {
      const res = await fetch(`${srv.url}/v1/projects/${srv.projectId}/keys`, {
        method: 'POST',
        headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ comment: 'ws', scopes, ...extra }),
      })
      return (await res.json()) as { key: string; api_key_id: string }
    }
    keys.usage = (await create(['usage:write'])).key
    keys.readOnly = (await create(['keys:read'])).key
    const deleted = await create(['usage:write'])
    await services.store.deleteKey(srv.projectId, deleted.api_key_id, Date.now())
    keys.deleted = deleted.key
    const g = await fetch(`${srv.url}/v1/auth/grant`, {
      method: 'POST',
      headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl_seconds: 600 }),
    })
    grant = ((await g.json()) as { access_token: string }).access_token
    const short = await fetch(`${srv.url}/v1/auth/grant`, {
      method: 'POST',
      headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl_seconds: 1 }),
    })
    expiredGrant = ((await short.json()) as { access_token: string }).access_token
    await new Promise((r) => setTimeout(r, 1100))
  })
  after(() => srv.close())

  /** Upgrade credentials × outcome: the socket's own permission matrix. */
  const AUTH: [string, () => { protocols?: string[]; headers?: Record<string, string> }, number | string][] =
    [
      ['no credentials', () => ({}), 401],
      ['a malformed header', () => ({ headers: { authorization: 'Basic dXNlcjpwYXNz' } }), 401],
      ['an unknown key', () => ({ protocols: ['token', generateKeySecret()] }), 401],
      ['a deleted key', () => ({ protocols: ['token', keys.deleted ?? ''] }), 401],
      ['an expired grant token', () => ({ protocols: ['bearer', expiredGrant] }), 401],
      ['a key without usage:write', () => ({ protocols: ['token', keys.readOnly ?? ''] }), 403],
      [
        'the owner key in the header',
        () => ({ headers: { authorization: `Token ${srv.ownerKey}` } }),
        'open',
      ],
      ['a usage:write key as subprotocol', () => ({ protocols: ['token', keys.usage ?? ''] }), 'token'],
      ['a grant token as subprotocol', () => ({ protocols: ['bearer', grant] }), 'bearer'],
      ['a grant token in the header', () => ({ headers: { authorization: `Bearer ${grant}` } }), 'open'],
      [
        'the browser SDK form with a session id',
        () => ({ protocols: ['token', keys.usage ?? '', 'x-deepgram-session-id', 'abc'] }),
        'token',
      ],
    ]
  for (const [what, creds, expected] of AUTH) {
    it(`answers an upgrade with ${what}: ${expected}`, async () => {
      const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, creds())
      if (typeof expected === 'number') {
        assert.equal(log.status, expected)
        assert.equal(log.body?.err_code, expected === 401 ? 'INVALID_AUTH' : 'FORBIDDEN')
        assert.equal(log.body?.request_id, log.headers?.['dg-request-id'])
        assert.ok(log.headers?.['dg-error'])
        return
      }
      assert.equal(log.status, undefined)
      assert.ok(log.headers?.['dg-request-id'], 'the 101 carries dg-request-id')
      if (expected !== 'open') assert.equal(log.protocol, expected, 'echoes the scheme, never the secret')
      ws.send(JSON.stringify({ type: 'CloseStream' }))
      const end = await closed
      assert.equal(end.close?.code, 1000)
    })
  }

  it('refuses bad options at the upgrade with a 400 naming the field', async () => {
    for (const [query, field] of [
      ['encoding=linear16', 'sample_rate'],
      ['encoding=speex&sample_rate=16000', 'encoding'],
      [`${RAW}&interim_results=maybe`, 'interim_results'],
      [`${RAW}&language=fr`, 'language'],
    ] as const) {
      const { log } = await openSocket(`${srv.wsUrl}/v1/listen?${query}`, {
        protocols: ['token', srv.ownerKey],
      })
      assert.equal(log.status, 400, query)
      assert.match(log.body?.err_msg ?? '', new RegExp(field), query)
    }
    const { log } = await openSocket(`${srv.wsUrl}/v1/elsewhere`, { protocols: ['token', srv.ownerKey] })
    assert.equal(log.status, 404)
  })

  it('streams Results with interim and final transcripts, SpeechStarted, UtteranceEnd, then Metadata and 1000', async () => {
    const { ws, log, closed } = await openSocket(
      `${srv.wsUrl}/v1/listen?${RAW}&interim_results=true&vad_events=true&utterance_end_ms=1000`,
      { protocols: ['token', srv.ownerKey] },
    )
    await sendPcm(ws, audio, 100)
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    const types = log.messages.map((m) => m.type)
    assert.equal(log.close?.code, 1000)
    assert.equal(types.at(-1), 'Metadata')
    assert.ok(types.indexOf('SpeechStarted') < types.indexOf('Results'), 'SpeechStarted comes first')
    assert.ok(types.includes('UtteranceEnd'))
    const results = log.messages.filter((m) => m.type === 'Results')
    assert.ok(
      results.some((m) => m.is_final === false),
      'interim results',
    )
    const final = results.find((m) => m.is_final === true && m.speech_final === true)
    assert.ok(final, 'a speech_final result')
    assert.ok(wordErrorRate(SENTENCE, finals(log)) <= 0.5, finals(log))
    const requestId = log.headers?.['dg-request-id']
    for (const m of results) {
      assert.deepEqual(m.channel_index, [0, 1])
      assert.equal((m.metadata as { request_id: string }).request_id, requestId)
      assert.equal(typeof m.start, 'number')
      assert.equal(typeof m.duration, 'number')
    }
    const words = (final.channel as { alternatives: { words: { start: number; end: number }[] }[] })
      .alternatives[0]?.words
    assert.ok(words && words.length > 0 && words.every((w) => w.end >= w.start))
    const meta = log.messages.at(-1) as Record<string, unknown>
    assert.equal(meta.request_id, requestId)
    assert.equal(meta.transaction_key, 'deprecated')
    assert.ok(Math.abs((meta.duration as number) - audio.length / 16000) < 0.05, `duration ${meta.duration}`)
    assert.match(meta.sha256 as string, /^[0-9a-f]{64}$/)
  })

  it('sends no interim results, SpeechStarted or UtteranceEnd unless asked', async () => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', srv.ownerKey],
    })
    await sendPcm(ws, audio)
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    const types = new Set(log.messages.map((m) => m.type))
    assert.deepEqual([...types].sort(), ['Metadata', 'Results'])
    assert.ok(log.messages.every((m) => m.type !== 'Results' || m.is_final === true))
  })

  it('answers Finalize with a from_finalize final, ignores unknown messages, and keeps the stream open', async () => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}&endpointing=false`, {
      protocols: ['token', srv.ownerKey],
    })
    ws.send(JSON.stringify({ type: 'Configure', processors: { numerals: true } }))
    ws.send('not json at all')
    await sendPcm(ws, audio.subarray(0, 16000 * 1.5))
    ws.send(JSON.stringify({ type: 'Finalize' }))
    const deadline = Date.now() + 5000
    while (!log.messages.some((m) => m.from_finalize === true) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.ok(
      log.messages.some((m) => m.type === 'Results' && m.from_finalize === true && m.is_final === true),
    )
    assert.equal(log.close, undefined, 'still open after Finalize')
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    assert.equal((await closed).close?.code, 1000)
  })

  it('closes with 1011 NET-0001 when no audio arrives, even with KeepAlive', async () => {
    const { ws, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', srv.ownerKey],
    })
    const keepAlive = setInterval(() => ws.send(JSON.stringify({ type: 'KeepAlive' })), 300)
    const end = await closed
    clearInterval(keepAlive)
    assert.equal(end.close?.code, 1011)
    assert.equal(end.close?.reason, 'NET-0001')
  })

  it('keeps a stream alive on KeepAlive once audio has flowed', async () => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', srv.ownerKey],
    })
    await sendPcm(ws, silence(0.2))
    const keepAlive = setInterval(() => ws.send(JSON.stringify({ type: 'KeepAlive' })), 400)
    await new Promise((r) => setTimeout(r, 2500)) // past the 1.5 s idle timeout
    clearInterval(keepAlive)
    assert.equal(log.close, undefined)
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    assert.equal((await closed).close?.code, 1000)
  })

  it('closes with 1008 DATA-0000 when the audio cannot be decoded', async () => {
    const { ws, closed } = await openSocket(`${srv.wsUrl}/v1/listen`, { protocols: ['token', srv.ownerKey] })
    ws.send(
      Buffer.from('this is certainly not audio, just some text bytes that no demuxer knows'.repeat(200)),
    )
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    const end = await closed
    assert.equal(end.close?.code, 1008)
    assert.equal(end.close?.reason, 'DATA-0000')
  })

  it('refuses a stream with 429 when capacity is full, and admits one when a slot frees', async () => {
    const a = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    const b = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    const c = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    assert.equal(c.log.status, 429)
    assert.equal(c.log.body?.err_code, 'TOO_MANY_REQUESTS')
    a.ws.send(JSON.stringify({ type: 'CloseStream' }))
    await a.closed
    const d = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    assert.equal(d.log.status, undefined)
    for (const s of [b, d]) s.ws.send(JSON.stringify({ type: 'CloseStream' }))
    await Promise.all([b.closed, d.closed])
  })

  it('does not count time spent not reading a client (back-pressure) against its idle timeout', async () => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', srv.ownerKey],
    })
    // Far more than the 20 s backlog at once, then nothing for longer than the 1.5 s idle timeout: the engine
    // is still behind, Earmark is not reading, and the client is waiting for it, not idle.
    const long = concatPcm(...Array.from({ length: 16 }, () => audio))
    await sendPcm(ws, long, 1000)
    await new Promise((r) => setTimeout(r, 2500))
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    assert.equal(log.close?.code, 1000, `${log.close?.code} ${log.close?.reason}`)
    const meta = log.messages.at(-1) as { type: string; duration: number }
    assert.equal(meta.type, 'Metadata')
    assert.ok(Math.abs(meta.duration - long.length / 16000) < 0.1, `duration ${meta.duration}`)
  })

  it('treats an empty binary frame as the end of the stream', async () => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', srv.ownerKey],
    })
    await sendPcm(ws, audio)
    ws.send(Buffer.alloc(0))
    await closed
    assert.equal(log.close?.code, 1000)
    assert.equal(log.messages.at(-1)?.type, 'Metadata')
  })
})
