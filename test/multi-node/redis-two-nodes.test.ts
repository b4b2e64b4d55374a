import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { RevocationEvent } from '../../src/revocation/index.js'
import {
  closeRedisClient,
  createRedisClient,
  createRedisRevocationBus,
  type RedisClient,
} from '../../src/store/redis/index.js'
import { freePort } from '../helpers/free-port.js'
import { openSocket, sendPcm } from '../helpers/live-server.js'
import { removeDir, type ServerProcess, startServerProcess, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Two Earmark nodes (docs/redis.md): two `earmark serve` processes on one SQLite file and one Redis (the real one
// at 127.0.0.1:6379, under a key prefix of this run's own), and nodes whose Redis cannot be reached.

const REDIS_URL = process.env.EARMARK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const RAW = 'encoding=linear16&sample_rate=16000'
/** The promise for revocations (docs/revocation.md): a revoked key's streams close within this, on every node. */
const WITHIN_MS = 1000

interface Answer {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

async function call(
  url: string,
  method: string,
  path: string,
  auth: string,
  body?: unknown,
): Promise<Answer> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, headers: res.headers, body: (await res.json()) as Record<string, unknown> }
}

/** A usage request that costs no speech: admitted by every access check, then a 400 for its empty body. */
const useOnce = (url: string, auth: string) => call(url, 'POST', '/v1/speak', auth, {})

function tally(answers: Answer[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const a of answers) counts[a.status] = (counts[a.status] ?? 0) + 1
  return counts
}

describe('two nodes sharing one Redis', { timeout: 180_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const ownerKey = `emk_two_nodes_test_${randomUUID().replaceAll('-', '')}_owner`
  const dir = tempDataDir()
  const env = {
    EARMARK_REDIS_URL: REDIS_URL,
    EARMARK_REDIS_PREFIX: prefix,
    EARMARK_CAPACITY: '4',
    // The server's rate limits on (the helper turns them off); failed authentications stay uncounted.
    EARMARK_LIMIT_REQUESTS_PER_MINUTE: '600',
    EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: '6000',
    EARMARK_LIMIT_GRANTS_PER_MINUTE: '60',
  }
  let a: ServerProcess
  let b: ServerProcess
  let projectId: string
  let redis: RedisClient

  before(async () => {
    recordSecrets(ownerKey)
    a = await startServerProcess({ dataDir: dir, bootstrapKey: ownerKey, env })
    // The second node opens the store the first one bootstrapped.
    b = await startServerProcess({ dataDir: dir, env })
    const projects = await call(a.url, 'GET', '/v1/projects', `Token ${ownerKey}`)
    projectId = String((projects.body.projects as { project_id: string }[])[0]?.project_id)
    redis = createRedisClient(REDIS_URL)
    await new Promise((resolve) => redis.once('ready', resolve))
  })

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    if (redis) {
      const keys = await redis.keys(`${prefix}*`)
      if (keys.length > 0) await redis.del(...keys)
      await closeRedisClient(redis)
    }
    removeDir(dir)
  })

  const createKey = async (comment: string, extra: Record<string, unknown> = {}) => {
    const res = await call(a.url, 'POST', `/v1/projects/${projectId}/keys`, `Token ${ownerKey}`, {
      comment,
      scopes: ['member'],
      ...extra,
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.key as string)
    return { key: res.body.key as string, id: res.body.api_key_id as string }
  }

  it('a per-key rate limit is shared: A and B together admit no more than the limit', async () => {
    const { key } = await createKey('ten a minute', { limits: { requests_per_minute: 10 } })
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) => useOnce(i % 2 === 0 ? a.url : b.url, `Token ${key}`)),
    )
    const counts = tally(answers)
    assert.deepEqual(
      counts,
      { 400: 10, 429: 14 },
      'ten admitted (then refused for the empty body), the rest 429',
    )
    const refused = answers.find((x) => x.status === 429)
    assert.equal(refused?.body.err_code, 'TOO_MANY_REQUESTS')
    assert.ok(Number(refused?.headers.get('retry-after')) >= 1, 'a 429 says when to retry')
    // Each node answered some of each: the count really is shared, not split.
    const onB = answers.filter((_, i) => i % 2 === 1)
    assert.ok(
      onB.some((x) => x.status === 429) &&
        answers.filter((_, i) => i % 2 === 0).some((x) => x.status === 429),
      'both nodes refuse once the shared window is full',
    )
  })

  it('a single-use token is redeemed once across both nodes under 20 concurrent attempts', async () => {
    const grant = await call(a.url, 'POST', '/v1/auth/grant', `Token ${ownerKey}`, {
      ttl_seconds: 60,
      max_uses: 1,
    })
    assert.equal(grant.status, 200, JSON.stringify(grant.body))
    const token = grant.body.access_token as string
    recordSecrets(token)
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => useOnce(i % 2 === 0 ? a.url : b.url, `Bearer ${token}`)),
    )
    assert.deepEqual(tally(answers), { 400: 1, 401: 19 })
    assert.ok(answers.filter((x) => x.status === 401).every((x) => x.body.err_code === 'INVALID_AUTH'))
  })

  it('a key deleted through A closes its live stream on B within a second, announced through Redis', async (t) => {
    const { key, id } = await createKey('streams on B')
    // Listen on the channel the nodes use, to see the revocation travel through Redis.
    const listener = createRedisClient(REDIS_URL, { offlineQueue: true })
    const heard: string[] = []
    listener.on('message', (_channel: string, message: string) => heard.push(message))
    await listener.subscribe(`${prefix}revocations`)
    try {
      const { ws, log } = await openSocket(`${b.url.replace('http', 'ws')}/v1/listen?${RAW}`, {
        protocols: ['token', key],
      })
      assert.equal(log.status, undefined, `upgrade refused: ${JSON.stringify(log.body)}`)
      const closedAt = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())))
      const silence = setInterval(() => {
        if (ws.readyState === ws.OPEN) ws.send(Buffer.alloc(3200))
      }, 100)
      try {
        await sleep(300)
        const deletedAt = Date.now()
        const res = await call(a.url, 'DELETE', `/v1/projects/${projectId}/keys/${id}`, `Token ${ownerKey}`)
        assert.equal(res.status, 200, JSON.stringify(res.body))
        const at = await Promise.race([closedAt, sleep(5000).then(() => Number.NaN)])
        assert.ok(!Number.isNaN(at), 'the stream on B is still open 5 s after the delete on A')
        const ms = at - deletedAt
        t.diagnostic(`key deleted on A → its stream on B closed after ${ms} ms`)
        assert.deepEqual(log.close, { code: 1008, reason: 'AUTH-0001' })
        assert.ok(ms <= WITHIN_MS, `closed after ${ms} ms`)
      } finally {
        clearInterval(silence)
        ws.terminate()
      }
      const revoked = heard
        .map((m) => JSON.parse(m) as { event?: { type?: string; keyId?: string } })
        .filter((m) => m.event?.type === 'key-revoked' && m.event.keyId === id)
      assert.equal(revoked.length, 1, 'A published the revocation on the Redis channel')
      // B refuses the key from now on.
      assert.equal((await useOnce(b.url, `Token ${key}`)).status, 401)
    } finally {
      await closeRedisClient(listener)
    }
  })

  // Stream caps and audio quotas (docs/redis.md, "Stream caps" and "Quotas"): without Redis each node would
  // count on its own, and every refusal below would be an admission.
  const listen = (node: ServerProcess, key: string) =>
    openSocket(`${node.url.replace('http', 'ws')}/v1/listen?${RAW}`, { protocols: ['token', key] })

  /** Upgrades on `node` until one is admitted (a release reaches Redis a moment after the close). */
  const admittedWithin = async (node: ServerProcess, key: string, ms: number) => {
    const end = Date.now() + ms
    for (;;) {
      const s = await listen(node, key)
      if (s.log.status === undefined) return s
      assert.equal(s.log.status, 429, JSON.stringify(s.log.body))
      if (Date.now() > end) assert.fail(`still refused ${ms} ms after the first stream closed`)
      await sleep(50)
    }
  }

  it('a per-key cap of 1 is shared: a stream open on A refuses one on B with 429, admitted once it closes', async () => {
    const { key } = await createKey('one stream', { limits: { concurrent_streams: 1 } })
    const first = await listen(a, key)
    assert.equal(first.log.status, undefined, `upgrade on A refused: ${JSON.stringify(first.log.body)}`)
    const second = await listen(b, key)
    assert.equal(second.log.status, 429, 'B sees the stream A holds')
    assert.equal(second.log.body?.err_code, 'TOO_MANY_REQUESTS')
    assert.equal(second.log.headers?.['retry-after'], '2')
    // A pre-recorded request counts against the same cap, on either node.
    const post = await fetch(`${b.url}/v1/listen?${RAW}`, {
      method: 'POST',
      headers: { authorization: `Token ${key}`, 'content-type': 'audio/l16' },
      body: Buffer.alloc(3200),
    })
    assert.equal(post.status, 429)
    await post.arrayBuffer()
    first.ws.close()
    await first.closed
    const startedAt = Date.now()
    const third = await admittedWithin(b, key, 3000)
    console.log(`# B admitted the key's stream ${Date.now() - startedAt} ms after A's closed`)
    // And now it is A that refuses.
    const fourth = await listen(a, key)
    assert.equal(fourth.log.status, 429, 'A sees the stream B holds')
    third.ws.close()
    await third.closed
  })

  it('a quota is shared: while A holds what is left B is refused, and B gets only what A left', async () => {
    const { key } = await createKey('four seconds a day', { quotas: { audio_seconds_per_day: 4 } })
    const first = await listen(a, key)
    assert.equal(first.log.status, undefined, `upgrade on A refused: ${JSON.stringify(first.log.body)}`)
    await sendPcm(first.ws, new Int16Array(16000), 100)
    // A's open stream holds the 4 s (it leases them from Redis): B has nothing to give.
    const refused = await listen(b, key)
    assert.equal(refused.log.status, 429, 'B sees the quota A holds')
    assert.equal(refused.log.body?.err_code, 'TOO_MANY_REQUESTS')
    first.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const firstLog = await first.closed
    assert.equal(firstLog.close?.code, 1000, JSON.stringify(firstLog.close))
    // A used 1 s of its 4: B gets the other 3 and is closed at them.
    const second = await admittedWithin(b, key, 3000)
    await sendPcm(second.ws, new Int16Array(16000 * 5), 100)
    const secondLog = await Promise.race([second.closed, sleep(10_000).then(() => undefined)])
    assert.ok(secondLog, 'the stream on B is still open 10 s later')
    assert.deepEqual(secondLog.close, { code: 1008, reason: 'QUOTA-0001' })
    const metadata = secondLog.messages.find((m) => m.type === 'Metadata')
    if (metadata && typeof metadata.duration === 'number') {
      assert.ok(metadata.duration <= 3.001 && metadata.duration >= 2.9, `B took ${metadata.duration} s`)
    }
    // Now nothing is left, on either node.
    for (const node of [a, b]) {
      const s = await listen(node, key)
      assert.equal(s.log.status, 429)
    }
  })
})

