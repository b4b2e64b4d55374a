import assert from 'node:assert/strict'
import { createHmac, randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import WebSocket from 'ws'
import { createManualClock, type ManualClock } from '../../src/auth/index.js'
import type { Earmark } from '../../src/main.js'
import type { AuditEvent } from '../../src/store/index.js'
import { closeRedisClient, createRedisClient } from '../../src/store/redis/index.js'
import { cli } from '../helpers/cli.js'
import { eventually } from '../helpers/listen-e2e.js'
import { type LiveServer, openSocket, type StreamLog, startLiveServer } from '../helpers/live-server.js'
import { deleteKeys, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Suspicious activity (docs/suspicious-activity.md) against the real composition root: a real SQLite file,
// real HTTP requests through `app.inject` (client addresses set per request) and real WebSocket streams over
// loopback, on a manual clock so the windows are moved, not waited for. The whole suite runs twice: with the
// windows in memory, and in Redis (the real one at 127.0.0.1:6379, EARMARK_REDIS_URL with a key prefix of this
// run's own), where every call answers later; `SUSPICIOUS_WINDOWS=memory` or `=redis` runs one.

const RAW = 'encoding=linear16&sample_rate=16000'
const MINUTE = 60_000

const WINDOWS = (process.env.SUSPICIOUS_WINDOWS ?? 'memory,redis').split(',')

for (const windows of WINDOWS)
  describe(`suspicious activity (${windows} windows)`, { timeout: 180_000 }, () => {
    // The data directory is ours, so the CLI can open it while the server runs.
    const dir = tempDataDir()
    const prefix = `earmark-test:${randomUUID()}:`
    const clock: ManualClock = createManualClock(Date.now())
    let server: LiveServer
    let earmark: Earmark
    let wsUrl: string
    let projectId: string
    let ownerKey: string

    before(async () => {
      // The rate limits stay off (the helper's default): they have their own tests (docs/limits.md), and
      // would refuse the scripted bursts before each pattern is complete.
      server = await startLiveServer(
        {
          EARMARK_DATA_DIR: dir,
          ...(windows === 'redis' ? { EARMARK_REDIS_URL: TEST_REDIS_URL, EARMARK_REDIS_PREFIX: prefix } : {}),
        },
        clock,
      )
      ;({ earmark, wsUrl, projectId, ownerKey } = server)
    })

    after(async () => {
      await server.close()
      removeDir(dir)
      if (windows === 'redis') {
        const redis = await redisReady(createRedisClient(TEST_REDIS_URL))
        await deleteKeys(redis, prefix)
        await closeRedisClient(redis)
      }
    })

    /** One request through the real app, from `ip` (default loopback). */
    const call = async (
      method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
      url: string,
      auth: string,
      {
        ip = '127.0.0.1',
        body,
        headers = {},
      }: { ip?: string; body?: unknown; headers?: Record<string, string> } = {},
    ) => {
      const res = await earmark.app.inject({
        method,
        url,
        remoteAddress: ip,
        headers: {
          authorization: auth,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
      })
      return { status: res.statusCode, body: res.json() as Record<string, unknown> }
    }
    const owner = () => `Token ${ownerKey}`

    const newKey = async (comment: string) => {
      const res = await call('POST', `/v1/projects/${projectId}/keys`, owner(), {
        body: { comment, scopes: ['member'] },
      })
      assert.equal(res.status, 200)
      const secret = String(res.body.key)
      recordSecrets(secret)
      return { id: String(res.body.api_key_id), secret, auth: `Token ${secret}` }
    }

    const grant = async (keyAuth: string, endUser?: string, ip = '127.0.0.1') => {
      const res = await call('POST', '/v1/auth/grant', keyAuth, {
        ip,
        body: { ttl_seconds: 600, ...(endUser !== undefined ? { end_user: endUser } : {}) },
      })
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const token = String(res.body.access_token)
      recordSecrets(token)
      return `Bearer ${token}`
    }

    const settings = async (suspicious: Record<string, unknown> | null) => {
      const res = await call('PATCH', `/v1/projects/${projectId}/settings`, owner(), {
        body: { suspicious_activity: suspicious },
      })
      assert.equal(res.status, 200, JSON.stringify(res.body))
    }

    /** The audit events of `type` (an exact type or a prefix ending in a dot), once every evaluation is written. */
    const events = async (type: string, keyId?: string): Promise<AuditEvent[]> => {
      await earmark.suspicious.idle()
      await earmark.services.audit?.flush()
      return earmark.services.store.listAuditEvents(projectId, { type, ...(keyId ? { keyId } : {}) })
    }

    const introspect = (auth: string, ip: string, userAgent = 'test-agent/1') =>
      call('GET', '/v1/auth/token', auth, { ip, headers: { 'user-agent': userAgent } })

    it('a key presented from more addresses than the threshold raises suspicious.distinct_ips, once per window', async () => {
      const key = await newKey('many addresses')
      for (let i = 1; i <= 8; i++) assert.equal((await introspect(key.auth, `203.0.113.${i}`)).status, 200)
      assert.deepEqual(await events('suspicious.', key.id), [], 'eight addresses are within the threshold')
      for (let i = 9; i <= 12; i++) await introspect(key.auth, `203.0.113.${i}`)
      const raised = await events('suspicious.distinct_ips', key.id)
      assert.equal(raised.length, 1, 'once per window, however far past the threshold')
      const [event] = raised
      assert.equal(event?.ip, '203.0.113.9')
      assert.deepEqual(event?.detail, {
        rule: 'distinct_ips',
        scope: 'key',
        window_seconds: 600,
        threshold: 8,
        observed: 9,
        value: '203.0.113.9',
        auto_disable: false,
      })
      // The next window: the old addresses age out, and a new spread raises it again.
      clock.advance(11 * MINUTE)
      for (let i = 1; i <= 9; i++) await introspect(key.auth, `198.51.100.${i}`)
      assert.equal((await events('suspicious.distinct_ips', key.id)).length, 2)
      // Not disabled: auto-disable is off by default.
      assert.equal((await introspect(key.auth, '127.0.0.1')).status, 200)
    })

    it('a key presented with more user agents than the threshold raises suspicious.distinct_user_agents', async () => {
      const key = await newKey('many agents')
      for (let i = 1; i <= 6; i++) await introspect(key.auth, '127.0.0.1', `agent-${i}/1.0`)
      const [event, ...more] = await events('suspicious.distinct_user_agents', key.id)
      assert.equal(more.length, 0)
      assert.equal(event?.detail.scope, 'key')
      assert.equal(event?.detail.observed, 6)
      assert.equal(event?.detail.value, 'agent-6/1.0')
    })

    it('one grant token used from many addresses raises distinct_ips for the token and its end user, and never disables the key', async () => {
      await settings({ auto_disable: true })
      try {
        const key = await newKey('shared token')
        const token = await grant(key.auth, 'user-leaky')
        for (let i = 1; i <= 9; i++) assert.equal((await introspect(token, `192.0.2.${i}`)).status, 200)
        const raised = await events('suspicious.distinct_ips', key.id)
        assert.deepEqual(raised.map((e) => e.detail.scope).sort(), ['end_user', 'token'])
        for (const e of raised) {
          assert.equal(e.endUser, 'user-leaky')
          assert.equal(
            e.detail.auto_disable,
            false,
            'a token or end-user finding never disables the whole key',
          )
          assert.equal(typeof e.detail.jti, 'string')
        }
        assert.deepEqual(await events('key.disabled', key.id), [])
        assert.equal((await introspect(key.auth, '127.0.0.1')).status, 200)
      } finally {
        await settings(null)
      }
    })

    it('a burst of grants from one key raises suspicious.grant_burst; a project can lower the threshold', async () => {
      await settings({ max_grants_per_key: 20 })
      try {
        const key = await newKey('grant burst')
        for (let i = 0; i < 20; i++) await grant(key.auth, `user-${i}`)
        assert.deepEqual(await events('suspicious.grant_burst', key.id), [])
        for (let i = 0; i < 30; i++) await grant(key.auth, `user-${i}`)
        const [event, ...more] = await events('suspicious.grant_burst', key.id)
        assert.equal(more.length, 0)
        assert.equal(event?.detail.threshold, 20)
        assert.equal(event?.detail.observed, 21)
        assert.equal(event?.detail.window_seconds, 60)
      } finally {
        await settings(null)
      }
    })

    it("a deleted key's secret presented again and again raises suspicious.auth_failures", async () => {
      const key = await newKey('deleted then retried')
      assert.equal((await call('DELETE', `/v1/projects/${projectId}/keys/${key.id}`, owner())).status, 200)
      for (let i = 1; i <= 21; i++) {
        // From many addresses, as a leaked secret is tried: the per-address lockout never sees enough of one.
        const refused = await introspect(key.auth, `100.64.0.${i}`)
        assert.equal(refused.status, 401)
        assert.equal(refused.body.err_code, 'INVALID_AUTH', 'the client learns nothing more than before')
      }
      const [event, ...more] = await events('suspicious.auth_failures', key.id)
      assert.equal(more.length, 0)
      assert.equal(event?.detail.threshold, 20)
      assert.equal(event?.detail.observed, 21)
      assert.equal(event?.detail.value, 'key_deleted')
      assert.equal(event?.ip, '100.64.0.21')
      assert.ok(!JSON.stringify(event).includes(key.secret), 'no secret in the event')
    })

    /** A grant token anyone could write: the claims given, an unknown kid, a guessed signing secret. */
    const forgedToken = (claims: Record<string, unknown>) => {
      const encode = (part: unknown) => Buffer.from(JSON.stringify(part)).toString('base64url')
      const now = Math.floor(clock.now() / 1000)
      const header = encode({ alg: 'HS256', typ: 'JWT', kid: 'not-a-real-kid' })
      const payload = encode({ iss: 'earmark', iat: now, exp: now + 60, scopes: ['usage:write'], ...claims })
      const signature = createHmac('sha256', 'guessed').update(`${header}.${payload}`).digest('base64url')
      return `${header}.${payload}.${signature}`
    }

    it('forged tokens that name a key are counted against it but never disable it, even with auto-disable on', async () => {
      await settings({ auto_disable: true, max_auth_failures_per_key: 5 })
      try {
        const key = await newKey('forgery target')
        for (let i = 0; i < 8; i++) {
          const forged = forgedToken({ sub: key.id, jti: `forged-${i}`, project_id: projectId })
          const res = await introspect(`Bearer ${forged}`, `100.65.0.${i}`)
          assert.equal(res.status, 401)
        }
        const [event] = await events('suspicious.auth_failures', key.id)
        assert.equal(event?.detail.value, 'token_unverified')
        assert.equal(event?.detail.auto_disable, false, 'ids in an unverified token can be written by anyone')
        assert.deepEqual(await events('key.disabled', key.id), [])
        assert.equal((await introspect(key.auth, '127.0.0.1')).status, 200)
      } finally {
        await settings(null)
      }
    })

    it('forged tokens naming a project that does not exist are not counted at all', async () => {
      // UUIDs, as Earmark writes them: ids of any other shape are not attributed at all.
      const madeUp = randomUUID()
      const madeUpKey = randomUUID()
      for (let i = 0; i < 25; i++) {
        const forged = forgedToken({ sub: madeUpKey, jti: randomUUID(), project_id: madeUp })
        assert.equal((await introspect(`Bearer ${forged}`, `100.66.0.${i}`)).status, 401)
      }
      await earmark.suspicious.idle()
      await earmark.services.audit?.flush()
      assert.deepEqual(await earmark.services.store.listAuditEvents(madeUp, { type: 'suspicious.' }), [])
      if (windows === 'redis') {
        // Nothing a stranger can name fills Redis: no window was opened for the made-up ids.
        const redis = await redisReady(createRedisClient(TEST_REDIS_URL))
        try {
          assert.deepEqual(await redis.keys(`${prefix}suspicious:*${madeUp}*`), [])
        } finally {
          await closeRedisClient(redis)
        }
      }
    })

    /** Opens a live stream and keeps it fed with silence until it closes. */
    const stream = async (credential: { protocols?: string[]; origin?: string }) => {
      const headers: Record<string, string> = credential.origin ? { origin: credential.origin } : {}
      const opened = await openSocket(`${wsUrl}/v1/listen?${RAW}`, {
        ...(credential.protocols ? { protocols: credential.protocols } : {}),
        headers,
      })
      const silence = Buffer.alloc(3200)
      const feeder = setInterval(() => {
        if (opened.ws.readyState === opened.ws.OPEN) opened.ws.send(silence)
      }, 100)
      void opened.closed.then(() => clearInterval(feeder))
      return {
        ...opened,
        stop: () => {
          clearInterval(feeder)
          opened.ws.terminate()
        },
      }
    }

    it('a live stream from an origin the key never streamed from raises suspicious.new_origin; the first origin is learnt silently', async () => {
      const key = await newKey('origins')
      const token = await grant(key.auth, 'user-origin')
      const secret = token.slice('Bearer '.length)
      for (const origin of [
        'https://app.example',
        'https://app.example',
        'https://evil.example',
        'https://evil.example',
      ]) {
        const s = await stream({ protocols: ['bearer', secret], origin })
        assert.equal(s.log.status, undefined, 'the stream opened')
        s.stop()
        await s.closed
      }
      const raised = await events('suspicious.new_origin', key.id)
      assert.equal(raised.length, 1)
      assert.equal(raised[0]?.detail.value, 'https://evil.example')
      assert.equal(raised[0]?.endUser, 'user-origin')
    })

    it("auto-disable closes a live stream of the key and refuses the key's tokens; enabling it again restores both", async () => {
      await settings({ auto_disable: true, max_ips_per_credential: 2 })
      try {
        const key = await newKey('auto-disabled')
        const token = await grant(key.auth, 'user-victim')
        const live = await stream({ protocols: ['token', key.secret] })
        assert.equal(live.log.status, undefined, 'the stream opened')
        const closedAt = live.closed.then(() => Date.now())
        assert.equal((await introspect(key.auth, '203.0.113.50')).status, 200)
        const started = Date.now()
        // The third address (loopback was the first) trips the rule.
        assert.equal((await introspect(key.auth, '203.0.113.51')).status, 200)
        const log: StreamLog = await live.closed
        console.log(
          `# stream closed ${(await closedAt) - started} ms after the request that tripped the rule`,
        )
        assert.deepEqual(log.close, { code: 1008, reason: 'AUTH-0001' })
        assert.ok((await closedAt) - started < 1000)
        assert.equal((await introspect(key.auth, '127.0.0.1')).status, 401)
        assert.equal((await introspect(token, '127.0.0.1')).status, 401, "the key's tokens are refused too")
        const [found] = await events('suspicious.distinct_ips', key.id)
        assert.equal(found?.detail.auto_disable, true)
        const [disabled] = await events('key.disabled', key.id)
        assert.equal(disabled?.detail.reason, 'suspicious.distinct_ips')
        const state = await call('GET', `/v1/projects/${projectId}/keys/${key.id}`, owner())
        assert.equal(state.status, 200, 'a disabled key stays listed')
        const shown = state.body.api_key as Record<string, unknown>
        assert.equal(shown.disabled_reason, 'suspicious.distinct_ips')
        assert.equal(typeof shown.disabled_at, 'string')

        const enabled = await call('POST', `/v1/projects/${projectId}/keys/${key.id}/enable`, owner())
        assert.equal(enabled.status, 200)
        assert.deepEqual(enabled.body, {
          api_key_id: key.id,
          disabled: false,
          disabled_at: null,
          disabled_reason: null,
        })
        assert.equal((await introspect(key.auth, '127.0.0.1')).status, 200)
        assert.equal((await introspect(token, '127.0.0.1')).status, 200)
        assert.equal((await events('key.enabled', key.id)).length, 1)
        // Enabled by an operator within the window: the same spread does not disable it again at once.
        assert.equal((await introspect(key.auth, '203.0.113.52')).status, 200)
        assert.equal((await introspect(key.auth, '127.0.0.1')).status, 200)
      } finally {
        await settings(null)
      }
    })

    it('an operator disables and enables a key by hand, through the API and the CLI', async () => {
      const key = await newKey('by hand')
      const token = await grant(key.auth)
      const disabled = await call('POST', `/v1/projects/${projectId}/keys/${key.id}/disable`, owner())
      assert.equal(disabled.status, 200)
      assert.equal(disabled.body.disabled, true)
      assert.equal(disabled.body.disabled_reason, 'operator')
      assert.equal((await introspect(key.auth, '127.0.0.1')).status, 401)
      assert.equal((await introspect(token, '127.0.0.1')).status, 401)
      const [event] = await events('key.disabled', key.id)
      assert.equal(event?.detail.reason, 'operator')
      assert.equal(event?.actorKeyId, earmark.bootstrap?.keyId)

      const enabled = await cli(dir, 'keys', 'enable', key.id, '--project', projectId)
      assert.equal(enabled.code, 0, enabled.err)
      assert.equal(enabled.json().disabled, false)
      // The server sees the other process's write on its next request (the credentials version moved).
      await eventually(
        async () => ((await introspect(key.auth, '127.0.0.1')).status === 200 ? true : undefined),
        5000,
        'the key works again',
      )
      const again = await cli(dir, 'keys', 'disable', key.id, '--project', projectId)
      assert.equal(again.code, 0, again.err)
      await eventually(
        async () => ((await introspect(key.auth, '127.0.0.1')).status === 401 ? true : undefined),
        5000,
        'the key is refused again',
      )
      const missing = await cli(
        dir,
        'keys',
        'disable',
        '00000000-0000-0000-0000-000000000000',
        '--project',
        projectId,
      )
      assert.notEqual(missing.code, 0)
    })

    it('a key bound to an address and presented from others is disabled once its verified refusals pass the threshold, with auto-disable on', async () => {
      await settings({ auto_disable: true, max_auth_failures_per_key: 3 })
      try {
        const res = await call('POST', `/v1/projects/${projectId}/keys`, owner(), {
          body: { comment: 'bound', scopes: ['member'], allowed_ips: ['10.9.9.9'] },
        })
        assert.equal(res.status, 200, JSON.stringify(res.body))
        const secret = String(res.body.key)
        recordSecrets(secret)
        const keyId = String(res.body.api_key_id)
        assert.equal((await introspect(`Token ${secret}`, '10.9.9.9')).status, 200)
        for (let i = 1; i <= 4; i++) {
          const refused = await introspect(`Token ${secret}`, `100.66.0.${i}`)
          assert.equal(refused.status, 403, 'refused by the binding')
        }
        const [event] = await events('suspicious.auth_failures', keyId)
        assert.equal(event?.detail.value, 'FORBIDDEN')
        assert.equal(event?.detail.auto_disable, true, 'the secret itself was presented: verified')
        const [disabled] = await events('key.disabled', keyId)
        assert.equal(disabled?.detail.reason, 'suspicious.auth_failures')
        assert.equal(
          (await introspect(`Token ${secret}`, '10.9.9.9')).status,
          401,
          'refused from its own address too',
        )
      } finally {
        await settings(null)
      }
    })

    it('one grant token opening streams from many loopback addresses raises distinct_ips for the token', async () => {
      const key = await newKey('streams from many addresses')
      const token = (await grant(key.auth, 'user-roaming')).slice('Bearer '.length)
      for (let i = 2; i <= 10; i++) {
        // Linux routes all of 127/8 to the loopback interface: each stream comes from its own address.
        const ws = new WebSocket(`${wsUrl}/v1/listen?${RAW}`, ['bearer', token], {
          localAddress: `127.0.0.${i}`,
        })
        await new Promise<void>((resolve, reject) => {
          ws.once('open', resolve)
          ws.once('error', reject)
        })
        const closed = new Promise((resolve) => ws.once('close', resolve))
        ws.close()
        await closed
      }
      const raised = await events('suspicious.distinct_ips', key.id)
      assert.deepEqual(raised.map((e) => e.detail.scope).sort(), ['end_user', 'token'])
      for (const e of raised) {
        assert.equal(e.detail.observed, 9)
        assert.equal(e.detail.value, '127.0.0.10')
      }
    })

    it('normal traffic raises nothing: one app key minting for many end users, each on one address, streams from one origin', async () => {
      const key = await newKey('normal app')
      const users = Array.from({ length: 24 }, (_, i) => ({
        id: `normal-user-${i}`,
        // A third of them share one NAT address; the rest are on their own.
        ip: i % 3 === 0 ? '198.18.0.1' : `198.18.1.${i}`,
        agent:
          i % 2 === 0 ? 'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0' : 'Mozilla/5.0 (iPhone) Safari/604.1',
      }))
      // Ten minutes of a grant every 30 s per user, each token used for a request from the user's address.
      for (let tick = 0; tick < 20; tick++) {
        for (const u of users) {
          const token = await grant(key.auth, u.id, '10.0.0.10')
          assert.equal((await introspect(token, u.ip, u.agent)).status, 200)
        }
        clock.advance(30_000)
      }
      // And live streams from the app's one origin, by tokens of several users.
      for (const u of users.slice(0, 3)) {
        const token = await grant(key.auth, u.id, '10.0.0.10')
        const s = await stream({
          protocols: ['bearer', token.slice('Bearer '.length)],
          origin: 'https://app.example',
        })
        assert.equal(s.log.status, undefined)
        s.stop()
        await s.closed
      }
      assert.deepEqual(await events('suspicious.', key.id), [])
    })
  })
