import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { DeepgramClient } from 'dg5'
import {
  eventually,
  type OwnerApi,
  ownerApi,
  postListen,
  prerecordedTranscript,
  spokenSentences,
  wav,
  wsUrlOf,
} from '../helpers/listen-e2e.js'
import { finals, openHeldStream, openSocket } from '../helpers/live-server.js'
import { finalTranscript, liveThroughSdkV5 } from '../helpers/sdk-v5-live.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Issue 11, item 2 (docs/gateway.md): Earmark A relays `/v1/listen` to Earmark B, a second real process, as it
// would to hosted Deepgram. Clients hold A's keys and tokens only; A holds one key of B's. Real PocketSphinx
// on B, real flite speech, the official SDK v5 as the client.

const SENTENCES = ['please open the door', 'the meeting starts at nine in the morning on monday']
const RELAYED = '?model=nova-3&punctuate=true'

interface RequestView {
  request_id: string
  api_key_id: string
  path: string
  response: {
    details?: { duration: number; method: string; models: string[] }
    code?: number
    message?: string
  }
}

/** Every usage record of the project, newest first. */
async function requests(api: OwnerApi): Promise<RequestView[]> {
  const body = await api.get<{ requests: RequestView[] }>(`/v1/projects/${api.projectId}/requests?limit=1000`)
  return body.requests
}

/** The body of a pre-recorded answer without what differs between two answers to the same bytes. */
function comparable(body: unknown): unknown {
  const copy = structuredClone(body) as { metadata: Record<string, unknown> }
  delete copy.metadata.request_id
  delete copy.metadata.created
  return copy
}

