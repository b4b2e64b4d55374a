import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Store } from '../../src/store/index.js'
import { closeRedisClient, createRedisClient, type RedisClient } from '../../src/store/redis/index.js'
import { freePort } from '../helpers/free-port.js'
import { type LiveServer, openSocket, startLiveServer } from '../helpers/live-server.js'
import { createTestDatabase, dropTestDatabases } from '../helpers/postgres.js'

// What one request costs Redis and PostgreSQL (docs/redis.md, "Cost"): a real Earmark on PostgreSQL with its
// own redis-server (a private one on a free port, so other tests' traffic is not counted), every command the
// node sends seen through MONITOR. A round trip is a command the node sends (the commands a script runs inside
// Redis are not); the rate limits' are those on `<prefix>rl:` keys. PostgreSQL round trips are counted as calls
// of the store's methods (each is at least one query; `credentialsVersion` reads memory only).

/** One command the node sent, as MONITOR reported it. */
interface Sent {
  name: string
  keys: string[]
}

/** The keys of a command: a script names them after its key count, other commands take theirs first. */
function keysOf(args: string[]): string[] {
  const name = (args[0] ?? '').toLowerCase()
  if (name === 'evalsha' || name === 'eval') return args.slice(3, 3 + Number(args[2] ?? 0))
  return args.slice(1, 2)
}

