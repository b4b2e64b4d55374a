import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type WebSocket from 'ws'
import { createAuthenticator } from '../../src/auth/index.js'
import { createRevocationBus, createStreamGuard, type RevocationClose } from '../../src/revocation/index.js'
import { bootstrapProject, createTestEarmark, makeKey, type TestEarmark } from '../helpers/earmark.js'
import { type LiveServer, openSocket, type StreamLog, startLiveServer } from '../helpers/live-server.js'
import { recordSecrets } from '../helpers/test-logs.js'

// A live stream opened with a key's secret outlives a reroll only for the grace period (docs/audit.md,
// "Key reroll"; docs/revocation.md): first the guard's rules with an injected clock, then a real server.

const RAW = 'encoding=linear16&sample_rate=16000'

describe('the stream guard after a reroll (injected clock)', () => {
  let em: TestEarmark
  const bus = createRevocationBus()

  before(async () => {
    em = await createTestEarmark()
  })
  after(() => em.close())

  it('closes a stream of the rerolled secret when the grace ends, not before, and leaves the new secret’s alone', async () => {
    const { services, clock } = em
    const fx = await bootstrapProject(services)
    const auth = createAuthenticator(services)
    const guard = createStreamGuard({ store: services.store, clock, bus })
    try {
      const key = await makeKey(services, fx.owner, { scopes: ['member'] })
      const closes: Record<string, RevocationClose> = {}
      const watch = async (name: string, secret: string) =>
        guard.watch(await auth.authenticate('token', secret), (c) => {
          closes[name] = c
        })
      await watch('before reroll', key.secret)
      const grant = services.grants.mint({
        projectId: fx.projectId,
        accessor: key.id,
        ttlSeconds: 60,
        notAfterMs: null,
      })
      guard.watch(await auth.authenticate('bearer', grant.token), (c) => {
        closes.token = c
      })
      await new Promise((r) => setTimeout(r, 20))

      const res = await em.app.inject({
        method: 'POST',
        url: `/v1/projects/${fx.projectId}/keys/${key.id}/reroll`,
        headers: { authorization: `Token ${fx.ownerKey}` },
        payload: { grace_period_seconds: 30 },
      })
      assert.equal(res.statusCode, 200)
      const fresh = String(res.json().key)
      recordSecrets(fresh)
      await watch('old secret in its grace', key.secret)
      await watch('new secret', fresh)
      bus.publish({ type: 'credentials-changed' })
      await new Promise((r) => setTimeout(r, 20))
      assert.deepEqual(closes, {}, 'nothing closes during the grace period')

      clock.advance(30_000)
      bus.publish({ type: 'credentials-changed' })
      await new Promise((r) => setTimeout(r, 20))
      assert.deepEqual(closes, {
        'before reroll': { code: 1008, reason: 'AUTH-0002' },
        'old secret in its grace': { code: 1008, reason: 'AUTH-0002' },
      })
      assert.equal(guard.watching, 2, 'the new secret’s stream and the token’s stream stay open')
    } finally {
      guard.close()
    }
  })
})

describe('a rerolled secret’s live streams on a real server', { timeout: 60_000 }, () => {
  let srv: LiveServer
  const sockets: WebSocket[] = []

  before(async () => {
    // Three streams at once.
    srv = await startLiveServer({ EARMARK_CAPACITY: '4' })
  })
  after(async () => {
    for (const ws of sockets) ws.terminate()
    await srv.close()
  })

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return (await res.json()) as Record<string, unknown>
  }

  /** A live stream that keeps sending silence, so it ends only when the server closes it. */
  const stream = async (secret: string) => {
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', secret],
    })
    sockets.push(ws)
    const timer = setInterval(() => ws.readyState === ws.OPEN && ws.send(Buffer.alloc(3200)), 100)
    const closedAt = closed.then((l: StreamLog) => {
      clearInterval(timer)
      return { at: Date.now(), close: l.close }
    })
    return { ws, log, closedAt }
  }

  it('closes the streams of the old secret with AUTH-0002 when the grace ends, and refuses it after', async (t) => {
    const created = await api('POST', `/v1/projects/${srv.projectId}/keys`, {
      comment: 'rolled',
      scopes: ['member'],
    })
    const oldSecret = String(created.key)
    recordSecrets(oldSecret)
    const before = await stream(oldSecret)
    assert.equal(before.log.status, undefined, 'opened before the reroll')

    const rolled = await api('POST', `/v1/projects/${srv.projectId}/keys/${created.api_key_id}/reroll`, {
      grace_period_seconds: 2,
    })
    const newSecret = String(rolled.key)
    recordSecrets(newSecret)
    const graceEnds = Date.parse(String(rolled.previous_key_expiration_date))
    const during = await stream(oldSecret)
    assert.equal(during.log.status, undefined, 'the old secret still opens a stream during the grace')
    const fresh = await stream(newSecret)
    assert.equal(fresh.log.status, undefined)

    const times = []
    for (const [what, s] of [
      ['opened before the reroll', before],
      ['opened during the grace', during],
    ] as const) {
      const { at, close } = await Promise.race([
        s.closedAt,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: still open`)), 6000)),
      ])
      assert.deepEqual(close, { code: 1008, reason: 'AUTH-0002' }, what)
      const late = at - graceEnds
      assert.ok(late >= -50 && late <= 1000, `${what}: closed ${late} ms after the grace ended`)
      times.push(late)
    }
    t.diagnostic(`grace end → close: ${times.join(', ')} ms (opened before the reroll, during the grace)`)
    assert.equal(fresh.ws.readyState, fresh.ws.OPEN, 'the new secret’s stream stays open')
    const refused = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', oldSecret] })
    assert.equal(refused.log.status, 401, 'the old secret is refused after the grace')
    fresh.ws.close()
  })
})