describe('a node whose Redis cannot be reached', { timeout: 120_000 }, () => {
  const unreachable = {
    EARMARK_REDIS_URL: 'redis://:not-logged-password@127.0.0.1:1',
    EARMARK_CAPACITY: '2',
    EARMARK_LIMIT_REQUESTS_PER_MINUTE: '600',
  }
  const nodes: ServerProcess[] = []
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    for (const n of nodes) removeDir(n.dataDir)
  })

  const start = async (env: Record<string, string>) => {
    const ownerKey = `emk_redis_down_test_${randomUUID().replaceAll('-', '')}_owner`
    recordSecrets(ownerKey, 'not-logged-password')
    const node = await startServerProcess({ bootstrapKey: ownerKey, env })
    nodes.push(node)
    return { node, ownerKey }
  }

  it('fails closed by default: a usage request and an upgrade get 503 SERVICE_UNAVAILABLE in the Deepgram shape', async () => {
    const { node, ownerKey } = await start(unreachable)
    const res = await useOnce(node.url, `Token ${ownerKey}`)
    assert.equal(res.status, 503)
    assert.equal(res.body.err_code, 'SERVICE_UNAVAILABLE')
    assert.equal(typeof res.body.err_msg, 'string')
    assert.equal(typeof res.body.request_id, 'string')
    assert.ok(res.headers.get('retry-after'), 'a 503 says when to retry')
    const upgrade = await openSocket(`${node.url.replace('http', 'ws')}/v1/listen?${RAW}`, {
      protocols: ['token', ownerKey],
    })
    assert.equal(upgrade.log.status, 503)
    assert.equal(upgrade.log.body?.err_code, 'SERVICE_UNAVAILABLE')
    // The outage is logged by address, never with the URL's password.
    assert.ok(
      node.output.some((l) => l.includes('redis unreachable')),
      'the outage is logged',
    )
    assert.ok(!node.output.some((l) => l.includes('not-logged-password')), 'the password is never logged')
  })

  it('with EARMARK_REDIS_FAIL_OPEN=rate-limits the rate limits admit, and a single-use token still gets 503', async () => {
    const { node, ownerKey } = await start({ ...unreachable, EARMARK_REDIS_FAIL_OPEN: 'rate-limits' })
    assert.equal(
      (await useOnce(node.url, `Token ${ownerKey}`)).status,
      400,
      'admitted, then refused for its body',
    )
    const grant = await call(node.url, 'POST', '/v1/auth/grant', `Token ${ownerKey}`, {
      ttl_seconds: 60,
      max_uses: 1,
    })
    assert.equal(grant.status, 200, JSON.stringify(grant.body))
    recordSecrets(grant.body.access_token as string)
    const use = await useOnce(node.url, `Bearer ${grant.body.access_token as string}`)
    assert.equal(use.status, 503, 'a use that cannot be counted is not granted')
    assert.equal(use.body.err_code, 'SERVICE_UNAVAILABLE')
  })
})

