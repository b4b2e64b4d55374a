import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createAuditLog } from '../../src/audit/index.js'
import { createGrants, createManualClock, type ManualClock } from '../../src/auth/index.js'
import { createKeySweeper, type Services } from '../../src/projects/index.js'
import { createRevocationBus, type RevocationEvent } from '../../src/revocation/index.js'
import type { Member } from '../../src/store/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { bootstrapProject, makeKey } from '../helpers/earmark.js'
import { eventually } from '../helpers/listen-e2e.js'
import { type LiveServer, openSocket, startLiveServer } from '../helpers/live-server.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The expired-key sweep (docs/audit.md, "Expired keys are swept"), driven by an injected clock: each expiry recorded
// once, revoked on the bus, the key deleted once its retention is over.

const MINUTE = 60_000
const DAY = 86_400_000

async function services(path: string, clock: ManualClock): Promise<Services> {
  const store = createSqliteStore({ path })
  const grants = await createGrants({ store, clock })
  return { store, clock, grants, audit: createAuditLog({ store, clock }), revocations: createRevocationBus() }
}

describe('the expired-key sweeper', () => {
  const dir = tempDataDir()
  const clock = createManualClock()
  let s: Services
  let owner: Member
  let projectId: string
  const published: RevocationEvent[] = []

  before(async () => {
    s = await services(join(dir, 'sweep.sqlite'), clock)
    const fx = await bootstrapProject(s)
    owner = fx.owner
    projectId = fx.projectId
    s.revocations?.subscribe((e) => published.push(e))
  })
  after(async () => {
    await s.audit?.close()
    await s.store.close()
    removeDir(dir)
  })

  const events = async (keyId: string) => {
    await s.audit?.flush()
    return (await s.store.listAuditEvents(projectId, { keyId })).reverse()
  }

  it('records an expiry once, revokes it on the bus, and deletes the key after the retention', async () => {
    const sweeper = createKeySweeper({ services: s, retentionSeconds: 7 * 86_400 })
    const doomed = await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 10 * MINUTE })
    const lasting = await makeKey(s, owner, { scopes: ['member'] })
    const later = await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 30 * DAY })
    published.length = 0

    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 0 }, 'nothing has expired yet')
    clock.advance(10 * MINUTE)
    assert.deepEqual(await sweeper.sweep(), { expired: 1, swept: 0 })
    assert.deepEqual(published, [{ type: 'key-revoked', projectId, keyId: doomed.id, reason: 'expired' }])
    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 0 }, 'the expiry is recorded once')
    const expiredAt = new Date(clock.now()).toISOString()
    const [expired, ...rest] = await events(doomed.id)
    assert.equal(rest.length, 0)
    assert.equal(expired?.type, 'key.expired')
    assert.equal(expired?.keyId, doomed.id)
    assert.equal(expired?.actorKeyId, null)
    assert.deepEqual(expired?.detail, { expired_at: expiredAt, via: 'sweeper' })
    assert.ok(
      (await s.store.listKeys(projectId)).some((k) => k.id === doomed.id),
      'still listed as expired',
    )

    clock.advance(7 * DAY - 1)
    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 0 }, 'kept for the whole retention')
    clock.advance(1)
    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 1 })
    const swept = (await events(doomed.id)).at(-1)
    assert.equal(swept?.type, 'key.swept')
    assert.deepEqual(swept?.detail, { expired_at: expiredAt, retention_seconds: 7 * 86_400, via: 'sweeper' })
    assert.equal((await s.store.getKey(projectId, doomed.id))?.deletedAt, clock.now())
    assert.ok(!(await s.store.listKeys(projectId)).some((k) => k.id === doomed.id), 'gone from the list')
    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 0 })
    assert.equal(published.length, 1, 'one revocation in all')
    for (const k of [lasting, later]) assert.deepEqual(await events(k.id), [], 'live keys are left alone')
  })

  it('with a retention of 0, deletes a key as soon as its expiry is noticed, after recording it', async () => {
    const sweeper = createKeySweeper({ services: s, retentionSeconds: 0 })
    const key = await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 1000 })
    clock.advance(1000)
    assert.deepEqual(await sweeper.sweep(), { expired: 1, swept: 1 })
    assert.deepEqual(
      (await events(key.id)).map((e) => e.type),
      ['key.expired', 'key.swept'],
    )
  })

  it('reaches a newly expired key behind more retained ones than one batch holds', async () => {
    const sweeper = createKeySweeper({ services: s, retentionSeconds: 86_400, batch: 2 })
    const retained = []
    for (let i = 0; i < 5; i++)
      retained.push(await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 1000 + i }))
    clock.advance(MINUTE)
    assert.deepEqual(await sweeper.sweep(), { expired: 5, swept: 0 })
    const fresh = await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 1000 })
    clock.advance(MINUTE)
    assert.deepEqual(await sweeper.sweep(), { expired: 1, swept: 0 }, 'the sixth, behind five retained')
    assert.deepEqual(
      (await events(fresh.id)).map((e) => e.type),
      ['key.expired'],
    )
    clock.advance(DAY)
    assert.deepEqual(await sweeper.sweep(), { expired: 0, swept: 6 })
  })

  it('records an expiry once when two sweepers share one store, and passes asked for at once run one after the other', async () => {
    const other = await services(join(dir, 'sweep.sqlite'), clock)
    try {
      const mine = createKeySweeper({ services: s, retentionSeconds: 86_400 })
      const theirs = createKeySweeper({ services: other, retentionSeconds: 86_400 })
      const key = await makeKey(s, owner, { scopes: ['member'], expiresAt: clock.now() + 1000 })
      clock.advance(1000)
      const results = await Promise.all([mine.sweep(), mine.sweep(), theirs.sweep()])
      assert.equal(
        results.reduce((n, r) => n + r.expired, 0),
        1,
      )
      await other.audit?.flush()
      assert.deepEqual(
        (await events(key.id)).map((e) => e.type),
        ['key.expired'],
      )
    } finally {
      await other.audit?.close()
      await other.store.close()
    }
  })
})

