import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  eventually,
  exactly,
  type OwnerApi,
  ownerApi,
  pcmBytes,
  percent,
  postListen,
  streamFrames,
  wav,
  wsUrlOf,
} from '../helpers/listen-e2e.js'
import { finals, openSocket } from '../helpers/live-server.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { chunks, concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

// Credentials and metering of /v1/listen against a real `earmark serve` process and real PocketSphinx: a grant
// token is checked at the upgrade only, and every request is metered to its key (a grant's parent key) with the
// audio it actually carried (docs/deepgram-compat.md §1.1, §4, §7; docs/speech.md "Metering").

const OWNER_KEY = `emk_test_${randomBytes(16).toString('hex')}`
const RAW = 'encoding=linear16&sample_rate=16000'
/** The usage records must match the audio sent within this much per request (the brief's rounding budget). */
const SECONDS_TOLERANCE = 0.02

interface RequestView {
  request_id: string
  api_key_id: string
  accessor: string
  path: string
  code: number | null
  response: { details?: { duration: number; method: string }; code?: number }
}

interface UsageView {
  results: { audio_seconds: number; requests: number }[]
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('grant tokens and usage metering on /v1/listen of a real Earmark process', {
  timeout: 180_000,
}, () => {
  let server: ServerProcess | undefined
  let owner: OwnerApi

  before(async () => {
    // One decoder: the streams and uploads here run one after another.
    server = await startServerProcess({
      bootstrapKey: OWNER_KEY,
      env: { EARMARK_CAPACITY: '1' },
      timeoutMs: 60_000,
    })
    owner = await ownerApi(server.url, OWNER_KEY)
  })

  after(async () => {
    if (!server) return
    await server.stop()
    removeDir(server.dataDir)
  })

  const urls = () => {
    if (!server) throw new Error('the server did not start')
    return { url: server.url, wsUrl: wsUrlOf(server.url) }
  }

  it('a stream opened with a 2-second grant token keeps receiving Results 5 s later, while a new upgrade with that token gets 401 INVALID_AUTH', async (t) => {
    const { wsUrl } = urls()
    const first = 'the price of bread went up again this year'
    const second = 'please remember to lock the door when you leave'
    const firstPart = concatPcm(silence(0.3), await speech(first), silence(1))
    const secondPart = concatPcm(silence(0.3), await speech(second), silence(1))

    const grantedAt = Date.now()
    const { token, expiresIn } = await owner.grant(OWNER_KEY, 2)
    // expires_in counts from a second boundary the request may straddle.
    assert.ok(expiresIn === 2 || expiresIn === 1, `expires_in ${expiresIn}`)
    const { ws, log, closed } = await openSocket(`${wsUrl}/v1/listen?${RAW}`, {
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(
      log.status,
      undefined,
      `the upgrade with a live token is accepted: ${JSON.stringify(log.body)}`,
    )
    const arrivals: { at: number; message: Record<string, unknown> }[] = []
    ws.on('message', (data) =>
      arrivals.push({ at: Date.now() - grantedAt, message: JSON.parse(String(data)) }),
    )

    // Speech paced in real time, then a pause held open with KeepAlive, then more speech.
    for (const chunk of chunks(firstPart, 100)) {
      ws.send(pcmBytes(chunk))
      await sleep(100)
    }
    const keepAlive = setInterval(() => ws.send(JSON.stringify({ type: 'KeepAlive' })), 500)
    // The token is dead from its exp second on, at most 2 s after it was granted.
    await sleep(Math.max(0, grantedAt + 2100 - Date.now()))
    const again = await openSocket(`${wsUrl}/v1/listen?${RAW}`, {
      headers: { authorization: `Bearer ${token}` },
    })
    assert.equal(again.log.status, 401, 'a new upgrade with the expired token is refused')
    assert.equal(again.log.body?.err_code, 'INVALID_AUTH')
    assert.equal(log.close, undefined, 'the open stream is still open')
    await sleep(Math.max(1500, grantedAt + 5000 - Date.now()))
    clearInterval(keepAlive)
    assert.ok(Date.now() - grantedAt >= 5000)
    for (const chunk of chunks(secondPart, 100)) {
      ws.send(pcmBytes(chunk))
      await sleep(100)
    }
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    const end = await closed

    assert.equal(end.close?.code, 1000)
    assert.equal(end.messages.at(-1)?.type, 'Metadata')
    // Words are told apart by where they are in the audio, not by when they arrived: the second sentence's
    // words start after the first part, and all of its audio was sent more than 5 s after the grant.
    const split = firstPart.length / 16000
    const words = arrivals.flatMap(({ at, message }) => {
      if (message.type !== 'Results' || message.is_final !== true) return []
      const alternative = (
        message.channel as { alternatives: { words: { word: string; start: number }[] }[] }
      ).alternatives[0]
      return (alternative?.words ?? []).map((w) => ({ ...w, at }))
    })
    const early = words.filter((w) => w.start < split)
    const late = words.filter((w) => w.start >= split)
    const text = (list: typeof words) => list.map((w) => w.word).join(' ')
    t.diagnostic(`before the pause: ${text(early)}`)
    t.diagnostic(`after the pause, Results from ${late[0]?.at} ms after the grant: ${text(late)}`)
    t.diagnostic(`whole stream: ${finals(log)}`)
    // 35 %: flite sentences decode at about 15 % WER (docs/speech.md); these two alone at 0-10 % one-shot.
    assert.ok(wordErrorRate(first, text(early)) <= 0.35, `the first sentence: ${text(early)}`)
    assert.ok(late.length > 0, 'Results for the speech sent after the token expired')
    assert.ok(
      late.every((w) => w.at >= 5000),
      'they arrived at least 5 s after the grant',
    )
    const lateWer = wordErrorRate(second, text(late))
    assert.ok(lateWer <= 0.35, `the second sentence (WER ${percent(lateWer)}): ${text(late)}`)
  })

  it('usage records add up per key to the audio each key sent live and pre-recorded, grant tokens metered to their parent key', async () => {
    const { url, wsUrl } = urls()
    const [one, two] = [await owner.createKey('usage one'), await owner.createKey('usage two')]
    const grants = {
      [one.id]: (await owner.grant(one.key, 60)).token,
      [two.id]: (await owner.grant(two.key, 60)).token,
    }
    const voice = concatPcm(silence(0.2), await speech('the dog ran across the yard to catch the ball'))

    type Via = 'key' | 'grant'
    type Send = { key: { key: string; id: string }; via: Via; method: 'streaming' | 'sync'; seconds: number }
    // Durations that differ from each other, so a record cannot match the wrong request by chance.
    const plan: Send[] = [
      { key: one, via: 'key', method: 'streaming', seconds: 2.5 },
      { key: one, via: 'key', method: 'sync', seconds: 1.75 },
      { key: one, via: 'grant', method: 'streaming', seconds: 1.25 },
      { key: one, via: 'grant', method: 'sync', seconds: 2.05 },
      { key: two, via: 'key', method: 'streaming', seconds: 1.5 },
      { key: two, via: 'key', method: 'sync', seconds: 2.25 },
      { key: two, via: 'grant', method: 'streaming', seconds: 3.1 },
      { key: two, via: 'grant', method: 'sync', seconds: 1.05 },
    ]
    const sent = new Map<string, Send>()
    for (const send of plan) {
      const audio = exactly(voice, send.seconds)
      const credential = send.via === 'key' ? `Token ${send.key.key}` : `Bearer ${grants[send.key.id]}`
      if (send.method === 'streaming') {
        const run = await streamFrames(
          wsUrl,
          { headers: { authorization: credential } },
          RAW,
          chunks(audio, 100).map(pcmBytes),
        )
        assert.equal(run.close?.code, 1000)
        sent.set(run.requestId, send)
      } else {
        const res = await postListen(url, credential, wav(audio))
        assert.equal(res.status, 200, JSON.stringify(res.body))
        sent.set(res.requestId, send)
      }
    }
    assert.equal(sent.size, plan.length, 'every request has its own id')

    for (const key of [one, two]) {
      const mine = [...sent].filter(([, s]) => s.key.id === key.id)
      // A stream's record is completed just after its socket closes: wait until every one has its outcome.
      const records = await eventually(
        async () => {
          const { requests } = await owner.get<{ requests: RequestView[] }>(
            `/v1/projects/${owner.projectId}/requests?accessor=${key.id}&limit=100`,
          )
          return requests.length === mine.length && requests.every((r) => r.code !== null)
            ? requests
            : undefined
        },
        10_000,
        `the usage records of ${key.id}`,
      )
      assert.deepEqual(
        records.map((r) => r.request_id).sort(),
        mine.map(([id]) => id).sort(),
        'exactly the requests sent with this key or its grant token',
      )
      for (const record of records) {
        const send = sent.get(record.request_id)
        assert.ok(send)
        assert.equal(record.api_key_id, key.id, `${send.via} ${send.method}: metered to the key`)
        assert.equal(record.path, '/v1/listen')
        assert.equal(record.response.details?.method, send.method)
        assert.equal(record.code, send.method === 'streaming' ? 1000 : 200)
        const duration = record.response.details?.duration ?? Number.NaN
        assert.ok(
          Math.abs(duration - send.seconds) <= SECONDS_TOLERANCE,
          `${send.via} ${send.method}: ${duration} s recorded, ${send.seconds} s sent`,
        )
      }
      const total = mine.reduce((sum, [, s]) => sum + s.seconds, 0)
      const usage = await owner.get<UsageView>(`/v1/projects/${owner.projectId}/usage?accessor=${key.id}`)
      const usageSeconds = usage.results.reduce((sum, day) => sum + day.audio_seconds, 0)
      assert.equal(
        usage.results.reduce((sum, day) => sum + day.requests, 0),
        mine.length,
      )
      assert.ok(
        Math.abs(usageSeconds - total) <= SECONDS_TOLERANCE * mine.length,
        `/usage: ${usageSeconds} s for ${key.id}, ${total} s sent`,
      )
    }
  })

  it('closes a stream of undecodable bytes with 1008 DATA-0000 and refuses an undecodable upload with 400 BAD_AUDIO', async () => {
    const { url, wsUrl } = urls()
    const garbage = Buffer.from(
      'this is certainly not audio, just text bytes that no demuxer knows. '.repeat(200),
    )
    // No encoding: the container is sniffed from the bytes and ffmpeg gives up on them.
    const stream = await streamFrames(wsUrl, { protocols: ['token', OWNER_KEY] }, '', [garbage])
    assert.equal(stream.close?.code, 1008)
    assert.equal(stream.close?.reason, 'DATA-0000')
    const upload = await postListen(url, `Token ${OWNER_KEY}`, garbage)
    assert.equal(upload.status, 400)
    assert.equal((upload.body as { err_code?: string }).err_code, 'BAD_AUDIO')
    // Both are metered as the failures they were.
    for (const [id, code] of [
      [stream.requestId, 1008],
      [upload.requestId, 400],
    ] as const) {
      const record = await eventually(
        async () => {
          const r = await owner.get<RequestView>(`/v1/projects/${owner.projectId}/requests/${id}`)
          return r.code === null ? undefined : r
        },
        10_000,
        `the usage record of ${id}`,
      )
      assert.equal(record.code, code)
    }
  })
})
