import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it, mock } from 'node:test'
import type { AccessRequest } from '../../src/access/index.js'
import { createAuditLog } from '../../src/audit/index.js'
import { systemClock } from '../../src/auth/index.js'
import { ApiError } from '../../src/errors.js'
import {
  clientBucket,
  createAddressList,
  createLimitStage,
  createMemoryRateLimitBackend,
  createRateLimits,
  createRefusalAudit,
  DEFAULT_SERVER_LIMITS,
  parseKeyLimits,
  parseLimitSettings,
  type ServerLimits,
} from '../../src/limits/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'

// The parts of the limits on their own: the address buckets and allow-list, the API parsers, the audit
// throttle, the memory backend's windows and the failed-authentication stage. Time: rate-limiter-flexible's
// memory backend reads `Date.now()` itself, so `Date` alone is mocked (node:test `mock.timers`) and moved
// past windows; the audit throttle takes the system clock, which reads the same mocked `Date`.

const START = Date.UTC(2026, 0, 1)

describe('client addresses', () => {
  it('counts an IPv4 address as itself, an IPv4-mapped IPv6 address as its IPv4 form, and IPv6 by its /64', () => {
    const cases: [string, string][] = [
      ['203.0.113.7', '203.0.113.7'],
      ['::ffff:203.0.113.7', '203.0.113.7'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:db8:1:2::99', '2001:db8:1:2::/64'],
      ['2001:0db8:0001:0002:ffff::1', '2001:db8:1:2::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      ['::1', '0:0:0:0::/64'],
    ]
    for (const [ip, bucket] of cases) assert.equal(clientBucket(ip), bucket, ip)
  })

  it('an allow-list matches addresses and CIDR ranges of both families, and refuses a malformed entry', () => {
    const list = createAddressList(['127.0.0.1', '10.0.0.0/8', 'fd00::/8'])
    for (const ip of ['127.0.0.1', '::ffff:127.0.0.1', '10.200.3.4', 'fd12::5']) assert.ok(list.has(ip), ip)
    for (const ip of ['127.0.0.2', '11.0.0.1', 'fe80::1', 'not-an-ip']) assert.ok(!list.has(ip), ip)
    for (const bad of ['10.0.0.0/33', 'localhost', '1.2.3.4/8/1', '::1/129']) {
      assert.throws(() => createAddressList([bad]), /not/, bad)
    }
  })
})

describe('limits in API bodies', () => {
  it('a key takes positive integer limits and nothing else; absent or null is no limit of its own', () => {
    assert.equal(parseKeyLimits(undefined), undefined)
    assert.equal(parseKeyLimits(null), undefined)
    assert.equal(parseKeyLimits({}), undefined)
    assert.deepEqual(
      parseKeyLimits({ requests_per_minute: 5, grants_per_minute: 2, concurrent_streams: 1 }),
      {
        requestsPerMinute: 5,
        grantsPerMinute: 2,
        concurrentStreams: 1,
      },
    )
    const refused: [unknown, string][] = [
      [{ requests_per_minute: 0 }, 'limits.requests_per_minute'],
      [{ grants_per_minute: -3 }, 'limits.grants_per_minute'],
      [{ concurrent_streams: 5000 }, 'limits.concurrent_streams'],
      [{ concurrent_streams: true }, 'limits.concurrent_streams'],
      [{ project_requests_per_minute: 5 }, 'limits.project_requests_per_minute'],
      ['10', 'limits'],
    ]
    for (const [value, field] of refused) {
      assert.throws(
        () => parseKeyLimits(value),
        (e: unknown) =>
          e instanceof ApiError && e.code === 'INVALID_FIELD' && e.message.includes(`\`${field}\``),
        JSON.stringify(value),
      )
    }
  })

  it('a settings patch sets, keeps and clears single limits, and null clears them all', () => {
    const current = { requestsPerMinute: 10, grantsPerMinute: 3 }
    assert.deepEqual(parseLimitSettings({ concurrent_streams_per_project: 4 }, current), {
      requestsPerMinute: 10,
      grantsPerMinute: 3,
      concurrentStreamsPerProject: 4,
    })
    assert.deepEqual(parseLimitSettings({ grants_per_minute: null }, current), { requestsPerMinute: 10 })
    assert.equal(
      parseLimitSettings({ requests_per_minute: null, grants_per_minute: null }, current),
      undefined,
    )
    assert.equal(parseLimitSettings(null, current), undefined)
    assert.deepEqual(
      current,
      { requestsPerMinute: 10, grantsPerMinute: 3 },
      'the stored value is not changed',
    )
    assert.throws(() => parseLimitSettings({ concurrent_streams: 2 }), /limits\.concurrent_streams/)
  })
})

describe('windows and the failed-authentication stage', () => {
  beforeEach(() => mock.timers.enable({ apis: ['Date'], now: START }))
  afterEach(() => mock.timers.reset())

  it('the memory backend counts in fixed windows and answers synchronously', () => {
    const rates = createRateLimits(createMemoryRateLimitBackend())
    const counter = { name: 'test', windowMs: 60_000 }
    for (let i = 1; i <= 3; i++) {
      const d = rates.consume(counter, 'k', 3)
      assert.ok(!(d instanceof Promise), 'no promise on the memory backend')
      assert.deepEqual(d, { allowed: true, count: i, retryAfterMs: 60_000 })
    }
    mock.timers.tick(20_000)
    assert.deepEqual(rates.consume(counter, 'k', 3), { allowed: false, count: 4, retryAfterMs: 40_000 })
    assert.equal((rates.consume(counter, 'other', 3) as { allowed: boolean }).allowed, true, 'ids apart')
    mock.timers.tick(40_000)
    assert.deepEqual(rates.consume(counter, 'k', 3), { allowed: true, count: 1, retryAfterMs: 60_000 })
  })

  const limits: ServerLimits = {
    ...DEFAULT_SERVER_LIMITS,
    authFailuresPerMinute: 2,
    authFailuresPerHour: 100,
    authBackoffMs: 1000,
    authBlockMs: 3_600_000,
  }
  const request = (ip: string): AccessRequest => ({
    transport: 'http',
    kind: 'introspect',
    route: '/v1/auth/token',
    ip,
    origin: undefined,
    userAgent: undefined,
    requestId: 'test',
  })
  const fail = new ApiError('INVALID_AUTH')
  /** The Retry-After seconds of `beforeAuth`'s refusal, or 0 when it admits. */
  const retryAfter = (stage: ReturnType<typeof createLimitStage>, ip: string): number => {
    try {
      stage.beforeAuth?.(request(ip))
      return 0
    } catch (err) {
      assert.ok(err instanceof ApiError && err.code === 'TOO_MANY_REQUESTS')
      return Number(err.headers?.['retry-after'])
    }
  }

  it('back-offs double within the hour up to 15 minutes; an IPv6 client is backed off across its /64', () => {
    const blocked: number[] = []
    const stage = createLimitStage({
      limits,
      rates: createRateLimits(),
      projectSettings: () => ({}),
      onAddressBlocked: (e) => blocked.push(e.ms),
    })
    const ip = '2001:db8:7:7::1'
    stage.authFailed?.(request(ip), fail)
    assert.equal(retryAfter(stage, ip), 0, 'one failure: not yet')
    stage.authFailed?.(request(ip), fail)
    assert.equal(retryAfter(stage, '2001:db8:7:7::abcd'), 1, 'another address of the same /64')
    assert.equal(retryAfter(stage, '2001:db8:7:8::1'), 0, 'the next /64 is someone else')
    // Each time the back-off ends, fail until backed off again: within the minute one failure does it,
    // once the minute's window has passed it takes the minute's allowance again.
    for (let i = 0; i < 12; i++) {
      mock.timers.tick(blocked.at(-1) ?? 0)
      const before = blocked.length
      while (blocked.length === before) stage.authFailed?.(request(ip), fail)
    }
    assert.deepEqual(
      blocked.map((ms) => ms / 1000),
      [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900],
    )
  })

  it('an allow-listed address is never counted nor refused; others still are', () => {
    const stage = createLimitStage({
      limits: { ...limits, authAllowList: ['127.0.0.0/8', '::1'] },
      rates: createRateLimits(),
      projectSettings: () => ({}),
    })
    for (const ip of ['127.0.0.1', '::1', '::ffff:127.0.0.9']) {
      for (let i = 0; i < 20; i++) stage.authFailed?.(request(ip), fail)
      assert.equal(retryAfter(stage, ip), 0, ip)
    }
    for (let i = 0; i < 2; i++) stage.authFailed?.(request('192.0.2.1'), fail)
    assert.equal(retryAfter(stage, '192.0.2.1'), 1)
  })

  it('a flood of refusals makes one audit event per limit and subject per window, counting the rest', async () => {
    const store = createSqliteStore({ path: ':memory:' })
    const audit = createAuditLog({ store, clock: systemClock })
    try {
      const refusals = createRefusalAudit({ audit, clock: systemClock, windowMs: 60_000 })
      const refusal = { projectId: 'p', limit: 'requests_per_minute', value: 5, retryAfterMs: 1234 } as const
      for (let i = 0; i < 50; i++) refusals.refused({ ...refusal, keyId: 'k1' })
      refusals.refused({ ...refusal, keyId: 'k2' })
      refusals.refused({ ...refusal, keyId: 'k1', limit: 'grants_per_minute' })
      mock.timers.tick(60_000)
      refusals.refused({ ...refusal, keyId: 'k1' })
      await audit.flush()
      const events = await store.listAuditEvents('p', { type: 'limit.refused' })
      const k1 = events.filter((e) => e.keyId === 'k1' && e.detail.limit === 'requests_per_minute')
      assert.equal(events.length, 4)
      assert.deepEqual(k1.map((e) => e.detail.suppressed ?? 0).sort(), [0, 49])
      assert.deepEqual(
        { limit: k1[0]?.detail.limit, value: k1[0]?.detail.value, retry: k1[0]?.detail.retry_after_ms },
        { limit: 'requests_per_minute', value: 5, retry: 1234 },
      )
    } finally {
      await audit.close()
      await store.close()
    }
  })
})
