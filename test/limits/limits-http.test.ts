import assert from 'node:assert/strict'
import { after, before, describe, it, mock } from 'node:test'
import type { AuditEvent } from '../../src/store/index.js'
import { addMember, makeKey } from '../helpers/earmark.js'
import { type LiveServer, openSocket, type StreamLog, startLiveServer } from '../helpers/live-server.js'

// The rate limits of a real Earmark (real composition root, real SQLite file, real sockets on loopback), with
// the limits turned on (the test helpers turn them off for every other suite). Time: rate-limiter-flexible's
// in-memory backend reads `Date.now()` itself, and a shared backend would read its server's clock, so our
// wrapper cannot own time for every backend; these tests mock `Date` alone with node:test's `mock.timers`
// (timers, sockets and the event loop stay real) and move it past a window instead of sleeping. Waits in
// this file use `performance.now()`, which the mock leaves alone.

const KEY_RATE = 8
const GRANT_RATE = 3
const FAILS_PER_MINUTE = 3
const FAILS_PER_HOUR = 6
const BACKOFF_S = 10
const BLOCK_S = 600

type Json = Record<string, unknown>
interface Answer {
  status: number
  body: Json
  headers: Headers
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms
  while (performance.now() < end) {
    if (await check()) return
    await sleep(20)
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A Deepgram-shaped 429 with a `Retry-After` of whole seconds; returns those seconds. */
function assert429(
  a: { status?: number; body?: Json; headers: Headers | Record<string, unknown> },
  what: string,
) {
  assert.equal(a.status, 429, `${what}: ${JSON.stringify(a.body)}`)
  assert.equal(a.body?.err_code, 'TOO_MANY_REQUESTS', what)
  assert.equal(typeof a.body?.err_msg, 'string', what)
  assert.match(String(a.body?.request_id), /^[0-9a-f-]{36}$/, what)
  const header = a.headers instanceof Headers ? a.headers.get('retry-after') : a.headers['retry-after']
  assert.match(String(header), /^[1-9]\d*$/, `${what}: Retry-After ${header}`)
  return Number(header)
}

describe('rate limits, concurrency caps and failed-authentication back-off', { timeout: 120_000 }, () => {
  let srv: LiveServer
  const call = async (method: string, path: string, credential?: string, body?: unknown): Promise<Answer> => {
    const headers: Record<string, string> = {}
    if (credential) headers.authorization = credential
    if (body !== undefined) headers['content-type'] = 'application/json'
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.text()
    return { status: res.status, body: text ? (JSON.parse(text) as Json) : {}, headers: res.headers }
  }
  const token = (key: string) => `Token ${key}`
  const owner = () => token(srv.ownerKey)
  const whoAmI = (credential: string) => call('GET', '/v1/auth/token', credential)
  /** A fresh minute: every per-minute window has closed. */
  const nextMinute = () => mock.timers.tick(61_000)
  const settings = (body: unknown) => call('PATCH', `/v1/projects/${srv.projectId}/settings`, owner(), body)
  const createKey = async (comment: string, extra: Json = {}) => {
    const a = await call('POST', `/v1/projects/${srv.projectId}/keys`, owner(), {
      comment,
      scopes: ['member'],
      ...extra,
    })
    assert.equal(a.status, 200, JSON.stringify(a.body))
    return { key: String(a.body.key), id: String(a.body.api_key_id) }
  }
  const grant = async (key: string, extra: Json = {}) => {
    const a = await call('POST', '/v1/auth/grant', token(key), { ttl_seconds: 3600, ...extra })
    assert.equal(a.status, 200, JSON.stringify(a.body))
    return String(a.body.access_token)
  }
  const refusals = async (limit: string): Promise<AuditEvent[]> => {
    await srv.earmark.services.audit?.flush()
    const events = await srv.earmark.services.store.listAuditEvents(srv.projectId, { type: 'limit.refused' })
    return events.filter((e) => e.detail.limit === limit)
  }
  /** Refused `n` times in a row, each a Deepgram-shaped 429. */
  const refusedTimes = async (n: number, credential: string) => {
    for (let i = 0; i < n; i++) assert429(await whoAmI(credential), `refusal ${i + 1}`)
  }

  before(async () => {
    mock.timers.enable({ apis: ['Date'], now: Date.now() })
    srv = await startLiveServer({
      EARMARK_LIMIT_REQUESTS_PER_MINUTE: String(KEY_RATE),
      EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: '1000',
      EARMARK_LIMIT_GRANTS_PER_MINUTE: String(GRANT_RATE),
      EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: String(FAILS_PER_MINUTE),
      EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR: String(FAILS_PER_HOUR),
      EARMARK_LIMIT_AUTH_BACKOFF_SECONDS: String(BACKOFF_S),
      EARMARK_LIMIT_AUTH_BLOCK_SECONDS: String(BLOCK_S),
      EARMARK_WS_IDLE_TIMEOUT_MS: '30000',
    })
  })
  after(async () => {
    await srv?.close()
    mock.timers.reset()
  })

  it('a key over its requests per minute gets a Deepgram-shaped 429 with Retry-After, and is admitted again once the window has passed', async () => {
    nextMinute()
    for (let i = 0; i < KEY_RATE; i++) assert.equal((await whoAmI(owner())).status, 200, `request ${i + 1}`)
    const refused = await whoAmI(owner())
    const retryAfter = assert429(refused, 'the request past the limit')
    assert.ok(retryAfter > 50 && retryAfter <= 60, `Retry-After ${retryAfter}`)
    assert.equal(refused.headers.get('dg-request-id'), refused.body.request_id)
    mock.timers.tick(retryAfter * 1000 - 2000)
    assert429(await whoAmI(owner()), 'still inside the window')
    mock.timers.tick(2000)
    assert.equal((await whoAmI(owner())).status, 200, 'admitted once Retry-After has passed')
  })

  it('grant tokens count against the key that minted them, and a refused key refuses its tokens', async () => {
    nextMinute()
    const jwt = await grant(srv.ownerKey)
    // One grant spent; the token uses the rest of its parent's minute.
    for (let i = 1; i < KEY_RATE; i++) assert.equal((await whoAmI(`Bearer ${jwt}`)).status, 200)
    assert429(await whoAmI(`Bearer ${jwt}`), 'the token past its key limit')
    assert429(await whoAmI(owner()), 'the key itself, spent by its token')
    nextMinute()
    assert.equal((await whoAmI(`Bearer ${jwt}`)).status, 200)
  })

  it("a key's own limit takes precedence over its project's, and the project's over the server's", async () => {
    nextMinute()
    assert.equal((await settings({ limits: { requests_per_minute: 3 } })).status, 200)
    const own = await createKey('own limit', { limits: { requests_per_minute: 5 } })
    const plain = await createKey('project limit')
    nextMinute()
    for (let i = 0; i < 5; i++) assert.equal((await whoAmI(token(own.key))).status, 200)
    assert429(await whoAmI(token(own.key)), 'the key limit (5)')
    for (let i = 0; i < 3; i++) assert.equal((await whoAmI(token(plain.key))).status, 200)
    assert429(await whoAmI(token(plain.key)), 'the project limit (3)')
    nextMinute()
    // Cleared: back to the server's default.
    const cleared = await settings({ limits: { requests_per_minute: null } })
    assert.equal(cleared.status, 200)
    assert.deepEqual(cleared.body.limits, {})
    nextMinute()
    for (let i = 0; i < KEY_RATE; i++) assert.equal((await whoAmI(token(plain.key))).status, 200)
    assert429(await whoAmI(token(plain.key)), `the server default (${KEY_RATE})`)
  })

  it("a member's key may tighten its project's limits but not loosen them; an owner's key may", async () => {
    nextMinute()
    const member = await addMember(srv.earmark.services, {
      projectId: srv.projectId,
      email: 'member@limits.example',
      role: 'member',
    })
    const memberKey = await makeKey(srv.earmark.services, member, { scopes: ['member'] })
    const create = async (rate: number) => {
      const a = await call('POST', `/v1/projects/${srv.projectId}/keys`, token(memberKey.secret), {
        comment: `member key ${rate}`,
        scopes: ['member'],
        limits: { requests_per_minute: rate },
      })
      assert.equal(a.status, 200, JSON.stringify(a.body))
      return String(a.body.key)
    }
    const looser = await create(50)
    const tighter = await create(2)
    assert.equal((await settings({ limits: { requests_per_minute: 3 } })).status, 200)
    const ownerLooser = await createKey("an owner's looser key", { limits: { requests_per_minute: 5 } })
    nextMinute()
    for (const [key, allowed, what] of [
      [looser, 3, "a member's key asking for 50: the project's 3"],
      [tighter, 2, "a member's key asking for 2"],
      [ownerLooser.key, 5, "an owner's key asking for 5"],
    ] as const) {
      for (let i = 0; i < allowed; i++) assert.equal((await whoAmI(token(key))).status, 200, what)
      assert429(await whoAmI(token(key)), what)
    }
    nextMinute()
    assert.equal((await settings({ limits: null })).status, 200)
  })

  it('a project over its project requests per minute is refused for every key, and each refusal is audited at most once a window', async () => {
    nextMinute()
    const a = await createKey('project rate a')
    const b = await createKey('project rate b')
    assert.equal((await settings({ limits: { project_requests_per_minute: 4 } })).status, 200)
    nextMinute()
    for (const key of [a.key, b.key, a.key, b.key]) assert.equal((await whoAmI(token(key))).status, 200)
    assert429(await whoAmI(token(a.key)), 'key a, over the project limit')
    assert429(await whoAmI(token(b.key)), 'key b, over the project limit')
    // Four more (key a stays under its own limit of 8, so the project's is what refuses).
    await refusedTimes(4, token(a.key))
    const events = await refusals('project_requests_per_minute')
    assert.equal(events.length, 1, 'one event for a burst of refusals')
    const [event] = events
    assert.equal(event?.keyId, null, 'a project limit belongs to no one key')
    assert.equal(event?.detail.value, 4)
    assert.equal(typeof event?.detail.retry_after_ms, 'number')
    assert.ok(!JSON.stringify(event).includes(a.key) && !JSON.stringify(event).includes(b.key), 'no secret')
    nextMinute()
    for (let i = 0; i < 4; i++) assert.equal((await whoAmI(token(a.key))).status, 200)
    assert429(await whoAmI(token(a.key)), 'the next window, over again')
    const later = await refusals('project_requests_per_minute')
    assert.equal(later.length, 2, 'one more event in the next window')
    assert.equal(later.find((e) => e.id !== event?.id)?.detail.suppressed, 5)
    nextMinute()
    assert.equal((await settings({ limits: null })).status, 200)
  })

  it('a key mints at most its grants per minute, set by the server, the project or the key', async () => {
    nextMinute()
    for (let i = 0; i < GRANT_RATE; i++) await grant(srv.ownerKey)
    const refused = await call('POST', '/v1/auth/grant', owner(), { ttl_seconds: 30 })
    assert429(refused, 'the grant past the server default')
    const [event] = await refusals('grants_per_minute')
    assert.equal(event?.keyId, srv.earmark.bootstrap?.keyId)
    assert.equal(event?.detail.value, GRANT_RATE)
    nextMinute()
    await grant(srv.ownerKey)
    const keyed = await createKey('one grant', { limits: { grants_per_minute: 1 } })
    await grant(keyed.key)
    assert429(await call('POST', '/v1/auth/grant', token(keyed.key), {}), 'the key limit (1)')
    assert.equal((await settings({ limits: { grants_per_minute: 2 } })).status, 200)
    const plain = await createKey('two grants')
    await grant(plain.key)
    await grant(plain.key)
    assert429(await call('POST', '/v1/auth/grant', token(plain.key), {}), 'the project limit (2)')
    assert.equal((await settings({ limits: null })).status, 200)
  })

  describe('concurrent streams per key, per end user and per project, set through the API', () => {
    const listen = (credential: string, scheme: 'token' | 'bearer' = 'token') =>
      openSocket(`${srv.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`, {
        protocols: [scheme, credential],
      })
    const released = () => until(() => srv.earmark.sockets.active === 0, 10_000, 'every stream released')
    const close = async (s: { ws: { close(): void }; closed: Promise<StreamLog> }) => {
      s.ws.close()
      await s.closed
    }
    const refusedUpgrade = (log: StreamLog, what: string) =>
      assert429({ status: log.status, body: log.body as Json, headers: log.headers ?? {} }, what)

    it("a key's concurrent_streams caps its streams and pre-recorded requests, its grant tokens' included; a refused upgrade is a Deepgram-shaped 429 with Retry-After", async () => {
      nextMinute()
      const k = await createKey('one stream', { limits: { concurrent_streams: 1 } })
      const first = await listen(k.key)
      assert.equal(first.log.status, undefined, 'the first stream opens')
      refusedUpgrade((await listen(k.key)).log, 'a second stream of the key')
      refusedUpgrade((await listen(await grant(k.key), 'bearer')).log, "a stream of the key's token")
      // A pre-recorded request draws on the same share, refused before its body is read.
      const upload = await fetch(`${srv.url}/v1/listen`, {
        method: 'POST',
        headers: { authorization: token(k.key), 'content-type': 'audio/wav' },
        body: new Uint8Array(64_000),
      })
      assert429(
        { status: upload.status, body: (await upload.json()) as Json, headers: upload.headers },
        'a pre-recorded request of the key',
      )
      const other = await createKey('no cap')
      const free = await listen(other.key)
      assert.equal(free.log.status, undefined, 'another key still opens a stream')
      await close(first)
      await close(free)
      await released()
      const again = await listen(k.key)
      assert.equal(again.log.status, undefined, 'opens again once its stream closed')
      await close(again)
      await released()
      const [event] = await refusals('concurrent_streams_per_key')
      assert.equal(event?.keyId, k.id)
      assert.equal(event?.detail.value, 1)
    })

    it("a project's concurrent_streams_per_project caps every key together, and concurrent_streams_per_key each key", async () => {
      nextMinute()
      assert.equal((await settings({ limits: { concurrent_streams_per_project: 1 } })).status, 200)
      const a = await createKey('project cap a')
      const b = await createKey('project cap b')
      const first = await listen(a.key)
      assert.equal(first.log.status, undefined)
      refusedUpgrade((await listen(b.key)).log, 'another key of the capped project')
      await close(first)
      await released()
      assert.equal(
        (await settings({ limits: { concurrent_streams_per_project: null, concurrent_streams_per_key: 1 } }))
          .status,
        200,
      )
      const one = await listen(a.key)
      assert.equal(one.log.status, undefined)
      refusedUpgrade((await listen(a.key)).log, 'a second stream of a key under the project per-key cap')
      const two = await listen(b.key)
      assert.equal(two.log.status, undefined, 'each key has its own share')
      await close(one)
      await close(two)
      await released()
      assert.equal((await refusals('concurrent_streams_per_project')).length, 1)
      assert.equal((await settings({ limits: null })).status, 200)
    })

    it("a project's concurrent_streams_per_end_user caps one end user's tokens, whichever key minted them", async () => {
      nextMinute()
      assert.equal((await settings({ limits: { concurrent_streams_per_end_user: 1 } })).status, 200)
      const a = await createKey('end user a')
      const b = await createKey('end user b')
      const alice = await listen(await grant(a.key, { end_user: 'alice' }), 'bearer')
      assert.equal(alice.log.status, undefined)
      refusedUpgrade((await listen(await grant(b.key, { end_user: 'alice' }), 'bearer')).log, 'alice again')
      const bob = await listen(await grant(a.key, { end_user: 'bob' }), 'bearer')
      assert.equal(bob.log.status, undefined, 'another end user of the same key')
      await close(alice)
      await close(bob)
      await released()
      const [event] = await refusals('concurrent_streams_per_end_user')
      assert.equal(event?.endUser, 'alice')
      assert.equal((await settings({ limits: null })).status, 200)
    })
  })

  // Last: it leaves the loopback address with failures counted in the hour.
  it('failed authentications back an address off with a growing Retry-After, then block it whatever it presents, and let it in afterwards', async () => {
    mock.timers.tick(3_601_000)
    const bad = 'Token emk_this_is_not_a_key_0123456789'
    for (let i = 0; i < FAILS_PER_MINUTE; i++)
      assert.equal((await whoAmI(bad)).status, 401, `failure ${i + 1}`)
    // Backed off: refused before the credential is checked, a good key included, over HTTP and upgrades.
    const first = assert429(await whoAmI(owner()), 'a good key while backed off')
    assert.ok(first <= BACKOFF_S && first > BACKOFF_S - 2, `first back-off ${first} s`)
    assert429(await whoAmI(bad), 'a bad key while backed off')
    const upgrade = await openSocket(`${srv.wsUrl}/v1/listen`, { protocols: ['token', srv.ownerKey] })
    assert429(
      { status: upgrade.log.status, body: upgrade.log.body as Json, headers: upgrade.log.headers ?? {} },
      'an upgrade while backed off',
    )
    mock.timers.tick(first * 1000)
    assert.equal((await whoAmI(owner())).status, 200, 'a good key once the back-off ended')
    // One more failure in the same minute: a back-off twice as long.
    assert.equal((await whoAmI(bad)).status, 401)
    const second = assert429(await whoAmI(owner()), 'the second back-off')
    assert.ok(second <= 2 * BACKOFF_S && second > 2 * BACKOFF_S - 2, `second back-off ${second} s`)
    mock.timers.tick(second * 1000)
    assert.equal((await whoAmI(bad)).status, 401)
    const third = assert429(await whoAmI(owner()), 'the third back-off')
    assert.ok(third <= 4 * BACKOFF_S && third > 4 * BACKOFF_S - 2, `third back-off ${third} s`)
    mock.timers.tick(third * 1000)
    // The hour's sixth failure: blocked for the long block.
    assert.equal((await whoAmI(bad)).status, 401)
    const blocked = await whoAmI(owner())
    const block = assert429(blocked, 'a good key while blocked')
    assert.ok(block <= BLOCK_S && block > BLOCK_S - 2, `block ${block} s`)
    assert.match(String(blocked.body.err_msg), /blocked/)
    mock.timers.tick((block - 5) * 1000)
    assert429(await whoAmI(owner()), 'still blocked 5 s before the end')
    mock.timers.tick(5000)
    assert.equal((await whoAmI(owner())).status, 200, 'a good key once the block ended')
  })

  it('limits set through the API refuse 0, negatives, fractions and unknown names with a 400 naming the field, and a change is audited', async () => {
    mock.timers.tick(3_601_000)
    const cases: [unknown, string][] = [
      [{ limits: { requests_per_minute: 0 } }, 'limits.requests_per_minute'],
      [{ limits: { grants_per_minute: -1 } }, 'limits.grants_per_minute'],
      [{ limits: { concurrent_streams_per_key: 1.5 } }, 'limits.concurrent_streams_per_key'],
      [{ limits: { requests_per_minute: '10' } }, 'limits.requests_per_minute'],
      [{ limits: { burst: 3 } }, 'limits.burst'],
      [{ limits: [1] }, 'limits'],
      [{ nonsense: {} }, 'nonsense'],
    ]
    for (const [body, field] of cases) {
      const a = await settings(body)
      assert.equal(a.status, 400, JSON.stringify(body))
      assert.equal(a.body.err_code, 'INVALID_FIELD')
      assert.ok(String(a.body.err_msg).includes(`\`${field}\``), `${JSON.stringify(body)}: ${a.body.err_msg}`)
    }
    nextMinute()
    for (const [limits, field] of [
      [{ concurrent_streams: 0 }, 'limits.concurrent_streams'],
      [{ requests_per_minute: -5 }, 'limits.requests_per_minute'],
      [{ concurrent_streams_per_key: 2 }, 'limits.concurrent_streams_per_key'],
    ] as const) {
      const a = await call('POST', `/v1/projects/${srv.projectId}/keys`, owner(), {
        comment: 'bad limits',
        scopes: ['member'],
        limits,
      })
      assert.equal(a.status, 400)
      assert.ok(String(a.body.err_msg).includes(`\`${field}\``), String(a.body.err_msg))
    }
    nextMinute()
    const set = await settings({ limits: { requests_per_minute: 100, concurrent_streams_per_project: 7 } })
    assert.equal(set.status, 200)
    const read = await call('GET', `/v1/projects/${srv.projectId}/settings`, owner())
    assert.equal(read.status, 200)
    assert.deepEqual(read.body.limits, { requests_per_minute: 100, concurrent_streams_per_project: 7 })
    await srv.earmark.services.audit?.flush()
    const [changed] = await srv.earmark.services.store.listAuditEvents(srv.projectId, {
      type: 'project.settings_changed',
      limit: 1,
    })
    assert.equal(changed?.actorKeyId, srv.earmark.bootstrap?.keyId, 'the owner key changed them')
    assert.deepEqual(changed?.detail, {
      sections: ['limits'],
      settings: { limits: { requests_per_minute: 100, concurrent_streams_per_project: 7 } },
    })
    const kept = await settings({ limits: { grants_per_minute: 9 } })
    assert.deepEqual(kept.body.limits, {
      requests_per_minute: 100,
      grants_per_minute: 9,
      concurrent_streams_per_project: 7,
    })
    assert.equal((await settings({ limits: null })).status, 200)
  })
})