describe('Earmark as a gateway to another Deepgram-compatible service', { timeout: 300_000 }, () => {
  const bOwner = `emk_gateway_b_${randomBytes(8).toString('hex')}_owner`
  const aOwner = `emk_gateway_a_${randomBytes(8).toString('hex')}_owner`
  let b: ServerProcess
  let a: ServerProcess
  let bApi: OwnerApi
  let aApi: OwnerApi
  let upstreamKey: { key: string; id: string }
  let client: { key: string; id: string }
  let wavBytes: Buffer
  let pcm: Int16Array
  /** Client secrets of A's made in the tests: B must never see one. */
  const clientSecrets: string[] = []

  before(async () => {
    const debug = { EARMARK_LOG_LEVEL: 'debug', EARMARK_CAPACITY: '2' }
    ;[b, pcm] = await Promise.all([
      startServerProcess({ bootstrapKey: bOwner, env: debug }),
      spokenSentences(SENTENCES),
    ])
    wavBytes = wav(pcm)
    bApi = await ownerApi(b.url, bOwner)
    upstreamKey = await bApi.createKey('gateway A', ['member'])
    recordSecrets(upstreamKey.key)
    a = await startServerProcess({
      bootstrapKey: aOwner,
      env: {
        ...debug,
        EARMARK_ENGINE: 'upstream:nova-*|enhanced*,pocketsphinx',
        EARMARK_UPSTREAM_URL: b.url,
        EARMARK_UPSTREAM_KEY: upstreamKey.key,
      },
    })
    aApi = await ownerApi(a.url, aOwner)
    client = await aApi.createKey('app', ['member'])
    clientSecrets.push(aOwner, client.key)
  })
  after(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()])
    for (const s of [a, b]) if (s) removeDir(s.dataDir)
  })

  it("answers SDK v5's pre-recorded request with B's answer, under A's request id", async () => {
    const direct = await postListen(b.url, `Token ${bOwner}`, wavBytes, RELAYED)
    assert.equal(direct.status, 200)
    const sdk = new DeepgramClient({ apiKey: client.key, baseUrl: a.url })
    const body = await sdk.listen.v1.media.transcribeFile(wavBytes, { model: 'nova-3', punctuate: true })
    assert.ok('results' in body && body.metadata, 'a synchronous response')
    // Unchanged but for the request id (and B's own timestamp): the same bytes gave the same transcript.
    assert.deepEqual(comparable(body), comparable(direct.body))
    assert.match(prerecordedTranscript(body), /meeting starts at nine/i)
    const id = body.metadata.request_id
    const onA = (await requests(aApi)).find((r) => r.request_id === id)
    assert.ok(onA, 'the request id is the one A recorded')
    assert.equal(onA.api_key_id, client.id)
    assert.ok(!(await requests(bApi)).some((r) => r.request_id === id), 'B never issued that id')
  })

  it('relays an SDK v5 live stream both ways, with interim results and A’s request id on every message', async () => {
    const run = await liveThroughSdkV5(a.url, { apiKey: client.key }, pcm)
    assert.equal(run.closeCode, 1000)
    const interims = run.results.filter((r) => !r.is_final).length
    const ids = new Set([
      ...run.results.map((r) => r.metadata.request_id),
      ...run.metadata.map((m) => m.request_id),
    ])
    const rest = await postListen(b.url, `Token ${bOwner}`, wavBytes, '?model=nova-3')
    assert.equal(finalTranscript(run), prerecordedTranscript(rest.body), 'live through A equals REST on B')
    assert.ok(interims > 0, 'interim results came through')
    assert.equal(run.metadata.length, 1, 'the closing Metadata came through')
    assert.equal(ids.size, 1, `one request id: ${[...ids].join(', ')}`)
    const [id] = [...ids]
    const onA = await eventually(
      async () => (await requests(aApi)).find((r) => r.request_id === id && r.response.code !== undefined),
      10_000,
      "A's record of the stream",
    )
    assert.equal(onA.response.details?.method, 'streaming')
    assert.equal(onA.response.details?.duration, pcm.length / 16000, 'metered from the bytes relayed')
  })

  it('meters every relayed request and stream as B metered what it was sent', async () => {
    await eventually(
      async () => ((await requests(bApi)).every((r) => r.response.code !== undefined) ? true : undefined),
      10_000,
      "B's records to close",
    )
    const relayedOnA = (await requests(aApi)).filter((r) => r.response.details?.models.includes('nova-3'))
    const onB = (await requests(bApi)).filter((r) => r.api_key_id === upstreamKey.id)
    assert.ok(relayedOnA.length >= 2, `${relayedOnA.length} relayed`)
    const seconds = (list: RequestView[]) =>
      list.map((r) => Math.round((r.response.details?.duration ?? -1) * 1000) / 1000).sort((x, y) => x - y)
    assert.deepEqual(seconds(relayedOnA), seconds(onB))
  })

  it('takes A’s grant tokens, which B refuses', async () => {
    const grant = await aApi.grant(client.key, 60)
    clientSecrets.push(grant.token)
    const onA = await postListen(a.url, `Bearer ${grant.token}`, wavBytes, RELAYED)
    assert.equal(onA.status, 200)
    assert.match(prerecordedTranscript(onA.body), /meeting starts at nine/i)
    const onB = await postListen(b.url, `Bearer ${grant.token}`, wavBytes, RELAYED)
    assert.equal(onB.status, 401)
    assert.equal((onB.body as { err_code: string }).err_code, 'INVALID_AUTH')
  })

  it('closes a relayed stream, and its far end, when the client’s key is deleted on A', async () => {
    const doomed = await aApi.createKey('doomed', ['member'])
    clientSecrets.push(doomed.key)
    const before = (await requests(bApi)).length
    const held = await openHeldStream(
      `${wsUrlOf(a.url)}/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000`,
      { protocols: ['token', doomed.key] },
    )
    try {
      // B opened its side (its record exists) before the key goes.
      await eventually(
        async () => ((await requests(bApi)).length > before ? true : undefined),
        10_000,
        "B's record of the relayed stream",
      )
      const res = await fetch(`${a.url}/v1/projects/${aApi.projectId}/keys/${doomed.id}`, {
        method: 'DELETE',
        headers: { authorization: `Token ${aOwner}` },
      })
      assert.equal(res.status, 200)
      const closedAt = await held.closedAt
      assert.ok(closedAt > 0)
      await eventually(async () => (held.log.close ? true : undefined), 5000, 'the close frame')
      assert.equal(held.log.close?.code, 1008)
      assert.equal(held.log.close?.reason, 'AUTH-0001')
      const bRecord = await eventually(
        async () => {
          const newest = (await requests(bApi)).find((r) => r.api_key_id === upstreamKey.id)
          return newest?.response.code !== undefined ? newest : undefined
        },
        10_000,
        "B's stream to end",
      )
      assert.equal(bRecord.response.details?.method, 'streaming')
    } finally {
      held.stop()
    }
  })

  it('passes the far end’s refusal on in Deepgram’s shape, under A’s request id', async () => {
    const res = await postListen(a.url, `Token ${client.key}`, randomBytes(4096), RELAYED)
    assert.equal(res.status, 400)
    const body = res.body as { err_code: string; request_id: string }
    assert.equal(body.err_code, 'BAD_AUDIO')
    assert.equal(body.request_id, res.requestId, "A's request id")
    // Live: B closes undecodable audio with 1008 DATA-0000, and so does A.
    const { ws, closed } = await openSocket(`${wsUrlOf(a.url)}/v1/listen?model=nova-3`, {
      protocols: ['token', client.key],
    })
    ws.send(randomBytes(64 * 1024))
    const log = await closed
    assert.deepEqual(log.close, { code: 1008, reason: 'DATA-0000' })
  })

  it('serves a model no relay claims with its own engine', async () => {
    const before = (await requests(bApi)).length
    const res = await postListen(a.url, `Token ${client.key}`, wavBytes, '?model=pocketsphinx')
    assert.equal(res.status, 200)
    assert.match(prerecordedTranscript(res.body), /meeting starts at nine/i)
    assert.equal((await requests(bApi)).length, before, 'B saw nothing')
    // A model Earmark does not know is the far end's to judge when a relay claims it.
    const unknown = await postListen(a.url, `Token ${client.key}`, wavBytes, '?model=nova-9-future')
    assert.equal(unknown.status, 400)
    assert.equal((unknown.body as { err_code: string }).err_code, 'MODEL_NOT_FOUND')
  })

  it("relays a live container stream and meters it by how far the far end's results reach", async () => {
    const { ws, log, closed } = await openSocket(`${wsUrlOf(a.url)}/v1/listen?model=nova-3`, {
      protocols: ['token', client.key],
    })
    // A WAV sent as a container (no `encoding`): its bytes do not say how long it plays to A.
    for (let i = 0; i < wavBytes.length; i += 8000) ws.send(wavBytes.subarray(i, i + 8000))
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    assert.equal(log.close?.code, 1000)
    assert.match(finals(log), /meeting starts at nine/i)
    const id = String(log.headers?.['dg-request-id'] ?? '')
    const record = await eventually(
      async () => (await requests(aApi)).find((r) => r.request_id === id && r.response.code !== undefined),
      10_000,
      "A's record",
    )
    const metered = record.response.details?.duration ?? 0
    assert.ok(Math.abs(metered - pcm.length / 16000) < 0.05, `metered ${metered} s of ${pcm.length / 16000}`)
  })

  it('shows B none of A’s client credentials, and A’s logs and answers never hold the upstream key', async () => {
    const bText = b.output.join('\n')
    for (const secret of clientSecrets) assert.ok(!bText.includes(secret), 'a client secret reached B')
    const keysOnB = new Set((await requests(bApi)).map((r) => r.api_key_id))
    const bOwnerId = (await requests(bApi)).find((r) => r.api_key_id !== upstreamKey.id)?.api_key_id
    for (const id of keysOnB) assert.ok(id === upstreamKey.id || id === bOwnerId, `B saw key ${id}`)
    assert.ok(!a.output.join('\n').includes(upstreamKey.key), 'the upstream key reached A’s log')
    assert.ok(
      a.output.some((l) => l.includes('upstream_request_id')),
      'A logs which upstream request served each of its own',
    )
  })

  describe('with an upstream key the far end refuses', () => {
    let broken: ServerProcess
    const wrongKey = `wrong_${randomBytes(20).toString('hex')}`
    before(async () => {
      recordSecrets(wrongKey)
      broken = await startServerProcess({
        bootstrapKey: aOwner,
        env: {
          EARMARK_LOG_LEVEL: 'debug',
          EARMARK_ENGINE: 'upstream',
          EARMARK_UPSTREAM_URL: b.url,
          EARMARK_UPSTREAM_KEY: wrongKey,
        },
      })
    })
    after(async () => {
      await broken?.stop()
      if (broken) removeDir(broken.dataDir)
    })

    it('answers 502 UPSTREAM_ERROR, over REST and at the upgrade, naming no key', async () => {
      const res = await postListen(broken.url, `Token ${aOwner}`, wavBytes, RELAYED)
      assert.equal(res.status, 502)
      const body = res.body as { err_code: string; err_msg: string }
      assert.equal(body.err_code, 'UPSTREAM_ERROR')
      assert.ok(!JSON.stringify(body).includes(wrongKey))
      const { log } = await openSocket(`${wsUrlOf(broken.url)}/v1/listen?model=nova-3`, {
        protocols: ['token', aOwner],
      })
      assert.equal(log.status, 502)
      assert.equal(log.body?.err_code, 'UPSTREAM_ERROR')
      assert.ok(!broken.output.join('\n').includes(wrongKey), 'the upstream key reached the log')
    })
  })
})
