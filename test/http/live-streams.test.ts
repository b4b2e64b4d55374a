import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { eventually } from '../helpers/listen-e2e.js'
import { finals, type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// The live streams and outstanding grants APIs (docs/live-streams.md), on a real server with real PocketSphinx
// streams over loopback: closing a stream revokes its credential, and the client's socket closes 1008.

const RAW = 'encoding=linear16&sample_rate=16000'

describe('live streams and grants through the API', { timeout: 120_000 }, () => {
  let srv: LiveServer
  const cleanups: (() => void)[] = []

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '4' })
  })
  after(async () => {
    for (const c of cleanups) c()
    await srv.close()
  })

  const api = async (method: string, path: string, key = srv.ownerKey, body?: unknown) => {
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: { authorization: `Token ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }
  const project = () => `/v1/projects/${srv.projectId}`

  /** A live stream kept busy with silence every 100 ms, so only a close from the server ends it. */
  const heldStream = async (protocols: string[]) => {
    const opened = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols })
    const { ws } = opened
    const timer = setInterval(() => {
      if (ws.readyState === ws.OPEN) ws.send(Buffer.alloc(3200))
    }, 100)
    cleanups.push(() => {
      clearInterval(timer)
      ws.terminate()
    })
    void opened.closed.then(() => clearInterval(timer))
    return opened
  }

  const grant = async (endUser: string) => {
    const res = await api('POST', '/v1/auth/grant', srv.ownerKey, { ttl_seconds: 600, end_user: endUser })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const token = res.body.access_token as string
    recordSecrets(token)
    const details = await fetch(`${srv.url}/v1/auth/token`, { headers: { authorization: `Bearer ${token}` } })
    return { token, jti: ((await details.json()) as { jti: string }).jti }
  }

  it('lists a stream opened with a grant token, and closing it revokes the token: 1008 AUTH-0001, then 401', async () => {
    const { token, jti } = await grant('alice')
    const held = await heldStream(['bearer', token])
    assert.equal(held.log.status, undefined, 'the upgrade was admitted')
    const requestId = String(held.log.headers?.['dg-request-id'])

    const listed = await api('GET', `${project()}/streams`)
    assert.equal(listed.status, 200)
    const streams = listed.body.streams as Record<string, unknown>[]
    const mine = streams.find((s) => s.request_id === requestId)
    assert.ok(mine, 'the open stream is listed')
    assert.equal(mine.credential, 'access_token')
    assert.equal(mine.jti, jti)
    assert.equal(mine.end_user, 'alice')
    assert.equal(mine.route, '/v1/listen')

    const grants = await api('GET', `${project()}/grants`)
    const g = (grants.body.grants as Record<string, unknown>[]).find((x) => x.jti === jti)
    assert.ok(g, 'the grant is outstanding')
    assert.equal(g.streams, 1, 'holding one stream')
    assert.equal(g.end_user, 'alice')
    assert.ok((g.expires_in as number) > 590 && (g.expires_in as number) <= 600, `expires_in ${g.expires_in}`)

    const closed = await api('DELETE', `${project()}/streams/${requestId}`)
    assert.equal(closed.status, 200, JSON.stringify(closed.body))
    assert.equal(closed.body.jti, jti)
    const seen = await Promise.race([
      held.closed,
      new Promise<never>((_, no) => setTimeout(() => no(new Error('no close within 1 s')), 1000)),
    ])
    assert.deepEqual(seen.close, { code: 1008, reason: 'AUTH-0001' }, 'the client sees the revocation close')
    const { log } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['bearer', token] })
    assert.equal(log.status, 401, 'the revoked token cannot open another stream')
    assert.equal(log.body?.err_code, 'INVALID_AUTH')
    const after = await api('GET', `${project()}/streams`)
    assert.equal(
      (after.body.streams as { request_id: string }[]).some((s) => s.request_id === requestId),
      false,
      'a closed stream is no longer listed',
    )
    const left = await api('GET', `${project()}/grants`)
    assert.equal(
      (left.body.grants as { jti: string }[]).some((x) => x.jti === jti),
      false,
      'nor its grant',
    )
    const audit = await api('GET', `${project()}/audit?type=grant.revoked`)
    assert.deepEqual(
      (audit.body.events as { detail: { jti: string } }[]).map((e) => e.detail.jti),
      [jti],
      'recorded as grant.revoked',
    )
  })

  it('closes a stream opened with a key by disabling the key', async () => {
    const made = await api('POST', `${project()}/keys`, srv.ownerKey, { comment: 'held', scopes: ['member'] })
    const key = made.body.key as string
    recordSecrets(key)
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['token', key],
    })
    const keepAlive = setInterval(() => ws.readyState === ws.OPEN && ws.send(Buffer.alloc(3200)), 100)
    cleanups.push(() => clearInterval(keepAlive))
    const requestId = String(log.headers?.['dg-request-id'])
    const res = await api('DELETE', `${project()}/streams/${requestId}`)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.api_key_id, made.body.api_key_id)
    assert.deepEqual((await closed).close, { code: 1008, reason: 'AUTH-0001' })
    const state = await api('GET', `${project()}/keys/${made.body.api_key_id}`)
    assert.ok(JSON.stringify(state.body).includes('disabled'), 'the key is disabled')
  })

  it('revokes a grant without a stream; unknown ids get Deepgram-shaped 404s', async () => {
    const { token, jti } = await grant('carol')
    const res = await api('DELETE', `${project()}/grants/${jti}`)
    assert.deepEqual(res.body, { message: 'Grant token revoked.', jti, streams_closed: 0 })
    const refused = await fetch(`${srv.url}/v1/auth/token`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(refused.status, 401, 'the revoked token is refused')
    const again = await api('DELETE', `${project()}/grants/${jti}`)
    assert.equal(again.status, 404)
    assert.equal(again.body.err_code, 'GRANT_NOT_FOUND')
    assert.equal(typeof again.body.request_id, 'string')
    const none = await api('DELETE', `${project()}/streams/00000000-0000-4000-8000-000000000000`)
    assert.equal(none.status, 404)
    assert.equal(none.body.err_code, 'STREAM_NOT_FOUND')
  })

  it('records a refused, recognised credential as auth.refused, a flood as one event', async () => {
    const made = await api('POST', `${project()}/keys`, srv.ownerKey, {
      comment: 'doomed',
      scopes: ['member'],
    })
    const key = made.body.key as string
    recordSecrets(key)
    assert.equal((await api('DELETE', `${project()}/keys/${made.body.api_key_id}`)).status, 200)
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${srv.url}/v1/auth/token`, { headers: { authorization: `Token ${key}` } })
      assert.equal(res.status, 401)
    }
    const audit = await api('GET', `${project()}/audit?type=auth.refused&key_id=${made.body.api_key_id}`)
    const events = audit.body.events as { key_id: string; detail: Record<string, unknown> }[]
    assert.deepEqual(
      events.map((e) => [e.key_id, e.detail.reason]),
      [[made.body.api_key_id, 'key_deleted']],
      'one event in the minute, the others counted for the next',
    )
    assert.doesNotMatch(JSON.stringify(audit.body), new RegExp(key), 'never the secret')
  })

  it('reports usage per minute, per key and per end user, from real streams', async () => {
    const { token } = await grant('dave')
    const pcm = concatPcm(silence(0.3), await speech('the quick brown fox'), silence(0.5))
    const { ws, log, closed } = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, {
      protocols: ['bearer', token],
    })
    await sendPcm(ws, pcm)
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    assert.match(finals(log), /fox/)
    const seconds = pcm.length / 16000
    const byUser = await eventually(
      async () => {
        const r = await api('GET', `${project()}/usage?resolution=minute&group_by=end_user&end_user=dave`)
        const rows = r.body.results as { end_user: string; audio_seconds: number; requests: number }[]
        return rows.length > 0 ? r.body : undefined
      },
      5000,
      'the stream metered',
    )
    assert.deepEqual(byUser.resolution, { units: 'minute', amount: 1 })
    assert.equal(byUser.group_by, 'end_user')
    const rows = byUser.results as {
      end_user: string
      audio_seconds: number
      requests: number
      failed: number
    }[]
    assert.equal(
      rows.reduce((n, r) => n + r.requests, 0),
      1,
    )
    assert.ok(rows.every((r) => r.end_user === 'dave'))
    assert.ok(Math.abs(rows.reduce((n, r) => n + r.audio_seconds, 0) - seconds) < 0.05, JSON.stringify(rows))
    const byKey = await api('GET', `${project()}/usage?resolution=hour&group_by=key`)
    assert.equal(byKey.status, 200)
    assert.ok((byKey.body.results as { accessor: string }[]).every((r) => typeof r.accessor === 'string'))
    const wide = await api('GET', `${project()}/usage?resolution=minute&start=2026-01-01&end=2026-02-01`)
    assert.equal(wide.status, 400, 'a minute range longer than a day is refused')
    assert.equal(wide.body.err_code, 'INVALID_FIELD')
  })
})
