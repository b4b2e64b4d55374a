import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { systemClock } from '../../src/auth/index.js'
import { loadConfig } from '../../src/config/index.js'
import { ApiError } from '../../src/errors.js'
import type { RevocationEvent } from '../../src/revocation/index.js'
import {
  closeRedisClient,
  createRedisClient,
  createRedisJtiLedger,
  createRedisRateLimitBackend,
  createRedisRevocationBus,
  type RedisClient,
  type RedisRevocationBus,
  redisTarget,
} from '../../src/store/redis/index.js'
import { CLOSED_REDIS_URL, deleteKeys, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'

// The Redis backends' contracts (docs/redis.md) on the real Redis at 127.0.0.1:6379 (`.ci/run` starts one).
// Each run uses its own random key prefix and deletes its keys afterwards.

const REDIS_URL = TEST_REDIS_URL
const CLOSED_URL = CLOSED_REDIS_URL
const ready = redisReady

async function eventually(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`)
    await sleep(10)
  }
}

function isUnavailable(err: unknown): boolean {
  return err instanceof ApiError && err.code === 'SERVICE_UNAVAILABLE' && err.status === 503
}

describe('the Redis backends (shared by every node)', { timeout: 60_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const clients: RedisClient[] = []
  let a: RedisClient
  let b: RedisClient

  const client = async (url = REDIS_URL, offlineQueue = false) => {
    const c = createRedisClient(url, { offlineQueue })
    clients.push(c)
    return url === REDIS_URL ? ready(c) : c
  }

  before(async () => {
    a = await client()
    b = await client()
  })

  after(async () => {
    await deleteKeys(a, prefix)
    await Promise.all(clients.map((c) => closeRedisClient(c)))
  })

  describe('rate-limit windows', () => {
    it('counts the hits of one window, peeks without counting, and reports the time left', async () => {
      const counter = createRedisRateLimitBackend({ client: a, prefix }).counter('requests', 60_000)
      assert.equal(await counter.peek('key-1'), undefined, 'no window before the first hit')
      const counts = []
      for (let i = 0; i < 3; i++) counts.push((await counter.hit('key-1', 1)).count)
      assert.deepEqual(counts, [1, 2, 3])
      const open = await counter.peek('key-1')
      assert.equal(open?.count, 3, 'a peek does not count')
      assert.ok(open && open.msLeft > 50_000 && open.msLeft <= 60_000, `msLeft ${open?.msLeft}`)
      assert.equal((await counter.hit('key-2', 1)).count, 1, 'another id has its own window')
    })

    it('a window closes after its length and the next hit opens a new one at 1', async () => {
      const counter = createRedisRateLimitBackend({ client: a, prefix }).counter('short', 300)
      await counter.hit('k', 1)
      assert.equal((await counter.hit('k', 1)).count, 2)
      await sleep(450)
      assert.equal(await counter.peek('k'), undefined, 'the window has closed')
      const next = await counter.hit('k', 1)
      assert.equal(next.count, 1)
      assert.ok(next.msLeft > 0 && next.msLeft <= 300, `msLeft ${next.msLeft}`)
    })

    it('set opens a window of its own length holding the count (how blocks are set)', async () => {
      const counter = createRedisRateLimitBackend({ client: a, prefix }).counter('blocks', 3_600_000)
      await counter.set('10.0.0.1', 2, 400)
      const open = await counter.peek('10.0.0.1')
      assert.equal(open?.count, 2)
      assert.ok(open && open.msLeft <= 400 && open.msLeft > 0, `msLeft ${open?.msLeft}`)
      await sleep(550)
      assert.equal(await counter.peek('10.0.0.1'), undefined, 'the block ended with its own length')
    })

    it('two nodes count into one window: 100 concurrent hits from two connections count 1 to 100 exactly', async () => {
      const onA = createRedisRateLimitBackend({ client: a, prefix }).counter('shared', 60_000)
      const onB = createRedisRateLimitBackend({ client: b, prefix }).counter('shared', 60_000)
      const hits = await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? onA : onB).hit('key', 1)),
      )
      const counts = hits.map((h) => h.count).sort((x, y) => x - y)
      assert.deepEqual(
        counts,
        Array.from({ length: 100 }, (_, i) => i + 1),
      )
      assert.equal((await onB.peek('key'))?.count, 100)
    })

    it('with Redis unreachable a hit is a 503 by default, and an empty window when failing open', async () => {
      const down = await client(CLOSED_URL)
      const errors: unknown[] = []
      const closed = createRedisRateLimitBackend({ client: down, prefix, onError: (e) => errors.push(e) })
      await assert.rejects(Promise.resolve(closed.counter('requests', 60_000).hit('k', 1)), isUnavailable)
      await assert.rejects(Promise.resolve(closed.counter('requests', 60_000).peek('k')), isUnavailable)
      assert.ok(errors.length >= 2, 'each failure is reported')
      const open = createRedisRateLimitBackend({ client: down, prefix, failOpen: true })
      assert.deepEqual(await open.counter('requests', 60_000).hit('k', 1), { count: 0, msLeft: 60_000 })
      assert.equal(await open.counter('requests', 60_000).peek('k'), undefined)
      await open.counter('requests', 60_000).set('k', 1, 1000)
    })
  })

  describe('a request’s windows in one call', () => {
    /** Back-offs of 40 ms doubling to 300 ms; the block at the 12th failure in the hour. */
    const ladder = {
      hour: { name: 'lf-hour', windowMs: 3_600_000, rate: 12 },
      minute: { name: 'lf-minute', windowMs: 60_000, rate: 2 },
      backoffs: { name: 'lf-backoffs', windowMs: 3_600_000 },
      block: { name: 'lf-block', backoff: 1, block: 2 },
      blockMs: 9000,
      backoffMs: 40,
      maxBackoffMs: 300,
    }
    const hit = (name: string, id: string, limit: number) => ({
      name,
      windowMs: 60_000,
      id,
      points: 1,
      limit,
    })

    it('counts the hits in order and stops after the first over its limit, leaving the rest uncounted', async () => {
      const backend = createRedisRateLimitBackend({ client: a, prefix })
      const [k, p] = [randomUUID(), randomUUID()]
      const hits = [hit('batch-key', k, 2), hit('batch-project', p, 100)]
      const first = await backend.batch?.(hits)
      assert.deepEqual(
        first?.windows.map((w) => w.count),
        [1, 1],
      )
      assert.ok(first?.windows.every((w) => w.msLeft > 50_000 && w.msLeft <= 60_000))
      await backend.batch?.(hits)
      const third = await backend.batch?.(hits)
      assert.deepEqual(
        third?.windows.map((w) => w.count),
        [3],
        'the key is over its limit: the project is not hit',
      )
      assert.equal((await backend.counter('batch-project', 60_000).peek(p))?.count, 2)
    })

    it('a guard open at its minimum refuses the batch and counts nothing; below it the hits count', async () => {
      const backend = createRedisRateLimitBackend({ client: a, prefix })
      const [ip, k] = [randomUUID(), randomUUID()]
      const guard = { name: 'batch-block', id: ip, min: 1 }
      const hits = [hit('batch-key', k, 10)]
      assert.deepEqual(
        (await backend.batch?.(hits, guard))?.windows.map((w) => w.count),
        [1],
        'no window: admitted',
      )
      await backend.counter('batch-block', 3_600_000).set(ip, 1, 5000)
      const refused = await backend.batch?.(hits, guard)
      assert.equal(refused?.guard?.count, 1)
      assert.ok(refused?.guard && refused.guard.msLeft <= 5000 && refused.guard.msLeft > 0)
      assert.deepEqual(refused?.windows, [])
      assert.equal((await backend.counter('batch-key', 60_000).peek(k))?.count, 1, 'nothing counted')
      const higher = await backend.batch?.(hits, { ...guard, min: 2 })
      assert.equal(higher?.guard, undefined, 'a window under the minimum admits')
    })

    it('100 concurrent batches from two connections count 1 to 100 exactly', async () => {
      const [onA, onB] = [a, b].map((c) => createRedisRateLimitBackend({ client: c, prefix }))
      const id = randomUUID()
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          (i % 2 === 0 ? onA : onB)?.batch?.([hit('batch-shared', id, 1000)]),
        ),
      )
      const counts = results.map((r) => r?.windows[0]?.count ?? 0).sort((x, y) => x - y)
      assert.deepEqual(
        counts,
        Array.from({ length: 100 }, (_, i) => i + 1),
      )
    })

    it('the failed-authentication ladder backs off doubling up to its cap, then blocks at the hourly rate', async () => {
      const backend = createRedisRateLimitBackend({ client: a, prefix })
      const bucket = randomUUID()
      const set: { count: number; ms: number }[] = []
      for (let failures = 1; failures <= 12; failures++) {
        const block = await backend.ladder?.(bucket, ladder)
        if (!block) continue
        set.push(block)
        // Wait the back-off out, as a client must.
        if (block.count === 1) await sleep(block.ms + 20)
      }
      // 2 failures in the minute: a back-off; each further failure in that minute another, doubled.
      assert.deepEqual(
        set.map((s) => `${s.count}:${s.ms}`),
        ['1:40', '1:80', '1:160', '1:300', '1:300', '1:300', '1:300', '1:300', '1:300', '1:300', '2:9000'],
      )
      const open = await backend.counter('lf-block', 3_600_000).peek(bucket)
      assert.equal(open?.count, 2, 'the hourly block is in place')
      // A back-off never shortens a block already in place (set by a request in flight meanwhile).
      const other = randomUUID()
      await backend.counter('lf-block', 3_600_000).set(other, 2, 9000)
      const quick = { ...ladder, minute: { ...ladder.minute, rate: 1 } }
      assert.equal(await backend.ladder?.(other, quick), undefined, 'the back-off was not set')
      assert.equal((await backend.counter('lf-block', 3_600_000).peek(other))?.count, 2)
    })

    it('with Redis unreachable a batch and the ladder are a 503, and admit (uncounted) when failing open', async () => {
      const down = await client(CLOSED_URL)
      const closed = createRedisRateLimitBackend({ client: down, prefix })
      await assert.rejects(Promise.resolve(closed.batch?.([hit('k', 'k', 1)])), isUnavailable)
      await assert.rejects(Promise.resolve(closed.ladder?.('b', ladder)), isUnavailable)
      const open = createRedisRateLimitBackend({ client: down, prefix, failOpen: true })
      assert.deepEqual(await open.batch?.([hit('k', 'k', 1)], { name: 'x', id: 'b', min: 1 }), {
        windows: [],
      })
      assert.equal(await open.ladder?.('b', ladder), undefined)
    })
  })

  describe('the max_uses ledger', () => {
    for (const maxUses of [1, 3]) {
      it(`a token of ${maxUses} use(s) gets exactly ${maxUses} of 50 concurrent redemptions on two nodes`, async () => {
        const ledgers = [a, b].map((c) => createRedisJtiLedger({ client: c, prefix, clock: systemClock }))
        const jti = randomUUID()
        const exp = Date.now() + 60_000
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => ledgers[i % 2]?.redeem(jti, maxUses, exp)),
        )
        assert.equal(results.filter((r) => r === true).length, maxUses)
        assert.equal(results.filter((r) => r === false).length, 50 - maxUses)
      })
    }

    it('the entry dies with the token, an expired token is refused, and one minted before the process started is not', async () => {
      const ledger = createRedisJtiLedger({ client: a, prefix, clock: systemClock })
      const jti = randomUUID()
      const exp = Date.now() + 400
      assert.equal(await ledger.redeem(jti, 2, exp), true)
      const ttl = await a.pttl(`${prefix}jti:${jti}`)
      assert.ok(ttl > 0 && ttl <= 400, `the entry expires with the token (pttl ${ttl})`)
      await sleep(600)
      assert.equal(await a.exists(`${prefix}jti:${jti}`), 0, 'forgotten once the token is dead')
      assert.equal(await ledger.redeem(jti, 2, exp), false, 'a dead token is refused')
      // The shared ledger knows past uses whatever process counted them: an old `iat` is no reason to refuse.
      const minutesAgo = Date.now() - 10 * 60_000
      assert.equal(await ledger.redeem(randomUUID(), 1, Date.now() + 60_000, minutesAgo), true)
    })

    it('with Redis unreachable a redemption is a 503, never a success', async () => {
      const down = await client(CLOSED_URL)
      const ledger = createRedisJtiLedger({ client: down, prefix, clock: systemClock })
      await assert.rejects(
        Promise.resolve(ledger.redeem(randomUUID(), 1, Date.now() + 60_000)),
        isUnavailable,
      )
    })
  })

  describe('the revocation bus', () => {
    const buses: RedisRevocationBus[] = []
    after(async () => {
      await Promise.all(buses.map((bus) => bus.close()))
    })
    const bus = async (busPrefix = prefix) => {
      const publisher = await client()
      const subscriber = await client(REDIS_URL, true)
      const created = createRedisRevocationBus({ publisher, subscriber, prefix: busPrefix })
      buses.push(created)
      await created.subscribed
      return created
    }

    it('an event published on one node reaches the other node’s subscribers, and its own exactly once', async () => {
      const [busA, busB, elsewhere] = [await bus(), await bus(), await bus(`${prefix}other:`)]
      const seenA: RevocationEvent[] = []
      const seenB: RevocationEvent[] = []
      const seenElsewhere: RevocationEvent[] = []
      busA.subscribe((e) => seenA.push(e))
      busB.subscribe((e) => seenB.push(e))
      elsewhere.subscribe((e) => seenElsewhere.push(e))
      const event: RevocationEvent = { type: 'key-revoked', projectId: 'p1', keyId: 'k1', reason: 'deleted' }
      busA.publish(event)
      assert.deepEqual(seenA, [event], 'delivered locally at once')
      await eventually(() => seenB.length > 0, 2000, 'delivery to the other node')
      assert.deepEqual(seenB, [event])
      const retired: RevocationEvent = { type: 'signing-key-retired', kid: 'kid-9' }
      busB.publish(retired)
      await eventually(() => seenA.length > 1, 2000, 'delivery back to the first node')
      // Own messages come back from Redis too: give them time to arrive, and be skipped.
      await sleep(200)
      assert.deepEqual(seenA, [event, retired])
      assert.deepEqual(seenB, [event, retired])
      // One grant token revoked by its jti (docs/live-streams.md) travels too.
      const revokedToken: RevocationEvent = {
        type: 'grant-revoked',
        projectId: 'p1',
        jti: 'j1',
        expiresAt: 1234,
      }
      busA.publish(revokedToken)
      await eventually(() => seenB.length > 2, 2000, 'the token revocation on the other node')
      assert.deepEqual(seenB, [event, retired, revokedToken])
      assert.deepEqual(seenElsewhere, [], 'another prefix is another deployment')
    })

    it('a malformed message on the channel is ignored and the bus goes on', async () => {
      const busA = await bus()
      const seen: RevocationEvent[] = []
      busA.subscribe((e) => seen.push(e))
      await a.publish(`${prefix}revocations`, 'not json')
      await a.publish(`${prefix}revocations`, JSON.stringify({ node: 'x', event: { type: 'drop-tables' } }))
      await a.publish(
        `${prefix}revocations`,
        JSON.stringify({ node: 'x', event: { type: 'grant-revoked', projectId: 'p', jti: 'j' } }),
      )
      await a.publish(
        `${prefix}revocations`,
        JSON.stringify({ node: 'x', event: { type: 'member-role-changed', projectId: 'p', memberId: 'm' } }),
      )
      await eventually(() => seen.length > 0, 2000, 'the valid event')
      assert.deepEqual(
        seen,
        [{ type: 'member-role-changed', projectId: 'p', memberId: 'm' }],
        'a token revocation without its expiry is malformed too',
      )
    })
  })
})

describe('the Redis settings', () => {
  it('are off without EARMARK_REDIS_URL, and read with their defaults when it is set', () => {
    assert.equal(loadConfig({}).redis, undefined)
    assert.equal(loadConfig({ EARMARK_REDIS_URL: '' }).redis, undefined)
    assert.deepEqual(loadConfig({ EARMARK_REDIS_URL: 'redis://127.0.0.1:6379/2' }).redis, {
      url: 'redis://127.0.0.1:6379/2',
      prefix: 'earmark:',
      failOpen: 'none',
    })
    const open = loadConfig({ EARMARK_REDIS_URL: 'rediss://r:6380', EARMARK_REDIS_FAIL_OPEN: 'rate-limits' })
    assert.equal(open.redis?.failOpen, 'rate-limits')
  })

  it('refuse a URL that is not redis:// without echoing it, and never show its password', () => {
    assert.throws(
      () => loadConfig({ EARMARK_REDIS_URL: 'http://user:hunter2-secret@10.0.0.5:6379' }),
      (err: Error) => /EARMARK_REDIS_URL/.test(err.message) && !err.message.includes('hunter2-secret'),
    )
    assert.throws(() => loadConfig({ EARMARK_REDIS_URL: 'redis://x', EARMARK_REDIS_FAIL_OPEN: 'all' }))
    assert.equal(redisTarget('redis://user:hunter2-secret@10.0.0.5:6380/3'), '10.0.0.5:6380/3')
    assert.equal(redisTarget('redis://:hunter2-secret@cache'), 'cache:6379')
  })
})
