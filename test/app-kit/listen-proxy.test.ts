import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, beforeEach, describe, it } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { earmarkAppKit } from '../../src/app-kit/index.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'
import {
  type AppServer,
  call,
  END_USER_HEADER,
  finalText,
  finishedRecords,
  headerAuthorize,
  type Recording,
  record,
  recordTags,
  sendPcm,
  startAppServer,
  usageRecords,
  waitFor,
} from './app-kit-fixtures.js'

const RAW = 'encoding=linear16&sample_rate=16000'
const FIRST = 'the quick brown fox jumps over the lazy dog'
const SECOND = 'open the door and turn on the lights'
const as = (endUser: string) => ({ [END_USER_HEADER]: endUser })

/** Every byte the browser got: frames, the 101's (or refusal's) headers and body. */
function everythingSeen(rec: Recording): string {
  return [
    JSON.stringify(rec.headers),
    rec.body,
    ...rec.frames.map((f) => f.data.toString(f.binary ? 'latin1' : 'utf8')),
  ].join('\n')
}

describe('app kit WebSocket proxy (pattern 3) in front of a real Earmark', () => {
  let earmark: LiveServer
  let app: AppServer
  let first: Int16Array
  let second: Int16Array
  /** Every grant Earmark minted (the proxy's per-stream grants among them). */
  const minted: string[] = []

  before(async () => {
    earmark = await startLiveServer({ EARMARK_CAPACITY: '3' })
    const grants = earmark.earmark.services.grants
    const mint = grants.mint.bind(grants)
    grants.mint = (request) => {
      const grant = mint(request)
      minted.push(grant.token)
      return grant
    }
    app = await startAppServer({ upstream: { url: earmark.url, apiKey: earmark.ownerKey } })
    first = concatPcm(silence(0.3), await speech(FIRST), silence(0.3))
    second = concatPcm(await speech(SECOND), silence(0.8))
  })
  /** Streams just closed free their engine slot a moment later; the next test needs them. */
  const idle = () => waitFor(() => earmark.earmark.engine.inUse() === 0, 5000)
  beforeEach(async () => {
    if (earmark) assert.ok(await idle(), 'engine slots free')
  })
  after(async () => {
    await app?.close()
    await earmark?.close() // the last test already closed it; closing twice is harmless
  })

  it('relays a whole transcription with its query options, Finalize and CloseStream, and ends with 1000', async (t) => {
    const grantsBefore = minted.length
    const started = Date.now()
    const rec = await record(
      `${app.wsUrl}/earmark/listen?${RAW}&interim_results=true&vad_events=true&endpointing=false`,
      { headers: as('erin') },
    )
    const upgradeMs = Date.now() - started
    assert.equal(rec.status, 101)
    assert.equal(app.kit.stats.openProxies, 1)

    await sendPcm(rec.ws, first)
    rec.ws.send(JSON.stringify({ type: 'KeepAlive' }))
    rec.ws.send(JSON.stringify({ type: 'Finalize' }))
    assert.ok(
      await waitFor(() => rec.messages().some((m) => m.type === 'Results' && m.from_finalize === true), 8000),
      'a from_finalize final after Finalize',
    )
    await sendPcm(rec.ws, second)
    rec.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const closed = await rec.closed

    assert.equal(closed.code, 1000)
    const messages = rec.messages()
    const types = new Set(messages.map((m) => m.type))
    assert.ok(types.has('SpeechStarted'), 'vad_events=true reached Earmark')
    assert.ok(
      messages.some((m) => m.type === 'Results' && m.is_final === false),
      'interim_results=true reached Earmark',
    )
    assert.equal(messages.at(-1)?.type, 'Metadata', 'CloseStream reached Earmark: Metadata, then 1000')
    const transcript = finalText(rec)
    const wer = wordErrorRate(`${FIRST} ${SECOND}`, transcript)
    assert.ok(wer <= 0.35, `WER ${wer} for "${transcript}"`)

    // The browser never saw the server key, nor the grant the proxy minted for this stream.
    assert.equal(minted.length, grantsBefore + 1, 'one grant per proxied stream')
    const seen = everythingSeen(rec)
    assert.ok(!seen.includes(earmark.ownerKey), 'server key leaked')
    for (const token of minted) {
      assert.ok(!seen.includes(token), 'grant leaked')
      assert.ok(!seen.includes(token.split('.')[2] ?? token), 'grant signature leaked')
    }
    assert.ok(
      rec.frames.every((f) => !f.binary),
      'Earmark sends text frames only',
    )

    // Attributed to the end user through the proxy's grant; the 101 names the usage record.
    const records = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId, { end_user: 'erin' })
    assert.equal(records.length, 1)
    assert.equal(records[0]?.end_user, 'erin')
    assert.equal(records[0]?.request_id, rec.headers['dg-request-id'])
    assert.equal(records[0]?.path, '/v1/listen')
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 2000), 'proxy torn down')
    assert.equal(app.kit.stats.bufferedBytes, 0)
    t.diagnostic(`first proxied upgrade (authorize, grant, upstream handshake): ${upgradeMs} ms`)
  })

  it('forwards the browser leaving mid-stream to Earmark and frees the proxy', async () => {
    const rec = await record(`${app.wsUrl}/earmark/listen?${RAW}`, { headers: as('frank') })
    assert.equal(rec.status, 101)
    await sendPcm(rec.ws, first.subarray(0, 16000))
    rec.ws.terminate() // a tab closed: no close frame
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 3000), 'proxy torn down')
    // Earmark completes the usage record once its side of the stream is closed.
    const [done] = await finishedRecords(earmark.url, earmark.ownerKey, earmark.projectId, {
      end_user: 'frank',
    })
    assert.equal(done?.code, 1001, 'Earmark saw the client go away')
  })

  it('passes an upstream refusal at the handshake through: 429 with a Deepgram-shaped body', async () => {
    const direct: Recording[] = []
    for (let i = 0; i < 3; i++) {
      direct.push(
        await record(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', earmark.ownerKey] }),
      )
    }
    assert.ok(direct.every((r) => r.status === 101))
    try {
      const refused = await record(`${app.wsUrl}/earmark/listen?${RAW}`, { headers: as('gina') })
      assert.equal(refused.status, 429)
      const body = JSON.parse(refused.body) as Record<string, unknown>
      assert.equal(body.err_code, 'TOO_MANY_REQUESTS')
      assert.equal(typeof body.err_msg, 'string')
      assert.equal(body.request_id, refused.headers['dg-request-id'])
      assert.ok(refused.headers['dg-error'])
      assert.ok(!everythingSeen(refused).includes(earmark.ownerKey))
      assert.equal(app.kit.stats.openProxies, 0)
    } finally {
      for (const r of direct) r.ws.close(1000)
      await Promise.all(direct.map((r) => r.closed))
    }
    assert.ok(await idle())
    // A bad option is Earmark's 400, passed through as well.
    const bad = await record(`${app.wsUrl}/earmark/listen?encoding=nonsense`, { headers: as('gina') })
    assert.equal(bad.status, 400)
    assert.equal(JSON.parse(bad.body).err_code, 'INVALID_FIELD')
  })

  it('falls back to the server key plus an end_user tag when the upstream will not grant', async () => {
    // A server key below the member role cannot mint grants (403): the proxy connects with the key itself.
    const created = await call(`${earmark.url}/v1/projects/${earmark.projectId}/keys`, {
      method: 'POST',
      headers: { authorization: `Token ${earmark.ownerKey}` },
      body: { comment: 'usage-only server key', scopes: ['usage:write'] },
    })
    const serverKey = String(created.body.key)
    const fallback = await startAppServer({
      upstream: { url: earmark.url, apiKey: serverKey, projectId: earmark.projectId },
    })
    try {
      const rec = await record(`${fallback.wsUrl}/earmark/listen?${RAW}&tag=end_user:someone-else&tag=mine`, {
        headers: as('hank'),
      })
      assert.equal(rec.status, 101)
      await sendPcm(rec.ws, first)
      rec.ws.send(JSON.stringify({ type: 'CloseStream' }))
      assert.equal((await rec.closed).code, 1000)
      assert.ok(!everythingSeen(rec).includes(serverKey))
      const records = await finishedRecords(earmark.url, earmark.ownerKey, earmark.projectId, {
        accessor: String(created.body.api_key_id),
      })
      assert.equal(records.length, 1)
      // The browser's own end_user tag is dropped; the kit's is added.
      assert.deepEqual(recordTags(records[0]).sort(), ['end_user:hank', 'mine'])
    } finally {
      await fallback.close()
    }
  })

  it('serves the same routes through the Fastify plugin', async () => {
    const fastify: FastifyInstance = Fastify()
    await fastify.register(earmarkAppKit, {
      upstream: { url: earmark.url, apiKey: earmark.ownerKey },
      authorize: headerAuthorize,
    })
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const port = (fastify.server.address() as AddressInfo).port
    try {
      const refused = await call(`http://127.0.0.1:${port}/earmark/token`, { method: 'POST' })
      assert.equal(refused.status, 401)
      assert.equal(refused.body.err_code, 'INVALID_AUTH')
      const empty = await fetch(`http://127.0.0.1:${port}/earmark/token`, {
        method: 'POST',
        headers: { ...as('ivy'), 'content-type': 'application/json' },
      })
      assert.equal(empty.status, 200)
      const token = (await empty.json()) as Record<string, unknown>
      assert.equal(token.kind, 'grant')
      assert.equal(token.end_user, 'ivy')
      const key = await call(`http://127.0.0.1:${port}/earmark/token`, {
        method: 'POST',
        headers: as('ivy'),
        body: { kind: 'key' },
      })
      assert.equal(key.body.kind, 'key')
      const minted = await call(`http://127.0.0.1:${port}/earmark/key`, {
        method: 'POST',
        headers: as('ivy'),
      })
      const stolen = await call(`http://127.0.0.1:${port}/earmark/key/${minted.body.api_key_id}`, {
        method: 'DELETE',
        headers: as('jack'),
      })
      assert.equal(stolen.status, 404)
      assert.equal(stolen.body.err_code, 'KEY_NOT_FOUND')

      const rec = await record(`ws://127.0.0.1:${port}/earmark/listen?${RAW}`, { headers: as('ivy') })
      assert.equal(rec.status, 101)
      await sendPcm(rec.ws, first)
      rec.ws.send(JSON.stringify({ type: 'CloseStream' }))
      assert.equal((await rec.closed).code, 1000)
      assert.ok(wordErrorRate(FIRST, finalText(rec)) <= 0.35, finalText(rec))
      const records = await usageRecords(earmark.url, earmark.ownerKey, earmark.projectId, {
        end_user: 'ivy',
      })
      assert.equal(records.length, 1)
      const other = await record(`ws://127.0.0.1:${port}/elsewhere`, { headers: as('ivy') })
      assert.notEqual(other.status, 101)
    } finally {
      await fastify.close()
    }
  })

  it('measures what the proxy adds to opening a stream', async (t) => {
    const time = async (url: string, options: Parameters<typeof record>[1]) => {
      const t0 = process.hrtime.bigint()
      const rec = await record(url, options)
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      assert.equal(rec.status, 101)
      rec.ws.close(1000)
      await rec.closed
      assert.ok(await idle())
      return ms
    }
    const direct: number[] = []
    const proxied: number[] = []
    for (let i = 0; i < 7; i++) {
      direct.push(await time(`${earmark.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', earmark.ownerKey] }))
      proxied.push(await time(`${app.wsUrl}/earmark/listen?${RAW}`, { headers: as('lena') }))
    }
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? 0
    t.diagnostic(
      `upgrade, median of 7: direct to Earmark ${median(direct).toFixed(1)} ms, through the proxy ` +
        `${median(proxied).toFixed(1)} ms (adds the authorize hook, one grant request and a second handshake)`,
    )
    assert.ok(median(proxied) < median(direct) + 500)
  })

  it('closes the browser with 1011 and a reason, promptly, when Earmark dies mid-stream', async (t) => {
    const rec = await record(`${app.wsUrl}/earmark/listen?${RAW}&interim_results=true`, {
      headers: as('kim'),
    })
    assert.equal(rec.status, 101)
    await sendPcm(rec.ws, first)
    assert.ok(await waitFor(() => rec.frames.length > 0, 5000), 'the stream was flowing')
    const killedAt = Date.now()
    await earmark.close()
    const closed = await rec.closed
    assert.equal(closed.code, 1011)
    assert.ok(closed.reason.length > 0, 'a clear reason')
    const ms = closed.at - killedAt
    assert.ok(ms < 2000, `closed ${ms} ms after the upstream died`)
    assert.ok(await waitFor(() => app.kit.stats.openProxies === 0, 2000))
    t.diagnostic(`upstream death → browser close ${closed.code} "${closed.reason}" in ${ms} ms`)
  })
})
