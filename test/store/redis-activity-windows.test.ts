import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  closeRedisClient,
  createRedisActivityWindows,
  createRedisClient,
  type RedisClient,
} from '../../src/store/redis/index.js'
import { type ActivityWindows, createMemoryWindows } from '../../src/suspicious/index.js'
import { CLOSED_REDIS_URL, deleteKeys, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'

// The suspicious-activity windows (docs/suspicious-activity.md, docs/redis.md "Suspicious activity"): one
// behaviour table run against the memory windows and the Redis ones (the real Redis at 127.0.0.1:6379, under a
// key prefix of this run's own, deleted afterwards), then what only Redis does: several connections counting
// into one window, keys that expire, bounded memory, an outage that skips instead of failing.

const W = 60_000

/** One call and the answer it must give. */
type Step =
  | { op: 'distinct'; subject: string; value: string; at: number; cap?: number; expect: number }
  | { op: 'count'; subject: string; at: number; expect: number; times?: number }
  | { op: 'claim'; subject: string; at: number; expect: boolean }
  | { op: 'seen'; subject: string; value: string; expect: 'known' | 'new' | 'first' }
  | { op: 'learn'; subject: string; value: string; max: number }

const d = (subject: string, value: string, at: number, expect: number, cap = 100): Step => ({
  op: 'distinct',
  subject,
  value,
  at,
  cap,
  expect,
})

/** The behaviour every `ActivityWindows` must show, case by case (times on a manual clock, ms). */
const CASES: { name: string; steps: Step[] }[] = [
  {
    name: 'distinct values are counted within the window only, each once, per subject',
    steps: [
      d('s', 'a', 0, 1),
      d('s', 'a', 1000, 1),
      d('s', 'b', 2000, 2),
      // `a` (last seen at 1000 at most) has aged out at 61 500; `b` is still in.
      d('s', 'c', 61_500, 2),
      d('other', 'a', 61_500, 1),
    ],
  },
  {
    name: 'a value seen again stays in the window from its latest sighting',
    steps: [
      d('s', 'a', 0, 1),
      d('s', 'b', 10_000, 2),
      d('s', 'a', 50_000, 2),
      // At 71 000 `b` has aged out; `a`, seen again at 50 000, has not.
      d('s', 'c', 71_000, 2),
    ],
  },
  {
    name: 'distinct values stop at the cap, and the newest value is never the one dropped',
    steps: [
      ...Array.from({ length: 12 }, (_, i) => d('s', `v${i}`, i, Math.min(i + 1, 4), 4)),
      // v11 came last and is still counted: a repeat of it changes nothing.
      d('s', 'v11', 20, 4, 4),
    ],
  },
  {
    name: 'a window with nothing left in it counts from one again',
    steps: [d('s', 'a', 0, 1), d('s', 'b', 1, 2), d('s', 'c', 200_000, 1)],
  },
  {
    name: 'events are counted in a sliding window: the previous bucket weighs what is left of it',
    steps: [
      { op: 'count', subject: 's', at: 0, expect: 10, times: 10 },
      { op: 'count', subject: 's', at: 30_000, expect: 11 },
      // Halfway through the next bucket, half of the previous one's 11 still count.
      { op: 'count', subject: 's', at: 90_000, expect: 1 + 5 },
      // Two windows on, nothing of the old ones is left.
      { op: 'count', subject: 's', at: 250_000, expect: 1 },
      { op: 'count', subject: 'other', at: 250_000, expect: 1 },
    ],
  },
  {
    name: 'a claim is granted once per window from that claim, per subject',
    steps: [
      { op: 'claim', subject: 's', at: 0, expect: true },
      { op: 'claim', subject: 's', at: 59_999, expect: false },
      { op: 'claim', subject: 'other', at: 59_999, expect: true },
      { op: 'claim', subject: 's', at: 60_000, expect: true },
      { op: 'claim', subject: 's', at: 60_001, expect: false },
    ],
  },
  {
    name: 'seen tells a first value from a known and a new one; learn forgets the least recently learnt past max',
    steps: [
      { op: 'seen', subject: 'k', value: 'https://a.example', expect: 'first' },
      { op: 'learn', subject: 'k', value: 'https://a.example', max: 2 },
      { op: 'seen', subject: 'k', value: 'https://a.example', expect: 'known' },
      { op: 'seen', subject: 'k', value: 'https://b.example', expect: 'new' },
      { op: 'learn', subject: 'k', value: 'https://b.example', max: 2 },
      { op: 'learn', subject: 'k', value: 'https://c.example', max: 2 },
      { op: 'seen', subject: 'k', value: 'https://a.example', expect: 'new' },
      { op: 'seen', subject: 'k', value: 'https://c.example', expect: 'known' },
      { op: 'seen', subject: 'other', value: 'https://c.example', expect: 'first' },
    ],
  },
  {
    name: 'learning a known value again makes it the most recent',
    steps: [
      { op: 'learn', subject: 'k', value: 'a', max: 2 },
      { op: 'learn', subject: 'k', value: 'b', max: 2 },
      { op: 'learn', subject: 'k', value: 'a', max: 2 },
      { op: 'learn', subject: 'k', value: 'c', max: 2 },
      { op: 'seen', subject: 'k', value: 'a', expect: 'known' },
      { op: 'seen', subject: 'k', value: 'b', expect: 'new' },
    ],
  },
]

async function runStep(w: ActivityWindows, step: Step): Promise<unknown> {
  switch (step.op) {
    case 'distinct':
      return w.distinct(step.subject, step.value, step.at, W, step.cap ?? 100)
    case 'count': {
      let last: unknown
      for (let i = 0; i < (step.times ?? 1); i++) last = await w.count(step.subject, step.at, W)
      return last
    }
    case 'claim':
      return w.claim(step.subject, step.at, W)
    case 'seen':
      return w.seen(step.subject, step.value)
    case 'learn':
      return w.learn(step.subject, step.value, step.max)
  }
}

describe('the suspicious-activity windows (one behaviour, memory and Redis)', { timeout: 60_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const clients: RedisClient[] = []
  let a: RedisClient
  let b: RedisClient

  before(async () => {
    a = await redisReady(createRedisClient(TEST_REDIS_URL))
    b = await redisReady(createRedisClient(TEST_REDIS_URL))
    clients.push(a, b)
  })

  after(async () => {
    await deleteKeys(a, prefix)
    await Promise.all(clients.map((c) => closeRedisClient(c)))
  })

  // Each case gets fresh windows: memory ones of its own, Redis ones under a prefix of its own.
  const backends: { name: string; make: () => ActivityWindows }[] = [
    { name: 'memory', make: () => createMemoryWindows() },
    {
      name: 'redis',
      make: () => createRedisActivityWindows({ client: a, prefix: `${prefix}${randomUUID()}:` }),
    },
  ]

  for (const backend of backends) {
    describe(`${backend.name} windows`, () => {
      for (const c of CASES) {
        it(c.name, async () => {
          const w = backend.make()
          for (const [i, step] of c.steps.entries()) {
            const answer = await runStep(w, step)
            if ('expect' in step) assert.equal(answer, step.expect, `step ${i}: ${JSON.stringify(step)}`)
          }
        })
      }
    })
  }

  describe('what only the Redis windows do', () => {
    const shared = () => {
      const own = `${prefix}${randomUUID()}:`
      return [
        createRedisActivityWindows({ client: a, prefix: own }),
        createRedisActivityWindows({ client: b, prefix: own }),
      ] as const
    }

    it('two connections count into one window: distinct values, events and claims add up exactly', async () => {
      const [onA, onB] = shared()
      const now = Date.now()
      const on = (i: number) => (i % 2 === 0 ? onA : onB)
      // 20 addresses, 10 through each connection, all at once: each is counted once, 20 in all.
      const distinct = await Promise.all(
        Array.from({ length: 20 }, (_, i) => on(i).distinct('ips', `10.0.0.${i}`, now, W, 100)),
      )
      assert.deepEqual(
        [...distinct].sort((x, y) => Number(x) - Number(y)),
        Array.from({ length: 20 }, (_, i) => i + 1),
      )
      assert.equal(await onA.distinct('ips', '10.0.0.3', now, W, 100), 20, 'a value seen on B is known on A')
      // 100 events, 50 through each: the answers are 1 to 100, each once.
      const counts = await Promise.all(Array.from({ length: 100 }, (_, i) => on(i).count('grants', now, W)))
      assert.deepEqual(
        [...counts].sort((x, y) => Number(x) - Number(y)),
        Array.from({ length: 100 }, (_, i) => i + 1),
      )
      // 20 concurrent claims of one subject: exactly one wins, wherever it came from.
      const claims = await Promise.all(Array.from({ length: 20 }, (_, i) => on(i).claim('finding', now, W)))
      assert.equal(claims.filter(Boolean).length, 1)
      // An origin learnt through A is known through B.
      await onA.learn('origins', 'https://app.example', 8)
      assert.equal(await onB.seen('origins', 'https://app.example'), 'known')
      assert.equal(await onB.seen('origins', 'https://other.example'), 'new')
    })

    it('every key expires: a window after its length, a counter after two, a claim at its end, learnt values after their TTL', async () => {
      const own = `${prefix}${randomUUID()}:`
      const w = createRedisActivityWindows({ client: a, prefix: own, learntTtlMs: 400 })
      const now = Date.now()
      await w.distinct('ips', '10.0.0.1', now, 300, 10)
      await w.count('grants', now, 1000)
      await w.claim('finding', now, 300)
      await w.learn('origins', 'https://app.example', 8)
      const keys = async () => (await a.keys(`${own}*`)).sort()
      assert.deepEqual(await keys(), [
        `${own}suspicious:claim:finding`,
        `${own}suspicious:count:grants`,
        `${own}suspicious:distinct:ips`,
        `${own}suspicious:learnt:origins`,
      ])
      for (const k of await keys()) {
        const ttl = await a.pttl(k)
        assert.ok(ttl > 0 && ttl <= 2000, `${k} expires (PTTL ${ttl})`)
      }
      await sleep(600)
      assert.deepEqual(await keys(), [`${own}suspicious:count:grants`], 'a counter outlives its window once')
      const end = Date.now() + 5000
      while ((await keys()).length > 0 && Date.now() < end) await sleep(100)
      assert.deepEqual(await keys(), [], 'nothing is left')
    })

    it("a subject's memory is bounded: distinct values at the cap, learnt values at max, long values as a digest", async () => {
      const own = `${prefix}${randomUUID()}:`
      const w = createRedisActivityWindows({ client: a, prefix: own })
      const now = Date.now()
      for (let i = 0; i < 200; i++) await w.distinct('ips', `10.1.${i >> 8}.${i & 255}`, now + i, W, 9)
      assert.equal(await a.zcard(`${own}suspicious:distinct:ips`), 9)
      for (let i = 0; i < 100; i++) await w.learn('origins', `https://${i}.example`, 64)
      assert.equal(await a.zcard(`${own}suspicious:learnt:origins`), 64)
      const long = `agent/${'x'.repeat(10_000)}`
      assert.equal(await w.distinct('agents', long, now, W, 9), 1)
      assert.equal(await w.distinct('agents', long, now + 1, W, 9), 1, 'the same long value is one value')
      const [member] = await a.zrange(`${own}suspicious:distinct:agents`, 0, -1)
      assert.match(String(member), /^sha256:[0-9a-f]{64}$/)
    })

    it('with Redis unreachable every call answers at once with what changes nothing, and the outage is told once', async () => {
      const down = createRedisClient(CLOSED_REDIS_URL)
      clients.push(down)
      const told: string[] = []
      const w = createRedisActivityWindows({ client: down, prefix, onUnavailable: (e) => told.push(e) })
      const started = Date.now()
      assert.equal(await w.distinct('ips', '10.0.0.1', started, W, 10), 0)
      assert.equal(await w.count('grants', started, W), 0)
      assert.equal(await w.claim('finding', started, W), false, 'no finding is recorded on a skipped count')
      assert.equal(await w.seen('origins', 'https://app.example'), 'known', 'no new origin is reported')
      await w.learn('origins', 'https://app.example', 8)
      const ms = Date.now() - started
      assert.ok(ms < 1000, `five calls took ${ms} ms`)
      assert.equal(told.length, 1, `told once: ${JSON.stringify(told)}`)
      assert.ok(!told[0]?.includes('redis://'), 'no URL in what is told')
    })
  })
})