describe('the sweeper in a running server', { timeout: 60_000 }, () => {
  const clock = createManualClock(Date.now())
  let srv: LiveServer

  before(async () => {
    // The test runs each pass itself.
    srv = await startLiveServer(
      { EARMARK_KEY_SWEEP_INTERVAL_MS: '0', EARMARK_EXPIRED_KEY_RETENTION_SECONDS: '0' },
      clock,
    )
  })
  after(() => srv.close())

  it('closes the live streams of a key the sweep finds expired (1008 AUTH-0002), its tokens’ too, and records them', async (t) => {
    const { earmark, projectId } = srv
    const api = async (path: string, key: string, body: unknown) => {
      const res = await fetch(`${srv.url}${path}`, {
        method: 'POST',
        headers: { authorization: `Token ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      return (await res.json()) as Record<string, string>
    }
    const created = await api(`/v1/projects/${projectId}/keys`, srv.ownerKey, {
      comment: 'expiring',
      scopes: ['member'],
      time_to_live_in_seconds: 600,
    })
    const key = String(created.key)
    const token = String((await api('/v1/auth/grant', key, { ttl_seconds: 3600 })).access_token)
    recordSecrets(key, token)
    const streams = []
    for (const protocols of [
      ['token', key],
      ['bearer', token],
    ]) {
      const opened = await openSocket(`${srv.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`, {
        protocols,
      })
      assert.equal(opened.log.status, undefined, `the ${protocols[0]} stream opened`)
      const { ws } = opened
      const silence = setInterval(() => ws.readyState === ws.OPEN && ws.send(Buffer.alloc(3200)), 100)
      void opened.closed.then(() => clearInterval(silence))
      streams.push(opened)
    }
    try {
      // The guard's own timers are armed for ten real minutes; only the sweep can close the streams now.
      clock.advance(600_000)
      const sweptAt = Date.now()
      assert.deepEqual(await earmark.sweeper.sweep(), { expired: 1, swept: 1 })
      const times = []
      for (const s of streams) {
        const end = await s.closed
        assert.deepEqual(end.close, { code: 1008, reason: 'AUTH-0002' })
        times.push(Date.now() - sweptAt)
      }
      t.diagnostic(`sweep → close: ${times.join(', ')} ms (stream by key, by token)`)
      assert.ok(Math.max(...times) < 1000, `closed ${times.join(', ')} ms after the sweep`)
    } finally {
      for (const s of streams) s.ws.terminate()
    }
    const { events } = await eventually(
      async () => {
        await earmark.services.audit?.flush()
        const events = await earmark.services.store.listAuditEvents(projectId, { keyId: created.api_key_id })
        return events.filter((e) => e.type === 'stream.revoked').length === 2 ? { events } : undefined
      },
      5000,
      'the stream.revoked events',
    )
    const types = events.map((e) => e.type).reverse()
    // The revocation closes the streams before the key is deleted.
    assert.deepEqual(types.slice(0, 3), ['key.created', 'grant.issued', 'key.expired'])
    assert.deepEqual(types.slice(3).sort(), ['key.swept', 'stream.revoked', 'stream.revoked'])
    for (const [i, s] of streams.entries()) {
      const requestId = String(s.log.headers?.['dg-request-id'])
      const revoked = events.find((e) => e.type === 'stream.revoked' && e.requestId === requestId)
      assert.ok(revoked, `the stream.revoked event of stream ${i}`)
      assert.equal(revoked.ip, '127.0.0.1')
      assert.equal(revoked.keyId, created.api_key_id)
      const jti =
        i === 1 ? { jti: JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()).jti } : {}
      assert.deepEqual(revoked.detail, { route: '/v1/listen', code: 1008, reason: 'AUTH-0002', ...jti })
    }
    const text = JSON.stringify(events)
    assert.ok(!text.includes(key) && !text.includes(token), 'no secret in the events')
  })
})
