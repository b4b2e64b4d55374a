import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { type IncomingHttpHeaders, request } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { closeRedisClient, createRedisClient } from '../../src/store/redis/index.js'
import { spokenSentences } from '../helpers/listen-e2e.js'
import { finals, openHeldStream, openSocket, sendPcm } from '../helpers/live-server.js'
import { type Nginx, nginxBinary, startNginx } from '../helpers/nginx.js'
import { createTestDatabase, dropTestDatabases } from '../helpers/postgres.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { wordErrorRate } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The deployment recipe of docs/deploy.md, run for real: two `earmark serve` processes on one PostgreSQL
// database and one Redis, behind nginx (the Debian package, as a child process of this test with its own
// prefix, never the system service) configured by the repository's own deploy/nginx/earmark.conf.

const REDIS_URL = process.env.EARMARK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const RAW = 'encoding=linear16&sample_rate=16000'
const SENTENCES = [
  'the train to boston leaves from platform three',
  'the meeting starts at nine in the morning on monday',
]

/** Client addresses on the loopback network (all of 127.0.0.0/8 is local on Linux); nginx reaches the nodes from 127.0.0.1. */
const FROM = {
  owner: '127.0.0.1',
  bound: '127.0.0.2',
  stranger: '127.0.0.3',
  guesser: '127.0.0.4',
  checker: '127.0.0.5',
} as const

interface Answer {
  status: number
  headers: IncomingHttpHeaders
  body: Record<string, unknown>
  requestId: string
}

/** One HTTP request from the loopback address `from`, so nginx sees that address as the client's. */
function call(
  base: string,
  method: string,
  path: string,
  options: { auth?: string; body?: unknown; from?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const url = new URL(path, base)
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method,
        path: `${url.pathname}${url.search}`,
        localAddress: options.from ?? FROM.owner,
        agent: false,
        headers: {
          ...(options.auth ? { authorization: options.auth } : {}),
          ...(payload !== undefined
            ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
            : {}),
          ...options.headers,
        },
      },
      (res) => {
        let text = ''
        res.on('data', (d: Buffer) => {
          text += d.toString()
        })
        res.on('end', () => {
          let body: Record<string, unknown> = {}
          try {
            body = JSON.parse(text) as Record<string, unknown>
          } catch {
            body = { text }
          }
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body,
            requestId: String(res.headers['dg-request-id'] ?? ''),
          })
        })
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/** Opens a live stream from the loopback address `from`; resolves once it is open or refused. */
const openStream = (wsUrl: string, protocols: string[], from: string) =>
  openSocket(wsUrl, { protocols, localAddress: from })

