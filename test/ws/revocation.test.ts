import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import type WebSocket from 'ws'
import { loadConfig } from '../../src/config/index.js'
import { createEarmark, type Earmark } from '../../src/main.js'
import { eventually } from '../helpers/listen-e2e.js'
import { openSocket, type StreamLog } from '../helpers/live-server.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets, recordSecretsOf, testLogDestination } from '../helpers/test-logs.js'

// Revocation reaches live streams (docs/revocation.md): a real server over loopback with real PocketSphinx and
// a real SQLite file, shared with real `earmark` CLI processes where another process does the revoking.

const ROOT = new URL('../..', import.meta.url).pathname
const RAW = 'encoding=linear16&sample_rate=16000'
/** The promise: every stream of a revoked credential is closed within this long. */
const WITHIN_MS = 1000

const run = promisify(execFile)

interface Stream {
  ws: WebSocket
  log: StreamLog
  requestId: string
  /** When the close arrived (Date.now()). */
  closedAt: Promise<number>
  stop(): void
}

describe('revocation reaches live streams within a second', { timeout: 120_000 }, () => {
  const dir = tempDataDir()
  const ownerKey = `emk_revocation_test_${Math.random().toString(16).slice(2)}_owner`
  let earmark: Earmark
  let url: string
  let wsUrl: string
  let projectId: string
  const open: Stream[] = []

  before(async () => {
    recordSecrets(ownerKey)
    const logTo = testLogDestination('revocation')
    const config = loadConfig({
      EARMARK_DATA_DIR: dir,
      EARMARK_BOOTSTRAP_KEY: ownerKey,
      EARMARK_LOG_LEVEL: logTo ? 'debug' : 'silent',
      EARMARK_CAPACITY: '8',
    })
    earmark = await createEarmark(config, undefined, logTo)
    recordSecretsOf(earmark.app)
    await earmark.app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = earmark.app.server.address() as AddressInfo
    url = `http://127.0.0.1:${port}`
    wsUrl = `ws://127.0.0.1:${port}`
    projectId = earmark.bootstrap?.project.id ?? ''
  })

  after(async () => {
    for (const s of open) s.stop()
    await earmark.close()
    removeDir(dir)
  })

  const api = async (method: string, path: string, key = ownerKey, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Token ${key}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  const createKey = async (comment: string, extra: Record<string, unknown> = {}, key = ownerKey) => {
    const res = await api('POST', `/v1/projects/${projectId}/keys`, key, {
      comment,
      scopes: ['member'],
      ...extra,
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.key as string)
    return { key: res.body.key as string, id: res.body.api_key_id as string, body: res.body }
  }

  const grant = async (key: string) => {
    const res = await api('POST', '/v1/auth/grant', key, { ttl_seconds: 60 })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.access_token as string)
    return res.body.access_token as string
  }

  /** A live stream that keeps sending silence (a listen) or stays quiet (a speak), so it only ends if closed. */
  const stream = async (
    protocols: string[],
    path: '/v1/listen' | '/v1/speak' = '/v1/listen',
  ): Promise<Stream> => {
    const query = path === '/v1/listen' ? `?${RAW}` : ''
    const { ws, log } = await openSocket(`${wsUrl}${path}${query}`, { protocols })
    assert.equal(log.status, undefined, `upgrade refused: ${JSON.stringify(log.body)}`)
    const closedAt = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())))
    const timer =
      path === '/v1/listen'
        ? setInterval(() => {
            if (ws.readyState === ws.OPEN) ws.send(Buffer.alloc(3200))
          }, 100)
        : setInterval(() => {
            if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'Flush' }))
          }, 2000)
    void closedAt.then(() => clearInterval(timer))
    const s: Stream = {
      ws,
      log,
      requestId: String(log.headers?.['dg-request-id']),
      closedAt,
      stop: () => {
        clearInterval(timer)
        ws.terminate()
      },
    }
    open.push(s)
    return s
  }

  const stillOpen = (s: Stream) => s.ws.readyState === s.ws.OPEN

  /** Waits for the close; returns how long after `since` it came, and asserts the code and reason. */
  const closedWithin = async (s: Stream, since: number, reason: string, what: string) => {
    const at = await Promise.race([
      s.closedAt,
      new Promise<number>((resolve) => setTimeout(() => resolve(Number.NaN), 5000)),
    ])
    assert.ok(!Number.isNaN(at), `${what}: still open 5 s later`)
    const ms = at - since
    assert.deepEqual(s.log.close, { code: 1008, reason }, what)
    assert.ok(ms <= WITHIN_MS, `${what}: closed after ${ms} ms`)
    return ms
  }

  /** The stream's usage record, once its close is recorded: its code, and its message when that is a revocation's. */
  const usageCode = async (s: Stream) =>
    eventually(
      async () => {
        const res = await api('GET', `/v1/projects/${projectId}/requests/${s.requestId}`)
        const response = res.body.response as { code?: number; message?: string } | undefined
        if (typeof response?.code !== 'number') return undefined
        // A revocation is metered with its reason, not as if the client had closed.
        if (response.code === 1008) assert.match(response.message ?? '', /^AUTH-000[12]$/)
        return response.code
      },
      5000,
      `usage record of ${s.requestId}`,
    )

  const idle = () =>
    eventually(
      async () => (earmark.engine.inUse() === 0 ? true : undefined),
      5000,
      'every engine slot released',
    )

  it('deleting a key through the API closes its streams and its tokens’ streams, listen and speak, and no other', async (t) => {
    const doomed = await createKey('doomed')
    const bystander = await createKey('bystander')
    const token = await grant(doomed.key)
    const byKey = await stream(['token', doomed.key])
    const byToken = await stream(['bearer', token])
    const speak = await stream(['token', doomed.key], '/v1/speak')
    const other = await stream(['token', bystander.key])
    await new Promise((r) => setTimeout(r, 300))

    const deletedAt = Date.now()
    const res = await api('DELETE', `/v1/projects/${projectId}/keys/${doomed.id}`)
    assert.equal(res.status, 200)
    const times = [
      await closedWithin(byKey, deletedAt, 'AUTH-0001', 'stream opened with the key'),
      await closedWithin(byToken, deletedAt, 'AUTH-0001', 'stream opened with a token it minted'),
      await closedWithin(speak, deletedAt, 'AUTH-0001', 'speak stream opened with the key'),
    ]
    t.diagnostic(`API delete → close: ${times.join(', ')} ms (listen by key, listen by token, speak by key)`)
    assert.ok(stillOpen(other), 'a stream of another key stays open')

    // Tokens it minted are refused at once.
    const again = await openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['bearer', token] })
    assert.equal(again.log.status, 401)
    assert.equal(await usageCode(byKey), 1008)
    assert.equal(await usageCode(byToken), 1008)
    assert.equal(await usageCode(speak), 1008)
    other.stop()
    await idle()
  })

  it('a key reaching its expiry closes its streams and its tokens’ streams with AUTH-0002', async (t) => {
    const short = await createKey('short-lived', { time_to_live_in_seconds: 2 })
    const expiresAt = Date.parse(String(short.body.expiration_date))
    const token = await grant(short.key)
    const byKey = await stream(['token', short.key])
    const byToken = await stream(['bearer', token])
    const times = [
      await closedWithin(byKey, expiresAt, 'AUTH-0002', 'stream opened with the key'),
      await closedWithin(byToken, expiresAt, 'AUTH-0002', 'stream opened with a token it minted'),
    ]
    t.diagnostic(`key expiry → close: ${times.join(', ')} ms after the expiration date`)
    assert.equal(await usageCode(byKey), 1008)
    assert.equal(await usageCode(byToken), 1008)
    await idle()
  })

  it('`earmark keys delete` in another process closes the streams on the running server', async (t) => {
    const doomed = await createKey('deleted by the cli')
    const bystander = await createKey('kept')
    const token = await grant(doomed.key)
    const byKey = await stream(['token', doomed.key])
    const byToken = await stream(['bearer', token])
    const other = await stream(['token', bystander.key])
    const spawnedAt = Date.now()
    await run(process.execPath, ['bin/earmark.js', '--data-dir', dir, 'keys', 'delete', doomed.id], {
      cwd: ROOT,
    })
    const deletedAt = Date.now()
    const times = [
      await closedWithin(byKey, deletedAt, 'AUTH-0001', 'stream opened with the key'),
      await closedWithin(byToken, deletedAt, 'AUTH-0001', 'stream opened with a token it minted'),
    ]
    // The CLI commits, then waits before it acknowledges and exits (see the store), so a close may come first.
    t.diagnostic(
      `CLI delete → close: ${times.join(', ')} ms after the CLI exited (${(await byKey.closedAt) - spawnedAt} ms after it was started)`,
    )
    assert.ok(stillOpen(other), 'a stream of another key stays open')
    assert.equal(await usageCode(byToken), 1008)
    other.stop()
    await idle()
  })

  it('retiring a signing key refuses its tokens at once and closes their streams; a new key signs', async (t) => {
    const member = await createKey('signer')
    const token = await grant(member.key)
    const byToken = await stream(['bearer', token])
    const byKey = await stream(['token', member.key])
    const before = await api('GET', '/v1/auth/signing-keys')
    const keys = before.body.signing_keys as { kid: string; current: boolean }[]
    const current = keys.find((k) => k.current)?.kid
    assert.ok(current)
    const retiredAt = Date.now()
    const res = await api('DELETE', `/v1/auth/signing-keys/${current}`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const ms = await closedWithin(byToken, retiredAt, 'AUTH-0001', 'stream opened with a token it signed')
    t.diagnostic(`signing key retired (API) → close: ${ms} ms`)
    assert.ok(stillOpen(byKey), 'a stream opened with the key itself stays open')
    assert.notEqual(res.body.current_kid, current, 'a new key is current')
    const twice = await api('DELETE', `/v1/auth/signing-keys/${current}`)
    assert.equal(twice.status, 404)
    assert.equal(twice.body.err_code, 'SIGNING_KEY_NOT_FOUND')

    // The token is refused at once, over REST and at the upgrade; a new token works.
    assert.equal(
      (await fetch(`${url}/v1/auth/token`, { headers: { authorization: `Bearer ${token}` } })).status,
      401,
    )
    const again = await openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['bearer', token] })
    assert.equal(again.log.status, 401)
    const fresh = await stream(['bearer', await grant(member.key)])

    // Retired by the CLI in another process: the stream of a token it signed closes too.
    await run(
      process.execPath,
      ['bin/earmark.js', '--data-dir', dir, 'signing-keys', 'retire', String(res.body.current_kid)],
      {
        cwd: ROOT,
      },
    )
    const cliAt = Date.now()
    const cliMs = await closedWithin(
      fresh,
      cliAt,
      'AUTH-0001',
      'stream of a token signed by a key the CLI retired',
    )
    t.diagnostic(`signing key retired (CLI, another process) → close: ${cliMs} ms`)
    assert.ok(stillOpen(byKey))
    byKey.stop()
    await idle()
  })

  it('`earmark rotate-signing-key` in another process: the running server signs with the new key within a second', async () => {
    const member = await createKey('rotation')
    const { stdout } = await run(
      process.execPath,
      ['bin/earmark.js', '--data-dir', dir, 'rotate-signing-key'],
      {
        cwd: ROOT,
      },
    )
    const kid = (JSON.parse(stdout) as { kid: string }).kid
    const kidOf = (jwt: string) =>
      (JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }).kid
    const signedWith = await eventually(
      async () => {
        const k = kidOf(await grant(member.key))
        return k === kid ? k : undefined
      },
      WITHIN_MS,
      'a grant signed with the rotated key',
    )
    assert.equal(signedWith, kid)
  })

  it('lowering a member’s role takes admin powers away at once; streams keep usage:write, which every role holds', async () => {
    const add = await run(
      process.execPath,
      [
        'bin/earmark.js',
        '--data-dir',
        dir,
        'members',
        'add',
        '--email',
        'lowered@example.com',
        '--role',
        'admin',
      ],
      { cwd: ROOT },
    )
    const memberId = (JSON.parse(add.stdout) as { member_id: string }).member_id
    const { stdout } = await run(
      process.execPath,
      [
        'bin/earmark.js',
        '--data-dir',
        dir,
        'keys',
        'create',
        '--member',
        'lowered@example.com',
        '--scopes',
        'admin',
      ],
      { cwd: ROOT },
    )
    const adminKey = (JSON.parse(stdout) as { key: string }).key
    recordSecrets(adminKey)
    const s = await stream(['token', adminKey])
    assert.equal((await api('GET', `/v1/projects/${projectId}/members`, adminKey)).status, 200)
    const put = await api('PUT', `/v1/projects/${projectId}/members/${memberId}/scopes`, ownerKey, {
      scope: 'member',
    })
    assert.equal(put.status, 200)
    assert.equal((await api('GET', `/v1/projects/${projectId}/members`, adminKey)).status, 403)
    await new Promise((r) => setTimeout(r, WITHIN_MS))
    assert.ok(stillOpen(s), 'the stream keeps the usage:write the new role still grants')
    s.stop()
    await idle()
  })
})
