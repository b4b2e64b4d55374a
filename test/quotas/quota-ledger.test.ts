import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Principal } from '../../src/auth/index.js'
import { isApiError } from '../../src/errors.js'
import { finishUsage, startUsage } from '../../src/projects/index.js'
import {
  createQuotaEnforcer,
  parseKeyQuotas,
  parseQuotaSettings,
  periodBounds,
  type QuotaEnforcer,
  quotaRules,
} from '../../src/quotas/index.js'
import {
  bootstrapProject,
  createTestEarmark,
  type Fixture,
  makeKey,
  type TestEarmark,
} from '../helpers/earmark.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'

// The quota accounting on its own (docs/quotas.md): a real SQLite file, a manual clock, principals from the
// real authenticator; no server.

const DAY_MS = 24 * 3600 * 1000

describe('quota ledger and enforcer', () => {
  let dir: string
  let t: TestEarmark
  let fx: Fixture
  let quotas: QuotaEnforcer

  /** A member key with `quotas` (wire form, as a create-key body gives them) and `tags`, authenticated. */
  const principalWith = async (options: { quotas?: Record<string, number>; tags?: string[] }) => {
    const spec = { scopes: ['member'], tags: options.tags ?? [], quotas: options.quotas }
    const { secret } = await makeKey(t.services, fx.owner, spec as Parameters<typeof makeKey>[2])
    return t.authenticator.authenticate('token', secret)
  }
  /** A finished usage record of `seconds` for `principal`, as a request that ran would leave. */
  const meter = async (principal: Principal, seconds: number) => {
    const record = await startUsage(t.services, principal, {
      requestId: crypto.randomUUID(),
      endpoint: 'listen',
      method: 'sync',
      path: '/v1/listen',
      model: null,
      tags: [],
    })
    await finishUsage(t.services, record, { audioSeconds: seconds, status: 200 })
  }
  const refusal = async (principal: Principal) => {
    try {
      await quotas.open(principal)
    } catch (err) {
      assert.ok(isApiError(err))
      return err
    }
    assert.fail('expected a quota refusal')
  }

  before(async () => {
    dir = tempDataDir()
    t = await createTestEarmark(join(dir, 'earmark.sqlite'))
    // Noon UTC on the last day of a leap-year February.
    t.clock.set(Date.UTC(2028, 1, 29, 12))
    fx = await bootstrapProject(t.services)
    quotas = createQuotaEnforcer({ store: t.services.store, clock: t.clock })
  })
  after(async () => {
    await t.close()
    removeDir(dir)
  })

  it('two open reservations of one key cannot both spend the seconds left', async () => {
    const p = await principalWith({ quotas: { audio_seconds_per_day: 4 } })
    const a = await quotas.open(p)
    const b = await quotas.open(p)
    assert.ok(a && b)
    assert.equal(a.take(3), 3)
    assert.equal(b.take(3), 1, 'only what a left')
    assert.equal(a.remaining(), 0)
    const err = await refusal(p)
    assert.equal(err.code, 'TOO_MANY_REQUESTS')
    assert.equal(err.headers?.['retry-after'], String(12 * 3600), 'noon to midnight UTC')
    a.release()
    b.release()
  })

  it('what a released reservation took counts through its usage record, and only once', async () => {
    const p = await principalWith({ quotas: { audio_seconds_per_day: 10 } })
    const lease = await quotas.open(p)
    assert.ok(lease)
    assert.equal(lease.take(6), 6)
    const during = await quotas.open(p)
    assert.equal(during?.remaining(), 4)
    await meter(p, 6)
    lease.release()
    assert.equal(during?.remaining(), 4, 'settled, not counted twice')
    during?.release()
    assert.equal((await quotas.open(p))?.remaining(), 4, 'read back from the store')
  })

  it('a reservation opened between a record being written and its reservation released counts it once', async () => {
    const p = await principalWith({ quotas: { audio_seconds_per_day: 10 } })
    const a = await quotas.open(p)
    assert.equal(a?.take(4), 4)
    await meter(p, 4) // a's usage record is in the store; a is not released yet
    const c = await quotas.open(p)
    assert.equal(c?.remaining(), 6)
    a?.release()
    assert.equal(c?.remaining(), 6)
    c?.release()
  })

  it('the day quota starts again at midnight UTC and the month quota on the first of the month', async () => {
    const p = await principalWith({ quotas: { audio_seconds_per_day: 5, audio_seconds_per_month: 8 } })
    await meter(p, 5)
    assert.equal((await refusal(p)).headers?.['retry-after'], String(12 * 3600))
    t.clock.advance(12 * 3600 * 1000) // 1 March 2028, 00:00 UTC: a new day and a new month
    await meter(p, 5)
    t.clock.advance(DAY_MS) // 2 March: the day is new, the month has 3 s left
    const lease = await quotas.open(p)
    assert.equal(lease?.remaining(), 3)
    lease?.release()
    await meter(p, 3)
    const monthly = await refusal(p)
    assert.equal(monthly.headers?.['retry-after'], String((Date.UTC(2028, 3, 1) - t.clock.now()) / 1000))
    assert.match(monthly.message, /audio_seconds_per_month/)
    t.clock.set(Date.UTC(2028, 1, 29, 12)) // back, for the other tests
  })

  it('end users of a key are counted apart, under both the key and the project quota', async () => {
    await t.services.store.setProjectSettings(fx.projectId, { quotas: { endUserAudioSecondsPerDay: 3 } })
    try {
      const alice = await principalWith({
        quotas: { end_user_audio_seconds_per_day: 2 },
        tags: ['end_user:alice'],
      })
      const bob = await principalWith({ tags: ['end_user:bob'] })
      await meter(alice, 2)
      assert.match((await refusal(alice)).message, /this key's per-end-user end_user_audio_seconds_per_day/)
      const lease = await quotas.open(bob)
      assert.equal(lease?.remaining(), 3, "the project's per-end-user quota")
      lease?.release()
      const noEndUser = await principalWith({})
      assert.equal(await quotas.open(noEndUser), undefined, 'no end user, no key quota: nothing applies')
    } finally {
      await t.services.store.setProjectSettings(fx.projectId, {})
    }
  })

  it('the rules: a key quota of its own wins over the project default, end-user quotas need an end user', async () => {
    const now = Date.UTC(2028, 1, 29, 12)
    const withUser = await principalWith({ quotas: { audio_seconds_per_day: 7 }, tags: ['end_user:erin'] })
    const rules = quotaRules(
      withUser,
      { audioSecondsPerDay: 1, audioSecondsPerMonth: 30, endUserAudioSecondsPerMonth: 9 },
      now,
    )
    assert.deepEqual(
      rules.map((r) => [r.quota, r.scope, r.source, r.limit, r.filter.endUser ?? null]),
      [
        ['audio_seconds_per_day', 'key', 'key', 7, null],
        ['audio_seconds_per_month', 'key', 'project', 30, null],
        ['end_user_audio_seconds_per_month', 'project_end_user', 'project', 9, 'erin'],
      ],
    )
    assert.deepEqual(
      rules.map((r) => r.resetsAt),
      [Date.UTC(2028, 2, 1), Date.UTC(2028, 2, 1), Date.UTC(2028, 2, 1)],
    )
  })

  it('periods are UTC calendar days and months, December rolling into January', () => {
    for (const [period, at, start, end] of [
      ['day', Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2026, 11, 31), Date.UTC(2027, 0, 1)],
      ['day', Date.UTC(2027, 0, 1), Date.UTC(2027, 0, 1), Date.UTC(2027, 0, 2)],
      ['month', Date.UTC(2026, 11, 15), Date.UTC(2026, 11, 1), Date.UTC(2027, 0, 1)],
      ['month', Date.UTC(2028, 1, 29, 23), Date.UTC(2028, 1, 1), Date.UTC(2028, 2, 1)],
    ] as const) {
      assert.deepEqual(periodBounds(period, at), { start, end }, `${period} of ${new Date(at).toISOString()}`)
    }
  })

  it('quota bodies are parsed strictly, and a settings PATCH sets, keeps and clears fields', () => {
    assert.equal(parseKeyQuotas(undefined), undefined)
    assert.equal(parseKeyQuotas(null), undefined)
    assert.deepEqual(parseKeyQuotas({ audio_seconds_per_day: 60, end_user_audio_seconds_per_month: 0.5 }), {
      audioSecondsPerDay: 60,
      endUserAudioSecondsPerMonth: 0.5,
    })
    for (const [body, field] of [
      [{ audio_seconds_per_day: -1 }, 'quotas.audio_seconds_per_day'],
      [{ audio_seconds_per_day: Number.POSITIVE_INFINITY }, 'quotas.audio_seconds_per_day'],
      [{ audio_seconds_per_month: 2e9 }, 'quotas.audio_seconds_per_month'],
      [{ audio_seconds: 60 }, 'quotas.audio_seconds'],
      ['60', 'quotas'],
    ] as const) {
      assert.throws(
        () => parseKeyQuotas(body),
        (err: unknown) =>
          isApiError(err) && err.code === 'INVALID_FIELD' && err.message.includes(`\`${field}\``),
        JSON.stringify(body),
      )
    }
    const current = { audioSecondsPerDay: 60, audioSecondsPerMonth: 600 }
    assert.deepEqual(
      parseQuotaSettings({ audio_seconds_per_day: null, end_user_audio_seconds_per_day: 5 }, current),
      {
        audioSecondsPerMonth: 600,
        endUserAudioSecondsPerDay: 5,
      },
    )
    assert.equal(parseQuotaSettings(null, current), undefined)
    assert.equal(
      parseQuotaSettings({ audio_seconds_per_day: null, audio_seconds_per_month: null }, current),
      undefined,
    )
  })
})
