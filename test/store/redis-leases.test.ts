import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Principal } from '../../src/auth/index.js'
import { ApiError } from '../../src/errors.js'
import type { QuotaBucket } from '../../src/quotas/index.js'
import type { Store } from '../../src/store/index.js'
import {
  closeRedisClient,
  createRedisCapacityShare,
  createRedisClient,
  createRedisQuotaLedger,
  type RedisCapacityShare,
  type RedisClient,
  type RedisQuotaLedger,
} from '../../src/store/redis/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { CLOSED_REDIS_URL, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'

// The stream caps and the quota ledger in Redis (docs/redis.md, "Stream caps" and "Quotas"), on the real Redis
// at 127.0.0.1:6379: two shares or ledgers on two connections stand for two nodes. Each run uses its own key
// prefix and deletes its keys afterwards.

const REDIS_URL = TEST_REDIS_URL
const CLOSED_URL = CLOSED_REDIS_URL
const ready = redisReady

/** A key's credential, as the authenticator would hand it over (no end user, no options of its own). */
function principalOf(keyId: string, projectId = 'project-1'): Principal {
  const keyRecord = { id: keyId, projectId, options: {}, memberRole: 'owner', tags: [] }
  return { projectId, keyId, keyRecord, key: keyRecord } as unknown as Principal
}

function isStatus(err: unknown, status: number): boolean {
  return err instanceof ApiError && err.status === status
}

describe('stream caps and quota reservations in Redis', { timeout: 60_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const clients: RedisClient[] = []
  const closers: { close(): unknown }[] = []
  let a: RedisClient
  let b: RedisClient
  let store: Store
  const redisErrors: string[] = []

  const client = async () => {
    const c = createRedisClient(REDIS_URL)
    clients.push(c)
    return ready(c)
  }
  const share = (c: RedisClient, perKey: number, timing: { leaseMs?: number; heartbeatMs?: number } = {}) => {
    const s: RedisCapacityShare = createRedisCapacityShare(
      { perCredential: 0, perKey, perEndUser: 0 },
      { client: c, prefix, ...timing },
    )
    closers.push(s)
    return s
  }
  const ledger = (
    c: RedisClient,
    timing: { leaseSeconds?: number; reservationMs?: number; heartbeatMs?: number } = {},
  ) => {
    const l: RedisQuotaLedger = createRedisQuotaLedger({
      client: c,
      store,
      prefix,
      ...timing,
      // What Redis answered when a script failed: the 503 alone does not say (CI saw one once, unexplained).
      onError: (err) => redisErrors.push(String((err as Error)?.message ?? err)),
    })
    closers.push(l)
    const reserve = l.reserve.bind(l)
    l.reserve = (buckets) =>
      reserve(buckets).catch((err: unknown) => {
        if (err instanceof Error) err.message += ` (Redis said: ${redisErrors.join('; ') || 'nothing'})`
        throw err
      })
    return l
  }
  const bucket = (limit: number): QuotaBucket => ({
    id: randomUUID(),
    projectId: 'project-1',
    filter: { keyId: randomUUID(), start: 0 },
    limit,
    resetsAt: Date.now() + 86_400_000,
  })

  before(async () => {
    a = await client()
    b = await client()
    store = createSqliteStore({ path: ':memory:' })
  })

  after(async () => {
    for (const c of closers) await c.close()
    const keys = await a.keys(`${prefix}*`)
    if (keys.length > 0) await a.del(...keys)
    await Promise.all(clients.map(closeRedisClient))
    await store.close()
  })

  it('two nodes admit together no more than a per-key cap, under concurrent claims', async () => {
    const [onA, onB] = [share(a, 3), share(b, 3)]
    const p = principalOf(randomUUID())
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? onA : onB).claim(p)),
    )
    const admitted = outcomes.filter((o) => o.status === 'fulfilled')
    const refused = outcomes.filter((o) => o.status === 'rejected')
    assert.equal(admitted.length, 3)
    assert.ok(refused.every((o) => isStatus(o.reason, 429)))
    assert.equal(onA.heldByKey(p.keyId) + onB.heldByKey(p.keyId), 3, 'each node counts the claims it holds')
    // A release on one node makes room on the other.
    const first = admitted[0] as PromiseFulfilledResult<() => void>
    first.value()
    first.value() // twice changes nothing
    await sleep(50)
    const again = await onB.claim(p)
    await assert.rejects(
      async () => onA.claim(p),
      (err) => isStatus(err, 429),
    )
    again()
  })

  it('a claim whose node stopped renewing it falls out of the count once its lease ends', async () => {
    const dead = share(a, 1, { leaseMs: 300, heartbeatMs: 60_000 })
    const alive = share(b, 1)
    const p = principalOf(randomUUID())
    await dead.claim(p) // never released: its node "died"
    await assert.rejects(
      async () => alive.claim(p),
      (err) => isStatus(err, 429),
    )
    await sleep(450)
    const release = await alive.claim(p)
    release()
  })

  it('a claim renewed by its heartbeat outlives its lease', async () => {
    const live = share(a, 1, { leaseMs: 300, heartbeatMs: 100 })
    const other = share(b, 1)
    const p = principalOf(randomUUID())
    const release = await live.claim(p)
    await sleep(800)
    await assert.rejects(
      async () => other.claim(p),
      (err) => isStatus(err, 429),
    )
    release()
  })

  it('a claim while Redis cannot be reached is a 503', async () => {
    const down = createRedisClient(CLOSED_URL)
    clients.push(down)
    const s = share(down, 1)
    await assert.rejects(
      async () => s.claim(principalOf(randomUUID())),
      (err) => isStatus(err, 503),
    )
  })

  it('two nodes together never take more than a quota, and what one leased is known to the other', async () => {
    const q = bucket(5)
    const [onA, onB] = [ledger(a, { leaseSeconds: 1 }), ledger(b, { leaseSeconds: 1 })]
    const [ra, rb] = await Promise.all([onA.reserve([q]), onB.reserve([q])])
    let granted = 0
    for (let i = 0; i < 40; i++) {
      granted += ra.take(0.25) + rb.take(0.25)
      await sleep(5)
    }
    assert.ok(granted <= 5 + 1e-9, `granted ${granted} s of a 5 s quota`)
    assert.ok(granted >= 4.5, `granted only ${granted} s of a 5 s quota`)
    ra.release()
    rb.release()
    await sleep(50)
    // Both released without a usage record in the store: nothing is counted any more.
    const fresh = await onA.reserve([q])
    assert.equal(fresh.remaining(), 5)
    fresh.release()
  })

  it('a reservation whose node stopped renewing it gives its seconds back once its lease ends', async () => {
    const q = bucket(4)
    const dead = ledger(a, { reservationMs: 300, heartbeatMs: 60_000 })
    const alive = ledger(b)
    const held = await dead.reserve([q])
    assert.equal(held.remaining(), 4)
    const meanwhile = await alive.reserve([q])
    assert.equal(meanwhile.remaining(), 0, 'the 4 s are leased by the other node')
    meanwhile.release()
    await sleep(450)
    const later = await alive.reserve([q])
    assert.equal(later.remaining(), 4)
    later.release()
  })

  it('opening a reservation while Redis cannot be reached is a 503', async () => {
    const down = createRedisClient(CLOSED_URL)
    clients.push(down)
    const l = ledger(down)
    await assert.rejects(
      async () => l.reserve([bucket(10)]),
      (err) => isStatus(err, 503),
    )
  })
})