describe('two Earmark nodes behind nginx (docs/deploy.md)', { timeout: 240_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const ownerKey = `emk_nginx_test_${randomUUID().replaceAll('-', '')}_owner`
  let a: ServerProcess | undefined
  let b: ServerProcess | undefined
  let nginx: Nginx | undefined
  let projectId = ''

  before(async () => {
    recordSecrets(ownerKey)
    const binary = nginxBinary()
    const env = {
      EARMARK_DATABASE_URL: createTestDatabase(),
      EARMARK_REDIS_URL: REDIS_URL,
      EARMARK_REDIS_PREFIX: prefix,
      EARMARK_TRUST_PROXY: '127.0.0.1',
      EARMARK_CAPACITY: '2',
      // Failed authentications counted per client address (in Redis, for both nodes); rates stay off.
      EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: '3',
    }
    a = await startServerProcess({ bootstrapKey: ownerKey, env })
    // The second node opens the database the first one bootstrapped.
    b = await startServerProcess({ env })
    nginx = await startNginx(binary, [Number(new URL(a.url).port), Number(new URL(b.url).port)])
    const projects = await call(nginx.url, 'GET', '/v1/projects', { auth: `Token ${ownerKey}` })
    assert.equal(projects.status, 200, JSON.stringify(projects.body))
    projectId = String((projects.body.projects as { project_id: string }[])[0]?.project_id)
  })

  after(async () => {
    await nginx?.stop()
    await Promise.all([a?.stop(), b?.stop()])
    for (const node of [a, b]) if (node) removeDir(node.dataDir)
    dropTestDatabases()
    const redis = createRedisClient(REDIS_URL)
    try {
      await new Promise((resolve) => redis.once('ready', resolve))
      const keys = await redis.keys(`${prefix}*`)
      if (keys.length > 0) await redis.del(...keys)
    } finally {
      await closeRedisClient(redis)
    }
  })

  const running = () => {
    if (!a || !b || !nginx) throw new Error('the nodes or nginx did not start')
    return { a, b, proxy: nginx.url, wsProxy: nginx.url.replace(/^http/, 'ws') }
  }

  /** Which node logged request `id` (each logs its requests' ids); waits for the log line. */
  const servedBy = async (id: string): Promise<'A' | 'B'> => {
    const { a, b } = running()
    assert.ok(id, 'every answer carries dg-request-id')
    const deadline = Date.now() + 3000
    for (;;) {
      const onA = a.output.some((l) => l.includes(id))
      const onB = b.output.some((l) => l.includes(id))
      assert.ok(!(onA && onB), `request ${id} logged by both nodes`)
      if (onA) return 'A'
      if (onB) return 'B'
      if (Date.now() > deadline) assert.fail(`request ${id} was logged by neither node`)
      await sleep(20)
    }
  }

  const createKey = async (comment: string, extra: Record<string, unknown> = {}) => {
    const { proxy } = running()
    const res = await call(proxy, 'POST', `/v1/projects/${projectId}/keys`, {
      auth: `Token ${ownerKey}`,
      body: { comment, scopes: ['member'], ...extra },
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.key as string)
    return { key: res.body.key as string, id: res.body.api_key_id as string }
  }

  it('GET /v1/auth/token and POST /v1/auth/grant through nginx land on both nodes, and a token minted on one works on the other', async () => {
    const { a, b, proxy } = running()
    const introspections = []
    for (let i = 0; i < 6; i++) {
      introspections.push(await call(proxy, 'GET', '/v1/auth/token', { auth: `Token ${ownerKey}` }))
    }
    assert.deepEqual(
      introspections.map((r) => r.status),
      Array(6).fill(200),
    )
    const introspected = new Set(await Promise.all(introspections.map((r) => servedBy(r.requestId))))
    assert.deepEqual([...introspected].sort(), ['A', 'B'], 'nginx spreads GET /v1/auth/token over both nodes')

    const grants = []
    for (let i = 0; i < 4; i++) {
      grants.push(
        await call(proxy, 'POST', '/v1/auth/grant', { auth: `Token ${ownerKey}`, body: { ttl_seconds: 60 } }),
      )
    }
    for (const g of grants) {
      assert.equal(g.status, 200, JSON.stringify(g.body))
      recordSecrets(g.body.access_token as string)
    }
    const minted = await Promise.all(grants.map((g) => servedBy(g.requestId)))
    assert.deepEqual([...new Set(minted)].sort(), ['A', 'B'], 'grants are minted on both nodes')
    // Each token, whichever node signed it, is good on both (the signing keys are in the shared store).
    for (const g of grants) {
      const bearer = `Bearer ${g.body.access_token as string}`
      for (const node of [a, b]) {
        const res = await call(node.url, 'GET', '/v1/auth/token', { auth: bearer })
        assert.equal(res.status, 200, JSON.stringify(res.body))
      }
    }
  })

  it('a live /v1/listen stream through nginx transcribes real speech', async (t) => {
    const { wsProxy } = running()
    const pcm = await spokenSentences(SENTENCES)
    const { ws, log, closed } = await openStream(
      `${wsProxy}/v1/listen?${RAW}`,
      ['token', ownerKey],
      FROM.owner,
    )
    assert.equal(log.status, undefined, `upgrade refused: ${JSON.stringify(log.body)}`)
    assert.ok(log.headers?.['dg-request-id'], 'the 101 came from Earmark, through nginx')
    await sendPcm(ws, pcm, 100)
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    const end = await Promise.race([closed, sleep(60_000).then(() => undefined)])
    assert.ok(end, 'the stream closed within 60 s of CloseStream')
    assert.equal(end.close?.code, 1000)
    const transcript = finals(end)
    const wer = wordErrorRate(SENTENCES.join(' '), transcript)
    t.diagnostic(`through nginx: "${transcript}" (WER ${(wer * 100).toFixed(1)} %)`)
    assert.ok(wer <= 0.35, `word error rate ${wer} on "${transcript}"`)
    assert.ok(
      end.messages.some((m) => m.type === 'Metadata'),
      'the stream ends with its Metadata',
    )
  })

  it('a key deleted through nginx is refused on both nodes at once and its stream through nginx closes', async (t) => {
    const { a, b, proxy, wsProxy } = running()
    const { key, id } = await createKey('deleted through nginx')
    for (const node of [a, b]) {
      assert.equal((await call(node.url, 'GET', '/v1/auth/token', { auth: `Token ${key}` })).status, 200)
    }
    const { log, closedAt, stop } = await openHeldStream(`${wsProxy}/v1/listen?${RAW}`, {
      protocols: ['token', key],
    })
    assert.equal(log.status, undefined, `upgrade refused: ${JSON.stringify(log.body)}`)
    try {
      await sleep(300)
      const deleted = await call(proxy, 'DELETE', `/v1/projects/${projectId}/keys/${id}`, {
        auth: `Token ${ownerKey}`,
      })
      assert.equal(deleted.status, 200, JSON.stringify(deleted.body))
      const deletedAt = Date.now()
      // The delete was acknowledged: every node refuses the key from its next request (docs/store.md).
      for (const [name, node] of [
        ['A', a],
        ['B', b],
      ] as const) {
        const res = await call(node.url, 'GET', '/v1/auth/token', {
          auth: `Token ${key}`,
          from: FROM.checker,
        })
        assert.equal(
          res.status,
          401,
          `node ${name} still admits the deleted key: ${JSON.stringify(res.body)}`,
        )
        assert.equal(res.body.err_code, 'INVALID_AUTH')
      }
      const at = await Promise.race([closedAt, sleep(5000).then(() => Number.NaN)])
      assert.ok(!Number.isNaN(at), 'the stream through nginx is still open 5 s after the delete')
      t.diagnostic(`key deleted through nginx → its stream through nginx closed after ${at - deletedAt} ms`)
      assert.deepEqual(log.close, { code: 1008, reason: 'AUTH-0001' })
      assert.ok(at - deletedAt <= 1000, `closed ${at - deletedAt} ms after the delete`)
    } finally {
      stop()
    }
  })

  it("behind nginx the limits see the client's address from X-Forwarded-For, which a client cannot forge", async () => {
    const { a, b, proxy, wsProxy } = running()
    const { key } = await createKey('bound to one address', { allowed_ips: [`${FROM.bound}/32`] })
    const token = `Token ${key}`

    // From the bound address, through nginx, on both nodes.
    const admitted = []
    for (let i = 0; i < 4; i++)
      admitted.push(await call(proxy, 'GET', '/v1/auth/token', { auth: token, from: FROM.bound }))
    assert.deepEqual(
      admitted.map((r) => r.status),
      [200, 200, 200, 200],
    )
    const nodes = new Set(await Promise.all(admitted.map((r) => servedBy(r.requestId))))
    assert.deepEqual([...nodes].sort(), ['A', 'B'])

    // From another address: refused, even when it claims to be the bound one. nginx appends the real
    // address; Earmark believes only the entry its trusted proxy added.
    const stranger = await call(proxy, 'GET', '/v1/auth/token', { auth: token, from: FROM.stranger })
    assert.equal(stranger.status, 403, JSON.stringify(stranger.body))
    assert.equal(stranger.body.err_code, 'FORBIDDEN')
    const forged = await call(proxy, 'GET', '/v1/auth/token', {
      auth: token,
      from: FROM.stranger,
      headers: { 'x-forwarded-for': FROM.bound },
    })
    assert.equal(forged.status, 403, 'a forged X-Forwarded-For through nginx is not believed')
    for (const node of [a, b]) {
      // Straight to a node, the client is not a trusted proxy: its header is ignored.
      const direct = await call(node.url, 'GET', '/v1/auth/token', {
        auth: token,
        from: FROM.stranger,
        headers: { 'x-forwarded-for': FROM.bound },
      })
      assert.equal(direct.status, 403, 'a forged X-Forwarded-For straight to a node is not believed')
    }

    // WebSocket upgrades through nginx follow the same rule.
    const refused = await openStream(`${wsProxy}/v1/listen?${RAW}`, ['token', key], FROM.stranger)
    assert.equal(refused.log.status, 403, 'an upgrade from another address is refused')
    const open = await openStream(`${wsProxy}/v1/listen?${RAW}`, ['token', key], FROM.bound)
    assert.equal(open.log.status, undefined, `upgrade refused: ${JSON.stringify(open.log.body)}`)
    open.ws.send(JSON.stringify({ type: 'CloseStream' }))
    await open.closed

    // Failed authentications are counted per client address, not per proxy: a guessing address is backed
    // off, on both nodes, while the other clients of the same nginx are not.
    for (let i = 0; i < 3; i++) {
      const wrong = `emk_not_a_real_key_${randomUUID().replaceAll('-', '')}`
      // Not a key, but shaped like one: no log line may hold it either.
      recordSecrets(wrong)
      const guess = await call(proxy, 'GET', '/v1/auth/token', { auth: `Token ${wrong}`, from: FROM.guesser })
      assert.equal(guess.status, 401)
    }
    const deadline = Date.now() + 2000
    let backedOff: Answer | undefined
    while (!backedOff && Date.now() < deadline) {
      const res = await call(proxy, 'GET', '/v1/auth/token', {
        auth: `Token ${ownerKey}`,
        from: FROM.guesser,
      })
      if (res.status === 429) backedOff = res
      else await sleep(50)
    }
    assert.ok(backedOff, 'the guessing address is backed off, even with a good key')
    assert.ok(Number(backedOff.headers['retry-after']) >= 1, 'its 429 says when to retry')
    const again = [
      await call(proxy, 'GET', '/v1/auth/token', { auth: `Token ${ownerKey}`, from: FROM.guesser }),
      await call(proxy, 'GET', '/v1/auth/token', { auth: `Token ${ownerKey}`, from: FROM.guesser }),
    ]
    assert.deepEqual(
      again.map((r) => r.status),
      [429, 429],
    )
    const refusedOn = new Set(await Promise.all(again.map((r) => servedBy(r.requestId))))
    assert.deepEqual([...refusedOn].sort(), ['A', 'B'], 'both nodes refuse it (the count is in Redis)')
    for (let i = 0; i < 2; i++) {
      const other = await call(proxy, 'GET', '/v1/auth/token', {
        auth: `Token ${ownerKey}`,
        from: FROM.owner,
      })
      assert.equal(other.status, 200, 'another client behind the same nginx is still admitted')
    }
  })
})
