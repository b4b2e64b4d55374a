import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it, type TestContext } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { runCli } from '../../src/cli/cli.js'
import { closeRedisClient, createRedisClient, type RedisClient } from '../../src/store/redis/index.js'
import { openHeldStream } from '../helpers/live-server.js'
import { removeDir, type ServerProcess, startServerProcess, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The CLI announces what it revokes on the Redis revocation bus (docs/redis.md): a running `earmark serve`
// process listening on the same Redis closes the streams at once, not at its next store poll. The real Redis
// at 127.0.0.1:6379, under a key prefix of this run's own; the CLI runs in this process on the server's data
// directory.

const REDIS_URL = process.env.EARMARK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** The promise for revocations (docs/revocation.md): a revoked credential's streams close within this. */
const WITHIN_MS = 1000
const RAW = 'encoding=linear16&sample_rate=16000'

async function call(url: string, method: string, path: string, auth: string, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('revocations made with the CLI reach a running node through Redis', { timeout: 120_000 }, () => {
  const prefix = `earmark-test:${randomUUID()}:`
  const ownerKey = `emk_cli_redis_test_${randomUUID().replaceAll('-', '')}_owner`
  const dir = tempDataDir()
  const redisEnv = { EARMARK_REDIS_URL: REDIS_URL, EARMARK_REDIS_PREFIX: prefix }
  let node: ServerProcess
  let projectId: string
  let listener: RedisClient
  /** Revocation events heard on the channel, with when they arrived. */
  const heard: { at: number; event: Record<string, unknown> }[] = []

  before(async () => {
    recordSecrets(ownerKey)
    node = await startServerProcess({
      dataDir: dir,
      bootstrapKey: ownerKey,
      env: { ...redisEnv, EARMARK_CAPACITY: '4' },
    })
    const projects = await call(node.url, 'GET', '/v1/projects', `Token ${ownerKey}`)
    projectId = String((projects.body.projects as { project_id: string }[])[0]?.project_id)
    listener = createRedisClient(REDIS_URL, { offlineQueue: true })
    listener.on('message', (_channel: string, message: string) =>
      heard.push({
        at: Date.now(),
        event: (JSON.parse(message) as { event: Record<string, unknown> }).event,
      }),
    )
    await listener.subscribe(`${prefix}revocations`)
  })

  after(async () => {
    await node?.stop()
    if (listener) await closeRedisClient(listener)
    removeDir(dir)
  })

  /** Runs the CLI on the node's data directory; `env` defaults to the node's Redis. */
  const earmark = async (args: string[], env: Record<string, string> = redisEnv) => {
    let out = ''
    let err = ''
    const started = Date.now()
    const code = await runCli(['--data-dir', dir, ...args], {
      out: (t) => {
        out += t
      },
      err: (t) => {
        err += t
      },
      env,
    })
    return { code, out, err, started, ended: Date.now() }
  }

  const createKey = async (comment: string) => {
    const res = await call(node.url, 'POST', `/v1/projects/${projectId}/keys`, `Token ${ownerKey}`, {
      comment,
      scopes: ['member'],
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.key as string)
    return { key: res.body.key as string, id: res.body.api_key_id as string }
  }

  /** Opens a live stream on the node, runs the CLI, and measures when the stream closed. */
  const revokeWhileStreaming = async (
    t: TestContext,
    protocols: string[],
    args: string[],
    expectedClose: { code: number; reason: string },
  ) => {
    const stream = await openHeldStream(`${node.url.replace('http', 'ws')}/v1/listen?${RAW}`, { protocols })
    const { log, closedAt } = stream
    assert.equal(log.status, undefined, `upgrade refused: ${JSON.stringify(log.body)}`)
    try {
      await sleep(300)
      const heardBefore = heard.length
      const run = await earmark(args)
      assert.equal(run.code, 0, run.err)
      assert.equal(run.err, '', 'the CLI warned of nothing')
      const at = await Promise.race([closedAt, sleep(5000).then(() => Number.NaN)])
      assert.ok(!Number.isNaN(at), `the stream is still open 5 s after \`earmark ${args.join(' ')}\``)
      assert.deepEqual(log.close, expectedClose)
      const message = heard.slice(heardBefore)[0]
      assert.ok(message, 'the CLI published on the revocation channel')
      const figure =
        `earmark ${args[0]} ${args[1]}: the command took ${run.ended - run.started} ms; the stream closed ` +
        `${at - message.at} ms after the announcement reached Redis, ${at - run.ended} ms after the command returned`
      t.diagnostic(figure)
      assert.ok(at - run.ended <= WITHIN_MS, figure)
      return { run, event: message.event }
    } finally {
      stream.stop()
    }
  }

  for (const [command, reason] of [
    ['delete', 'deleted'],
    ['disable', 'disabled'],
  ] as const) {
    it(`\`earmark keys ${command}\` closes the key's stream on the node, announced as key-revoked`, async (t) => {
      const { key, id } = await createKey(`${reason} by the CLI`)
      const { event } = await revokeWhileStreaming(t, ['token', key], ['keys', command, id], {
        code: 1008,
        reason: 'AUTH-0001',
      })
      assert.deepEqual(event, { type: 'key-revoked', projectId, keyId: id, reason })
      assert.equal((await call(node.url, 'GET', '/v1/auth/token', `Token ${key}`)).status, 401)
    })
  }

  it('`earmark keys reroll --grace-period 0` closes the stream opened with the old secret', async (t) => {
    const { key, id } = await createKey('rerolled by the CLI')
    const { run, event } = await revokeWhileStreaming(
      t,
      ['token', key],
      ['keys', 'reroll', id, '--grace-period', '0'],
      { code: 1008, reason: 'AUTH-0002' },
    )
    recordSecrets((JSON.parse(run.out) as { key: string }).key)
    assert.deepEqual(event, { type: 'credentials-changed' })
  })

  it('`earmark signing-keys retire` closes the stream of a token it signed', async (t) => {
    const grant = await call(node.url, 'POST', '/v1/auth/grant', `Token ${ownerKey}`, { ttl_seconds: 60 })
    assert.equal(grant.status, 200, JSON.stringify(grant.body))
    const token = grant.body.access_token as string
    recordSecrets(token)
    const list = await earmark(['signing-keys', 'list'])
    const kid = (JSON.parse(list.out) as { kid: string; current: boolean }[]).find((k) => k.current)?.kid
    assert.ok(kid)
    const { event } = await revokeWhileStreaming(t, ['bearer', token], ['signing-keys', 'retire', kid], {
      code: 1008,
      reason: 'AUTH-0001',
    })
    assert.deepEqual(event, { type: 'signing-key-retired', kid })
  })

  it('with Redis unreachable the change is still made, and the CLI says the announcement failed', async () => {
    const { key, id } = await createKey('deleted while Redis is away')
    const run = await earmark(['keys', 'delete', id], {
      EARMARK_REDIS_URL: 'redis://127.0.0.1:1',
      EARMARK_REDIS_PREFIX: prefix,
    })
    assert.equal(run.code, 0, run.err)
    assert.match(run.err, /Redis could not be reached/)
    assert.ok(run.ended - run.started < 5000, `the command took ${run.ended - run.started} ms`)
    // The node sees the write in the store anyway.
    assert.equal((await call(node.url, 'GET', '/v1/auth/token', `Token ${key}`)).status, 401)
  })
})
