import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { createManualClock } from '../../src/auth/index.js'
import { exactly, wav, webmVariants } from '../helpers/listen-e2e.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'
import { DAY_MS, quotaSuite } from './quota-api.js'

// Audio quotas on pre-recorded `POST /v1/listen`, on a real Earmark (real SQLite file, real PocketSphinx, real
// ffmpeg) whose clock is a manual one: refusals before the body is read, before decoding when the WAV header
// tells the length, and at the allowance when it does not; and the UTC day and month rolling over.

describe('audio quotas on pre-recorded requests', { timeout: 180_000 }, () => {
  // 30 s before midnight UTC, the day before the last day of January.
  const clock = createManualClock(Date.UTC(2026, 0, 30, 23, 59, 30))
  const { api, server } = quotaSuite({}, clock)
  let twoSeconds: Buffer
  let twoSecondsWebm: Buffer

  const post = async (key: string, body: Buffer, contentType = 'audio/wav') => {
    const res = await fetch(`${server().url}/v1/listen`, {
      method: 'POST',
      headers: { authorization: `Token ${key}`, 'content-type': contentType },
      body,
    })
    const json = (await res.json()) as Record<string, unknown>
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: json }
  }
  const records = (keyId: string) => server().earmark.services.store.listUsage(server().projectId, { keyId })
  const spent = api.spentSeconds

  before(async () => {
    const pcm = exactly(concatPcm(silence(0.3), await speech('good morning')), 2)
    twoSeconds = wav(pcm)
    twoSecondsWebm = (await webmVariants(twoSeconds)).webm
  })

  it('refuses up front, stops decoding at the allowance, and rolls over with the UTC day and month', async () => {
    const { key, id } = await api.createKey({ audio_seconds_per_day: 3, audio_seconds_per_month: 5 })

    const ok = await post(key, twoSeconds)
    assert.equal(ok.status, 200, JSON.stringify(ok.body))
    assert.equal(await spent(id), 2)

    // The WAV header says 2 s, 1 s is left: refused before decoding, nothing billed.
    const long = await post(key, twoSeconds)
    assert.equal(long.status, 429)
    assert.equal(long.body.err_code, 'TOO_MANY_REQUESTS')
    assert.equal(long.retryAfter, '30', 'Retry-After runs to midnight UTC')
    assert.equal(await spent(id), 2)

    // WebM does not tell its length: decoding stops at the 1 s left and the request is refused.
    const cut = await post(key, twoSecondsWebm, 'audio/webm')
    assert.equal(cut.status, 429, JSON.stringify(cut.body))
    assert.equal(cut.retryAfter, '30')
    const cutRecord = (await records(id)).find((r) => r.id === cut.body.request_id)
    assert.ok(cutRecord)
    assert.equal(cutRecord.status, 429)
    assert.ok(Math.abs(cutRecord.audioSeconds - 1) < 0.001, `billed ${cutRecord.audioSeconds} s`)
    assert.ok(Math.abs((await spent(id)) - 3) < 0.001, 'the records add up to the day quota')

    // Nothing left: refused before the body is read; no usage record at all.
    const before = (await records(id)).length
    const none = await post(key, twoSeconds)
    assert.equal(none.status, 429)
    assert.equal(none.retryAfter, '30')
    assert.equal((await records(id)).length, before)

    // A new UTC day: the day quota starts again; the month has 5 - 3 = 2 s left.
    clock.advance(30_000)
    const nextDay = await post(key, twoSeconds)
    assert.equal(nextDay.status, 200, JSON.stringify(nextDay.body))
    // The day has 1 s left but the month none: Retry-After runs to the first of February.
    const monthSpent = await post(key, twoSeconds)
    assert.equal(monthSpent.status, 429)
    assert.equal(monthSpent.retryAfter, String(DAY_MS / 1000))
    assert.match(String(monthSpent.body.err_msg), /audio_seconds_per_month/)

    clock.advance(DAY_MS)
    const nextMonth = await post(key, twoSeconds)
    assert.equal(nextMonth.status, 200, JSON.stringify(nextMonth.body))

    const refused = await api.auditEvents({ type: 'quota.refused', keyId: id })
    assert.deepEqual(refused.map((e) => [e.detail.retry_after_ms, e.detail.transport]).reverse(), [
      [30_000, 'http'],
      [30_000, 'http'],
      [30_000, 'http'],
      [DAY_MS, 'http'],
    ])
  })

  it('a key without quotas of its own takes the project default, and its own quota wins over it', async () => {
    assert.deepEqual(await api.setProjectQuotas({ audio_seconds_per_day: 1 }), { audio_seconds_per_day: 1 })
    try {
      const plain = await api.createKey({})
      const own = await api.createKey({ audio_seconds_per_day: 10 })
      assert.equal((await post(plain.key, twoSeconds)).status, 429, 'the project default of 1 s')
      assert.equal((await post(own.key, twoSeconds)).status, 200, "the key's own 10 s")
    } finally {
      assert.deepEqual(await api.setProjectQuotas(null), {})
    }
  })

  it('a create-key body with a bad quota is a 400 naming the field', async () => {
    for (const [quotas, field] of [
      [{ audio_seconds_per_day: 0 }, 'quotas.audio_seconds_per_day'],
      [{ audio_seconds_per_week: 10 }, 'quotas.audio_seconds_per_week'],
      [{ end_user_audio_seconds_per_month: '60' }, 'quotas.end_user_audio_seconds_per_month'],
      [[60], 'quotas'],
    ] as const) {
      const res = await api.call('POST', `/v1/projects/${server().projectId}/keys`, {
        comment: 'bad',
        scopes: ['member'],
        quotas,
      })
      const body = res.body as { err_code: string; err_msg: string }
      assert.equal(res.status, 400, JSON.stringify(body))
      assert.equal(body.err_code, 'INVALID_FIELD')
      assert.ok(body.err_msg.includes(`\`${field}\``), body.err_msg)
    }
  })
})