async function until<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > end) assert.fail(`${what}: not within ${timeoutMs} ms`)
    await sleep(50)
  }
}

describe('a node whose Redis stops and comes back', { timeout: 120_000 }, () => {
  let port: number
  let server: ChildProcess | undefined
  let node: ServerProcess | undefined
  const cleanup: (() => Promise<void>)[] = []

  /** A Redis of this test's own (no persistence), so stopping it disturbs no other test. */
  const startRedis = async () => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    )
    server = child
    const probe = createRedisClient(`redis://127.0.0.1:${port}`)
    try {
      await until(async () => (probe.status === 'ready' ? true : undefined), 10_000, 'redis-server answers')
    } finally {
      await closeRedisClient(probe)
    }
  }
  const stopRedis = async () => {
    const child = server
    if (!child || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  before(async () => {
    port = await freePort()
    await startRedis()
  })
  after(async () => {
    for (const c of cleanup) await c()
    await node?.stop()
    if (node) removeDir(node.dataDir)
    await stopRedis()
  })

  it('answers 503 while Redis is down and admits again by itself once it is back', async (t) => {
    const ownerKey = `emk_redis_restart_test_${randomUUID().replaceAll('-', '')}_owner`
    recordSecrets(ownerKey)
    node = await startServerProcess({
      bootstrapKey: ownerKey,
      env: {
        EARMARK_REDIS_URL: `redis://127.0.0.1:${port}`,
        EARMARK_CAPACITY: '2',
        EARMARK_LIMIT_REQUESTS_PER_MINUTE: '600',
      },
    })
    const url = node.url
    assert.equal((await useOnce(url, `Token ${ownerKey}`)).status, 400, 'admitted while Redis is up')
    await stopRedis()
    const down = await until(
      async () => {
        const res = await useOnce(url, `Token ${ownerKey}`)
        return res.status === 503 ? res : undefined
      },
      3000,
      'a 503 once Redis is gone',
    )
    assert.equal(down.body.err_code, 'SERVICE_UNAVAILABLE')
    const restartedAt = Date.now()
    await startRedis()
    await until(
      async () => ((await useOnce(url, `Token ${ownerKey}`)).status === 400 ? true : undefined),
      10_000,
      'admitted again once Redis is back',
    )
    t.diagnostic(`Redis restarted → requests admitted again after ${Date.now() - restartedAt} ms`)
    const output = node.output
    const logged = (text: string) => output.filter((l) => l.includes(text)).length
    await until(
      async () => (logged('redis reachable again') > 0 ? true : undefined),
      2000,
      'the recovery is logged',
    )
    assert.equal(logged('redis unreachable'), 1, 'the outage is logged once, not once per attempt')
  })

  it('the revocation bus subscribes again after Redis comes back', async () => {
    const redisUrl = `redis://127.0.0.1:${port}`
    const prefix = `earmark-test:${randomUUID()}:`
    const publisher = createRedisClient(redisUrl)
    const subscriber = createRedisClient(redisUrl, { offlineQueue: true })
    const other = createRedisClient(redisUrl)
    const bus = createRedisRevocationBus({ publisher, subscriber, prefix })
    cleanup.push(async () => {
      await bus.close()
      await Promise.all([publisher, subscriber, other].map((c) => closeRedisClient(c)))
    })
    await bus.subscribed
    const seen: RevocationEvent[] = []
    bus.subscribe((e) => seen.push(e))
    await stopRedis()
    await startRedis()
    const event: RevocationEvent = { type: 'signing-key-retired', kid: 'kid-after-restart' }
    const message = JSON.stringify({ node: 'another-node', event })
    // Published until heard: the subscriber reconnects on its own back-off.
    await until(
      async () => {
        if (other.status === 'ready') await other.publish(`${prefix}revocations`, message)
        return seen.length > 0 ? true : undefined
      },
      10_000,
      'an event published after the restart is delivered',
    )
    assert.deepEqual(seen[0], event)
  })
})
