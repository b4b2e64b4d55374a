import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { closeRedisClient, createRedisClient, type RedisClient } from '../../src/store/redis/index.js'
import { CLOSED_REDIS_URL, deleteKeys, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'
import { removeDir, type ServerProcess, startServerProcess, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Suspicious activity across two nodes (docs/suspicious-activity.md, docs/redis.md "Suspicious activity"): two
// `earmark serve` processes on one SQLite file and one Redis (the real one at 127.0.0.1:6379, under a key prefix
// of this run's own). A key is presented from five addresses, three through A and two through B, against a
// threshold of four: neither node alone sees more than three, so only windows shared in Redis can fire the rule.
// The addresses come from X-Forwarded-For, which the nodes believe from loopback (EARMARK_TRUST_PROXY).

const THRESHOLD = 4

interface AuditEventView {
  type: string
  key_id: string | null
  ip: string | null
  detail: Record<string, unknown>
}

describe('suspicious activity counted across two nodes sharing one Redis', { timeout: 180_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const ownerKey = `emk_suspicious_nodes_${randomUUID().replaceAll('-', '')}_owner`
  const dir = tempDataDir()
  const env = {
    EARMARK_REDIS_URL: TEST_REDIS_URL,
    EARMARK_REDIS_PREFIX: prefix,
    EARMARK_CAPACITY: '4',
    EARMARK_TRUST_PROXY: '127.0.0.1',
    EARMARK_SUSPICIOUS_MAX_IPS_PER_CREDENTIAL: String(THRESHOLD),
  }
  let a: ServerProcess
  let b: ServerProcess
  let projectId: string
  let redis: RedisClient

  const call = async (node: ServerProcess, path: string, auth: string, init: RequestInit = {}) => {
    const res = await fetch(`${node.url}${path}`, {
      ...init,
      headers: { authorization: auth, 'content-type': 'application/json', ...init.headers },
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  before(async () => {
    recordSecrets(ownerKey)
    a = await startServerProcess({ dataDir: dir, bootstrapKey: ownerKey, env })
    b = await startServerProcess({ dataDir: dir, env })
    const projects = await call(a, '/v1/projects', `Token ${ownerKey}`)
    projectId = String((projects.body.projects as { project_id: string }[])[0]?.project_id)
    redis = await redisReady(createRedisClient(TEST_REDIS_URL))
  })

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()])
    if (redis) {
      await deleteKeys(redis, prefix)
      await closeRedisClient(redis)
    }
    removeDir(dir)
  })

  const findings = async (keyId: string) => {
    const res = await call(
      a,
      `/v1/projects/${projectId}/audit?type=suspicious.distinct_ips&key_id=${keyId}`,
      `Token ${ownerKey}`,
    )
    assert.equal(res.status, 200, JSON.stringify(res.body))
    return res.body.events as AuditEventView[]
  }

  it('a key used from five addresses, three on A and two on B, raises distinct_ips once for a threshold of four', async () => {
    const created = await call(a, `/v1/projects/${projectId}/keys`, `Token ${ownerKey}`, {
      method: 'POST',
      body: JSON.stringify({ comment: 'spread over two nodes', scopes: ['member'] }),
    })
    assert.equal(created.status, 200, JSON.stringify(created.body))
    const key = String(created.body.key)
    const keyId = String(created.body.api_key_id)
    recordSecrets(key)
    const from = async (node: ServerProcess, ip: string) => {
      const res = await call(node, '/v1/auth/token', `Token ${key}`, { headers: { 'x-forwarded-for': ip } })
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }
    // One after the other, each observation in Redis before the next request: a node observes after it
    // answers (the observer never holds a request), so without the wait B's fourth could land after A's
    // fifth. So the fifth is the one that tips the count over, whichever node saw it.
    const window = `${prefix}suspicious:distinct:distinct_ips|key|${projectId}|${keyId}`
    const sent = [
      [a, '203.0.113.1'],
      [b, '203.0.113.2'],
      [a, '203.0.113.3'],
      [b, '203.0.113.4'],
      [a, '203.0.113.5'],
    ] as const
    for (const [i, [node, ip]] of sent.entries()) {
      await from(node, ip)
      const until = Date.now() + 5_000
      while ((await redis.zcard(window)) < i + 1 && Date.now() < until) await sleep(5)
    }
    const members = await redis.zrange(window, 0, -1)
    assert.deepEqual(
      members.sort(),
      ['203.0.113.1', '203.0.113.2', '203.0.113.3', '203.0.113.4', '203.0.113.5'],
      'both nodes counted into one window in Redis',
    )
    let events: AuditEventView[] = []
    const end = Date.now() + 10_000
    while (events.length === 0 && Date.now() < end) {
      await sleep(100)
      events = await findings(keyId)
    }
    assert.equal(events.length, 1, 'the rule fired once the two nodes together passed the threshold')
    const [event] = events
    assert.equal(event?.ip, '203.0.113.5')
    assert.deepEqual(
      { scope: event?.detail.scope, threshold: event?.detail.threshold, observed: event?.detail.observed },
      { scope: 'key', threshold: THRESHOLD, observed: THRESHOLD + 1 },
    )
    // Further addresses on both nodes: the finding is claimed once per window for the whole deployment, so
    // neither node records it again.
    await from(b, '203.0.113.6')
    await from(a, '203.0.113.7')
    await from(b, '203.0.113.8')
    await sleep(500)
    assert.equal((await findings(keyId)).length, 1, 'one finding per window across both nodes')
  })
})

describe('suspicious activity on a node whose Redis cannot be reached', { timeout: 120_000 }, () => {
  const ownerKey = `emk_suspicious_down_${randomUUID().replaceAll('-', '')}_owner`
  let node: ServerProcess

  before(async () => {
    recordSecrets(ownerKey)
    node = await startServerProcess({
      bootstrapKey: ownerKey,
      env: {
        EARMARK_REDIS_URL: CLOSED_REDIS_URL,
        EARMARK_CAPACITY: '4',
        EARMARK_TRUST_PROXY: '127.0.0.1',
        EARMARK_SUSPICIOUS_MAX_IPS_PER_CREDENTIAL: '2',
        EARMARK_LOG_LEVEL: 'info',
      },
    })
  })

  after(async () => {
    await node?.stop()
    if (node) removeDir(node.dataDir)
  })

  it('requests are answered at once, observations are skipped, and the outage is logged once at warn', async () => {
    const started = Date.now()
    for (let i = 1; i <= 6; i++) {
      const res = await fetch(`${node.url}/v1/auth/token`, {
        headers: { authorization: `Token ${ownerKey}`, 'x-forwarded-for': `198.51.100.${i}` },
      })
      assert.equal(res.status, 200)
    }
    const ms = Date.now() - started
    assert.ok(ms < 5000, `six requests took ${ms} ms`)
    await sleep(300)
    const lines = node.output
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string; error?: string })
    const skipped = lines.filter((l) => l.msg.startsWith('suspicious-activity windows unavailable'))
    assert.equal(skipped.length, 1, 'one warning for the outage, not one per observation')
    assert.equal(skipped[0]?.level, 40, 'at warn')
    assert.ok(!JSON.stringify(skipped[0]).includes('redis://'), 'no URL in the log line')
    assert.ok(!lines.some((l) => l.msg === 'suspicious-activity check failed'), 'no error logged per request')
  })
})