describe('Redis and PostgreSQL round trips per request', { timeout: 120_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  let redis: ChildProcess
  let redisPort = 0
  let monitor: RedisClient
  let srv: LiveServer
  const storeCalls: string[] = []
  const sent: Sent[] = []

  before(async () => {
    const port = await freePort()
    redisPort = port
    // No persistence: the server lives in memory and dies with the test.
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    )
    const url = `redis://127.0.0.1:${port}`
    const probe = createRedisClient(url)
    const end = Date.now() + 10_000
    while (probe.status !== 'ready') {
      if (Date.now() > end) assert.fail('redis-server did not answer within 10 s')
      await sleep(20)
    }
    monitor = await probe.monitor()
    await closeRedisClient(probe)
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      // Commands a script runs report their source as `lua`: inside the round trip of their script.
      if (source !== 'lua') sent.push({ name: (args[0] ?? '').toLowerCase(), keys: keysOf(args) })
    })
    srv = await startLiveServer({
      EARMARK_DATABASE_URL: createTestDatabase(),
      EARMARK_REDIS_URL: url,
      EARMARK_REDIS_PREFIX: prefix,
      EARMARK_LIMIT_REQUESTS_PER_MINUTE: '1000',
      EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: '10000',
      EARMARK_LIMIT_GRANTS_PER_MINUTE: '100',
      EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: '50',
      EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR: '500',
    })
    // Every store method but the in-memory version counts as a PostgreSQL round trip (see above).
    const store = srv.earmark.services.store as unknown as Record<string, unknown>
    for (const name of Object.keys(store)) {
      const method = store[name]
      if (typeof method !== 'function' || name === 'credentialsVersion') continue
      store[name] = (...args: unknown[]) => {
        storeCalls.push(name)
        return (method as (...a: unknown[]) => unknown).apply(srv.earmark.services.store as Store, args)
      }
    }
  })

  after(async () => {
    await srv?.close()
    if (monitor) await closeRedisClient(monitor)
    if (redis && redis.exitCode === null) {
      const exited = new Promise((resolve) => redis.once('exit', resolve))
      redis.kill('SIGKILL')
      await exited
    }
    dropTestDatabases()
  })

  /** Waits until the node has sent nothing new for 100 ms. */
  const quiet = async () => {
    let seen = -1
    while (seen !== sent.length) {
      seen = sent.length
      await sleep(100)
    }
  }

  /** What `action` cost: the commands the node sent by kind, and store calls, once the node has gone quiet. */
  const cost = async (action: () => Promise<unknown>) => {
    // What the previous action sends after its answer (a failed authentication's count) belongs to it.
    await quiet()
    sent.length = 0
    const calls = storeCalls.length
    await action()
    // Failed-authentication counts are sent after the answer.
    await quiet()
    const rl = sent.filter((c) => c.keys.some((k) => k.startsWith(`${prefix}rl:`)))
    return {
      rateLimits: rl.length,
      other: sent
        .filter((c) => !rl.includes(c))
        .map((c) => `${c.name} ${c.keys.map((k) => k.slice(prefix.length)).join(' ')}`),
      store: storeCalls.slice(calls),
    }
  }

  const call = async (method: string, path: string, auth: string, body?: unknown) => {
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: { authorization: auth, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  it('a request whose credential is cached costs one Redis round trip for its rate limits and no store call', async (t) => {
    const owner = `Token ${srv.ownerKey}`
    const rows: string[] = []
    const measure = async (what: string, action: () => Promise<unknown>) => {
      const c = await cost(action)
      rows.push(
        `${what}: rate limits ${c.rateLimits}, other Redis ${c.other.length} [${c.other.join('; ')}], store [${c.store.join(', ')}]`,
      )
      return c
    }
    const minted = await call('POST', '/v1/auth/grant', owner, { ttl_seconds: 600 })
    assert.equal(minted.status, 200)
    const bearer = `Bearer ${String(minted.body.access_token)}`
    // Seen once, so cached from here on; and each rate-limit script run once, so what is measured below is
    // the steady state (ioredis sends a script whole the first time, by hash after).
    await call('GET', '/v1/auth/token', bearer)
    await call('GET', '/v1/auth/token', owner)
    await call('GET', '/v1/auth/token', `Token emk_warm_up_${randomUUID().replaceAll('-', '')}`)

    const token = await measure('Token request (GET /v1/auth/token)', async () =>
      assert.equal((await call('GET', '/v1/auth/token', owner)).status, 200),
    )
    const usage = await measure('Token usage request (POST /v1/speak, 400 after admission)', async () =>
      assert.equal((await call('POST', '/v1/speak', owner, {})).status, 400),
    )
    const viaBearer = await measure('Bearer request (GET /v1/auth/token)', async () =>
      assert.equal((await call('GET', '/v1/auth/token', bearer)).status, 200),
    )
    const grant = await measure('grant (POST /v1/auth/grant)', async () =>
      assert.equal((await call('POST', '/v1/auth/grant', owner, { ttl_seconds: 30 })).status, 200),
    )
    const upgrade = await measure('WS upgrade (GET /v1/listen)', async () => {
      const { ws, log, closed } = await openSocket(
        `${srv.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`,
        {
          protocols: ['token', srv.ownerKey],
        },
      )
      assert.equal(log.status, undefined, JSON.stringify(log.body))
      ws.send(JSON.stringify({ type: 'CloseStream' }))
      await closed
    })
    const wrong = `Token emk_wrong_${randomUUID().replaceAll('-', '')}`
    const refused = await measure('refused request (an unknown key, 401)', async () =>
      assert.equal((await call('GET', '/v1/auth/token', wrong)).status, 401),
    )
    const created = await call('POST', `/v1/projects/${srv.projectId}/keys`, owner, {
      comment: 'round trips',
      scopes: ['member'],
      limits: { requests_per_minute: 1 },
    })
    assert.equal(created.status, 200)
    const limited = `Token ${String(created.body.key)}`
    // The key's creation moved the credentials version: the owner key is read again on its next request.
    await call('GET', '/v1/auth/token', owner)
    const first = await measure('first request of a key this node has not cached', async () =>
      assert.equal((await call('GET', '/v1/auth/token', limited)).status, 200),
    )
    const over = await measure('refused request (over its key’s limit, 429)', async () =>
      assert.equal((await call('GET', '/v1/auth/token', limited)).status, 429),
    )
    for (const row of rows) t.diagnostic(row)

    for (const c of [token, usage, viaBearer, grant, upgrade, over]) {
      assert.equal(c.rateLimits, 1, 'one round trip for every rate limit a cached credential counts against')
    }
    for (const c of [token, usage, viaBearer, grant, over]) {
      // The grant is audited, and so is the 429: queued, and written in batches off the request's path.
      const calls = c.store.filter((name) => name !== 'insertAuditEvents')
      assert.deepEqual(calls, [], 'a cached credential costs no store call')
    }
    // A credential the node has not cached is looked up in the store; the address is checked before that,
    // so a blocked address cannot make the node query it: one round trip more.
    assert.equal(refused.rateLimits, 2, 'a refused credential: the address check, then the failure counted')
    assert.equal(first.rateLimits, 2, 'an uncached credential: the address check, then its windows')
  })

  it('a backed-off address is refused a cached credential in the same round trip, and an unknown one before the store', async () => {
    const owner = `Token ${srv.ownerKey}`
    await call('GET', '/v1/auth/token', owner)
    // The loopback address, backed off as the failure ladder would (docs/limits.md).
    const block = `${prefix}rl:auth-block:127.0.0.1`
    const writer = createRedisClient(`redis://127.0.0.1:${redisPort}`)
    try {
      while (writer.status !== 'ready') await sleep(20)
      await writer.set(block, '1', 'PX', 5000)
      const cached = await cost(async () => {
        const res = await call('GET', '/v1/auth/token', owner)
        assert.equal(res.status, 429)
        assert.equal(res.body.err_code, 'TOO_MANY_REQUESTS')
      })
      assert.equal(cached.rateLimits, 1)
      assert.deepEqual(cached.store, [])
      const unknown = await cost(async () =>
        assert.equal((await call('GET', '/v1/auth/token', `Token emk_x_${randomUUID()}`)).status, 429),
      )
      assert.equal(unknown.rateLimits, 1, 'the check before authentication')
      assert.deepEqual(unknown.store, [], 'no store query for a blocked address')
    } finally {
      await writer.del(block)
      await closeRedisClient(writer)
    }
  })
})
