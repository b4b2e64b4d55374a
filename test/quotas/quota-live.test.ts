import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { exactly, pieces, wav, webmVariants } from '../helpers/listen-e2e.js'
import { finals, openSocket, sendPcm } from '../helpers/live-server.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'
import { DAY_MS, quotaSuite } from './quota-api.js'

// Audio quotas on the live /v1/listen socket of a real Earmark (real SQLite file, real PocketSphinx): the audio
// fed to the engine stops exactly at what the quotas leave, the stream is closed 1008 QUOTA-0001 after the
// finals of what it took, and the usage records add up to the quota (docs/quotas.md).

const RAW = 'encoding=linear16&sample_rate=16000'

describe('audio quotas on live streams', { timeout: 180_000 }, () => {
  const { api, server } = quotaSuite({ EARMARK_CAPACITY: '3' })
  /** 0.5 s silence, "good morning", silence up to 4.5 s, then a sentence the quota must cut off. */
  let speechThenMore: Int16Array
  /** 0.5 s silence, then one sentence without a pause, then 1 s of silence. */
  let sentence: Int16Array

  const grant = async (key: string, endUser: string) => {
    const res = await fetch(`${server().url}/v1/auth/grant`, {
      method: 'POST',
      headers: { authorization: `Token ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttl_seconds: 600, end_user: endUser }),
    })
    assert.equal(res.status, 200)
    return ((await res.json()) as { access_token: string }).access_token
  }
  const listen = (credential: string, scheme: 'token' | 'bearer' = 'token') =>
    openSocket(`${server().wsUrl}/v1/listen?${RAW}`, { protocols: [scheme, credential] })
  /** Streams `pcm` (100 ms frames, paced in real time or not), then CloseStream unless the server closed first. */
  const stream = async (s: Awaited<ReturnType<typeof openSocket>>, pcm: Int16Array, paced: boolean) => {
    await sendPcm(s.ws, pcm, 100, paced)
    if (s.ws.readyState === s.ws.OPEN) s.ws.send(JSON.stringify({ type: 'CloseStream' }))
    return s.closed
  }
  const usageOf = async (keyId: string) => {
    const res = await api.call(
      'GET',
      `/v1/projects/${server().projectId}/requests?accessor=${keyId}&limit=100`,
    )
    assert.equal(res.status, 200)
    return res.body.requests as {
      end_user: string | null
      response: { details?: { duration: number }; code?: number; message?: string }
    }[]
  }
  const total = (records: { response: { details?: { duration: number } } }[]) =>
    records.reduce((sum, r) => sum + (r.response.details?.duration ?? Number.NaN), 0)
  const auditEvents = (type: string) => api.auditEvents({ type })
  /** Whole seconds to the next UTC midnight, as a Retry-After computed now says it. */
  const toMidnight = () => Math.ceil((Math.floor(Date.now() / DAY_MS) * DAY_MS + DAY_MS - Date.now()) / 1000)

  before(async () => {
    const first = concatPcm(silence(0.5), await speech('good morning'))
    sentence = concatPcm(silence(0.5), await speech('good morning, the weather is lovely today'), silence(1))
    speechThenMore = concatPcm(exactly(first, 4.5), await speech('the weather is lovely today'), silence(0.5))
  })

  it('a quota exhausted mid-stream closes it 1008 QUOTA-0001 after the finals of the audio it took', async () => {
    // The quota runs out in the middle of the sentence (speech from about 0.7 s to 2.9 s).
    const { key, id } = await api.createKey({ audio_seconds_per_day: 2 })
    const s = await listen(key)
    assert.equal(s.log.status, undefined, JSON.stringify(s.log.body))
    const log = await stream(s, sentence, false)
    assert.deepEqual(log.close, { code: 1008, reason: 'QUOTA-0001' })
    const heard = finals(log)
    console.log(`# finals before the quota close: "${heard}"`)
    assert.match(heard, /good morning/, 'the speech within the allowance was transcribed and sent')
    assert.doesNotMatch(heard, /lovely|today/, 'nothing past the allowance reached the engine')
    // The engine was flushed at the cut: the last final ends exactly at the allowance, not at an endpoint.
    const last = log.messages.filter((m) => m.type === 'Results' && m.is_final === true).at(-1)
    assert.ok(last, 'a final before the close')
    assert.ok(Math.abs(Number(last.start) + Number(last.duration) - 2) < 0.01, JSON.stringify(last))
    assert.equal(last.speech_final, false)
    assert.equal(
      log.messages.some((m) => m.type === 'Metadata'),
      false,
      'a quota close is not a normal end',
    )
    const [record] = await usageOf(id)
    assert.ok(record)
    assert.equal(record.response.code, 1008)
    assert.equal(record.response.message, 'QUOTA-0001')
    assert.ok(Math.abs((record.response.details?.duration ?? 0) - 2) < 0.01, JSON.stringify(record))

    // Nothing left: the next upgrade is refused before anything is claimed, with Retry-After to midnight UTC.
    const refused = await listen(key)
    assert.equal(refused.log.status, 429)
    assert.equal(refused.log.body?.err_code, 'TOO_MANY_REQUESTS')
    const retryAfter = Number(refused.log.headers?.['retry-after'])
    assert.ok(
      Math.abs(retryAfter - toMidnight()) <= 5,
      `Retry-After ${retryAfter}, midnight in ${toMidnight()}`,
    )
    assert.equal((await usageOf(id)).length, 1, 'a refused upgrade meters nothing')

    const exhausted = (await auditEvents('quota.exhausted')).filter((e) => e.keyId === id)
    assert.equal(exhausted.length, 1)
    assert.equal(exhausted[0]?.detail.audio_seconds, 2)
    const quotas = exhausted[0]?.detail.quotas as { quota: string }[] | undefined
    assert.deepEqual(
      quotas?.map((q) => q.quota),
      ['audio_seconds_per_day'],
    )
    const refusedEvents = (await auditEvents('quota.refused')).filter((e) => e.keyId === id)
    assert.equal(refusedEvents.length, 1)
    assert.equal(refusedEvents[0]?.detail.transport, 'ws')
    assert.doesNotMatch(JSON.stringify([...exhausted, ...refusedEvents]), new RegExp(key))
  })

  it("a browser's WebM/Opus stream is cut at the allowance too, to the sample", async () => {
    const { key, id } = await api.createKey({ audio_seconds_per_day: 1.5 })
    const { liveWebm } = await webmVariants(wav(sentence))
    const s = await openSocket(`${server().wsUrl}/v1/listen`, { protocols: ['token', key] })
    assert.equal(s.log.status, undefined, JSON.stringify(s.log.body))
    for (const piece of pieces(liveWebm, 4096)) s.ws.send(piece)
    if (s.ws.readyState === s.ws.OPEN) s.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const log = await s.closed
    assert.deepEqual(log.close, { code: 1008, reason: 'QUOTA-0001' })
    assert.match(finals(log), /good/)
    const [record] = await usageOf(id)
    assert.ok(Math.abs((record?.response.details?.duration ?? 0) - 1.5) < 0.01, JSON.stringify(record))
  })

  it('concurrent streams share what is left: the usage records of the key add up to the quota', async () => {
    const quota = 4
    const { key, id } = await api.createKey({ audio_seconds_per_day: quota })
    // One stream spends 1.5 s and ends normally.
    const first = await listen(key)
    const firstLog = await stream(first, exactly(speechThenMore, 1.5), false)
    assert.equal(firstLog.close?.code, 1000)
    // Two at once, in real time, draw on the 2.5 s left: neither can spend what the other took.
    const [a, b] = await Promise.all([listen(key), listen(key)])
    assert.ok(a && b)
    assert.equal(a.log.status, undefined, JSON.stringify(a.log.body))
    assert.equal(b.log.status, undefined, JSON.stringify(b.log.body))
    const logs = await Promise.all([stream(a, speechThenMore, true), stream(b, speechThenMore, true)])
    for (const log of logs) assert.deepEqual(log.close, { code: 1008, reason: 'QUOTA-0001' })
    const records = await usageOf(id)
    assert.equal(records.length, 3)
    const sum = total(records)
    console.log(
      `# usage records of a ${quota} s quota: ${records.map((r) => r.response.details?.duration).join(' + ')} = ${sum}`,
    )
    assert.ok(Math.abs(sum - quota) < 0.01, `records add up to ${sum}, quota ${quota}`)
  })

  it('an end user of a grant token who spent the quota is closed and refused; another of the same key is served', async () => {
    const { key, id } = await api.createKey({ end_user_audio_seconds_per_day: 2 })
    const alice = await grant(key, 'alice')
    const aliceStream = await listen(alice, 'bearer')
    const aliceLog = await stream(aliceStream, speechThenMore, false)
    assert.deepEqual(aliceLog.close, { code: 1008, reason: 'QUOTA-0001' })

    const again = await listen(await grant(key, 'alice'), 'bearer')
    assert.equal(again.log.status, 429, 'alice has nothing left today, whatever token she gets')
    assert.ok(Number(again.log.headers?.['retry-after']) >= 1)

    const bob = await listen(await grant(key, 'bob'), 'bearer')
    assert.equal(bob.log.status, undefined, JSON.stringify(bob.log.body))
    const bobLog = await stream(bob, exactly(speechThenMore, 1.5), false)
    assert.equal(bobLog.close?.code, 1000)
    assert.match(finals(bobLog), /morning/)

    const records = await usageOf(id)
    const aliceRecords = records.filter((r) => r.end_user === 'alice')
    assert.equal(aliceRecords.length, 1)
    assert.ok(Math.abs(total(aliceRecords) - 2) < 0.01, JSON.stringify(aliceRecords))
    const bobRecords = records.filter((r) => r.end_user === 'bob')
    assert.ok(Math.abs(total(bobRecords) - 1.5) < 0.01, JSON.stringify(bobRecords))
    const exhausted = (await auditEvents('quota.exhausted')).filter((e) => e.keyId === id)
    assert.deepEqual(
      exhausted.map((e) => [e.endUser, (e.detail.quotas as { quota: string }[])[0]?.quota]),
      [['alice', 'end_user_audio_seconds_per_day']],
    )
  })

  it("the project's end-user quota applies to every end user of the project, across keys", async () => {
    assert.deepEqual(await api.setProjectQuotas({ end_user_audio_seconds_per_day: 1 }), {
      end_user_audio_seconds_per_day: 1,
    })
    try {
      const k1 = await api.createKey({})
      const k2 = await api.createKey({})
      const log = await stream(await listen(await grant(k1.key, 'carol'), 'bearer'), speechThenMore, false)
      assert.deepEqual(log.close, { code: 1008, reason: 'QUOTA-0001' })
      const other = await listen(await grant(k2.key, 'carol'), 'bearer')
      assert.equal(other.log.status, 429, 'the same end user through another key of the project')
      const dave = await listen(await grant(k2.key, 'dave'), 'bearer')
      assert.equal(dave.log.status, undefined, JSON.stringify(dave.log.body))
      dave.ws.close()
      await dave.closed
    } finally {
      assert.deepEqual(await api.setProjectQuotas(null), {})
    }
  })
})
