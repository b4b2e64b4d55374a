import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { DeepgramClient, DeepgramError } from 'dg5'
import { decodeJwt } from 'jose'
import { wav } from '../helpers/listen-e2e.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { silence } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Earmark's credential options over REST (docs/credential-options.md): validation, narrowing by the key, the
// claims and views, single use, origin and address binding, and listen constraints, against a real server
// from the real composition root (its access stages included) over loopback.

const APP_ORIGIN = 'https://app.example.com'
const AUDIO = wav(silence(0.5))

type Json = Record<string, unknown>

describe('credential options over REST', { timeout: 120_000 }, () => {
  let server: LiveServer

  before(async () => {
    server = await startLiveServer()
  })
  after(async () => {
    await server.close()
  })

  const call = async (
    method: string,
    path: string,
    auth: string,
    o: { body?: unknown; origin?: string; audio?: boolean } = {},
  ) => {
    const headers: Record<string, string> = { authorization: auth }
    if (o.origin) headers.origin = o.origin
    let body: string | Buffer | undefined
    if (o.audio) {
      headers['content-type'] = 'audio/wav'
      body = AUDIO
    } else if (o.body !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(o.body)
    }
    const res = await fetch(`${server.url}${path}`, { method, headers, ...(body ? { body } : {}) })
    return { status: res.status, body: (await res.json()) as Json }
  }

  const grantRaw = (body: unknown, key = server.ownerKey, origin?: string) =>
    call('POST', '/v1/auth/grant', `Token ${key}`, { body, ...(origin ? { origin } : {}) })

  const grant = async (body: Json, key = server.ownerKey, origin?: string) => {
    const res = await grantRaw({ ttl_seconds: 120, ...body }, key, origin)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const token = res.body.access_token as string
    recordSecrets(token)
    return token
  }

  const createKeyRaw = (body: Json) =>
    call('POST', `/v1/projects/${server.projectId}/keys`, `Token ${server.ownerKey}`, {
      body: { comment: 'options', scopes: ['member'], ...body },
    })

  const createKey = async (body: Json) => {
    const res = await createKeyRaw(body)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    recordSecrets(res.body.key as string)
    return { key: res.body.key as string, id: res.body.api_key_id as string, view: res.body }
  }

  const listen = (auth: string, query = '', origin?: string) =>
    call('POST', `/v1/listen${query}`, auth, { audio: true, ...(origin ? { origin } : {}) })

  const introspect = (auth: string) => call('GET', '/v1/auth/token', auth)

  const invalid = (res: { status: number; body: Json }, field: string, what: string) => {
    assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body)}`)
    assert.equal(res.body.err_code, 'INVALID_FIELD', what)
    assert.ok(
      String(res.body.err_msg).includes(`\`${field}\``),
      `${what}: names ${field}: ${res.body.err_msg}`,
    )
  }

  it('refuses every malformed option of a grant with 400 INVALID_FIELD naming the field', async () => {
    const long = 'x'.repeat(257)
    const table: [Json, string][] = [
      [{ max_uses: 0 }, 'max_uses'],
      [{ max_uses: 1.5 }, 'max_uses'],
      [{ max_uses: '1' }, 'max_uses'],
      [{ max_session_duration_seconds: 0 }, 'max_session_duration_seconds'],
      [{ max_session_duration_seconds: 86_401 }, 'max_session_duration_seconds'],
      [{ allowed_origins: 'https://a.example' }, 'allowed_origins'],
      [{ allowed_origins: [] }, 'allowed_origins'],
      [{ allowed_origins: ['https://a.example/path'] }, 'allowed_origins'],
      [{ allowed_origins: ['a.example'] }, 'allowed_origins'],
      [{ allowed_origins: ['ftp://a.example'] }, 'allowed_origins'],
      [{ allowed_origins: [`https://${long}.example`] }, 'allowed_origins'],
      [{ allowed_origins: Array.from({ length: 33 }, (_, i) => `https://a${i}.example`) }, 'allowed_origins'],
      [{ allowed_ips: ['10.0.0.0/33'] }, 'allowed_ips'],
      [{ allowed_ips: ['not-an-ip'] }, 'allowed_ips'],
      [{ allowed_ips: ['::1/129'] }, 'allowed_ips'],
      [{ allowed_ips: [7] }, 'allowed_ips'],
      [{ listen: 'nova-3' }, 'listen'],
      [{ listen: { allowed_models: ['no-such-model'] } }, 'listen.allowed_models'],
      [{ listen: { allowed_languages: [''] } }, 'listen.allowed_languages'],
      [{ listen: { max_sample_rate: -1 } }, 'listen.max_sample_rate'],
      [{ listen: { interim_results: 'false' } }, 'listen.interim_results'],
      [{ listen: { diarize: false } }, 'listen.diarize'],
    ]
    for (const [body, field] of table) invalid(await grantRaw(body), field, JSON.stringify(body))
  })

  it('refuses options too large to carry in a token, on a grant and on a key, and their sum on an inheriting grant', async () => {
    const host = (i: number) => `https://${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}${i}.example`
    const origins = Array.from({ length: 30 }, (_, i) => host(i))
    invalid(await grantRaw({ allowed_origins: origins }), 'allowed_origins', '30 long origins on a grant')
    invalid(await createKeyRaw({ allowed_origins: origins }), 'allowed_origins', '30 long origins on a key')
    // Each half fits; together they do not.
    const { key } = await createKey({ allowed_origins: origins.slice(0, 15) })
    const languages = Array.from({ length: 32 }, (_, i) => `${'x'.repeat(80)}-${i}`)
    invalid(
      await grantRaw({ listen: { allowed_languages: languages } }, key, origins[0]),
      'allowed_origins',
      'inherited origins plus long languages',
    )
  })

  it('refuses malformed key options the same way, and max_uses on a key', async () => {
    invalid(await createKeyRaw({ max_uses: 1 }), 'max_uses', 'max_uses on a key')
    invalid(await createKeyRaw({ allowed_ips: ['300.0.0.1'] }), 'allowed_ips', 'a bad address')
    invalid(await createKeyRaw({ listen: { max_sample_rate: 0 } }), 'listen.max_sample_rate', 'a zero rate')
  })

  it('a grant without options is shaped as before: no extra claim in the JWT, no extra field in GET /v1/auth/token', async () => {
    const token = await grant({})
    assert.deepEqual(Object.keys(decodeJwt(token)).sort(), [
      'accessor',
      'exp',
      'iat',
      'iss',
      'jti',
      'project_id',
      'scopes',
      'sub',
    ])
    const res = await introspect(`Bearer ${token}`)
    assert.equal(res.status, 200)
    for (const field of [
      'allowed_origins',
      'allowed_ips',
      'max_uses',
      'max_session_duration_seconds',
      'listen',
    ]) {
      assert.equal(field in res.body, false, field)
    }
  })

  it('a grant carries its options in one compact claim and shows them in GET /v1/auth/token, snake_case', async () => {
    const token = await grant({
      max_uses: 5,
      max_session_duration_seconds: 600,
      allowed_origins: [`${APP_ORIGIN}/`],
      allowed_ips: ['127.0.0.1', '10.0.0.0/8'],
      listen: {
        allowed_models: ['Nova-3'],
        allowed_languages: ['EN'],
        max_sample_rate: 16000,
        interim_results: false,
      },
    })
    const claims = decodeJwt(token)
    assert.deepEqual(claims.opt, {
      o: [APP_ORIGIN],
      ip: ['127.0.0.1', '10.0.0.0/8'],
      sd: 600,
      mu: 5,
      lm: ['nova-3'],
      ll: ['en'],
      lr: 16000,
      li: false,
    })
    const res = await introspect(`Bearer ${token}`)
    assert.equal(res.status, 200)
    assert.deepEqual(
      {
        allowed_origins: res.body.allowed_origins,
        allowed_ips: res.body.allowed_ips,
        max_uses: res.body.max_uses,
        max_session_duration_seconds: res.body.max_session_duration_seconds,
        listen: res.body.listen,
      },
      {
        allowed_origins: [APP_ORIGIN],
        allowed_ips: ['127.0.0.1', '10.0.0.0/8'],
        max_uses: 5,
        max_session_duration_seconds: 600,
        listen: {
          allowed_models: ['nova-3'],
          allowed_languages: ['en'],
          max_sample_rate: 16000,
          interim_results: false,
        },
      },
    )
  })

  it('a key shows its options in the key views, and a token it mints inherits them and may only narrow them', async () => {
    const binding = {
      allowed_ips: ['127.0.0.0/8', '::1'],
      max_session_duration_seconds: 300,
      listen: { allowed_models: ['nova-3', 'nova-2'], max_sample_rate: 16000, interim_results: false },
    }
    const { key, id, view } = await createKey(binding)
    assert.deepEqual(view.allowed_ips, binding.allowed_ips)
    assert.deepEqual(view.listen, binding.listen)
    const one = await call('GET', `/v1/projects/${server.projectId}/keys/${id}`, `Token ${server.ownerKey}`)
    assert.equal(one.status, 200)
    assert.equal((one.body.api_key as Json).max_session_duration_seconds, 300)
    const list = await call('GET', `/v1/projects/${server.projectId}/keys`, `Token ${server.ownerKey}`)
    const listed = (list.body.api_keys as { api_key: Json }[]).find((k) => k.api_key.api_key_id === id)
    assert.deepEqual(listed?.api_key.allowed_ips, binding.allowed_ips)
    // The key introspected shows its own binding.
    assert.deepEqual((await introspect(`Token ${key}`)).body.allowed_ips, binding.allowed_ips)

    // Inherited as it is.
    const inherited = await introspect(`Bearer ${await grant({}, key)}`)
    assert.deepEqual(inherited.body.allowed_ips, binding.allowed_ips)
    assert.equal(inherited.body.max_session_duration_seconds, 300)
    assert.deepEqual(inherited.body.listen, binding.listen)

    // Narrowed.
    const narrowed = await introspect(
      `Bearer ${await grant(
        {
          allowed_ips: ['127.0.0.1'],
          max_session_duration_seconds: 60,
          listen: { allowed_models: ['nova-3'], max_sample_rate: 8000 },
        },
        key,
      )}`,
    )
    assert.deepEqual(narrowed.body.allowed_ips, ['127.0.0.1'])
    assert.equal(narrowed.body.max_session_duration_seconds, 60)
    assert.deepEqual(narrowed.body.listen, {
      allowed_models: ['nova-3'],
      max_sample_rate: 8000,
      interim_results: false,
    })

    // Wider: refused, naming the field.
    const wider: [Json, string][] = [
      [{ allowed_ips: ['10.0.0.1'] }, 'allowed_ips'],
      [{ allowed_ips: ['127.0.0.0/7'] }, 'allowed_ips'],
      [{ max_session_duration_seconds: 301 }, 'max_session_duration_seconds'],
      [{ listen: { allowed_models: ['base'] } }, 'listen.allowed_models'],
      [{ listen: { max_sample_rate: 48000 } }, 'listen.max_sample_rate'],
      [{ listen: { interim_results: true } }, 'listen.interim_results'],
    ]
    for (const [body, field] of wider) invalid(await grantRaw(body, key), field, JSON.stringify(body))
  })

  it('a key shows its limits and quotas in the key views and GET /v1/auth/token, and a key without options shows none', async () => {
    const limits = { requests_per_minute: 120, grants_per_minute: 30 }
    const quotas = { audio_seconds_per_day: 3600, end_user_audio_seconds_per_month: 600 }
    const { key, id, view } = await createKey({ limits, quotas })
    assert.deepEqual(view.limits, limits)
    assert.deepEqual(view.quotas, quotas)
    const one = await call('GET', `/v1/projects/${server.projectId}/keys/${id}`, `Token ${server.ownerKey}`)
    assert.deepEqual((one.body.api_key as Json).limits, limits)
    assert.deepEqual((one.body.api_key as Json).quotas, quotas)
    const own = await introspect(`Token ${key}`)
    assert.deepEqual(own.body.limits, limits)
    assert.deepEqual(own.body.quotas, quotas)
    const plain = await createKey({})
    for (const field of ['limits', 'quotas', 'allowed_ips', 'listen']) {
      assert.equal(field in plain.view, false, field)
    }
  })

  it('a bound key that creates a key passes its binding on, and cannot create a wider one', async () => {
    const { key } = await createKey({
      scopes: ['admin'],
      allowed_ips: ['127.0.0.1/32'],
      listen: { interim_results: false },
    })
    const create = (body: Json) =>
      call('POST', `/v1/projects/${server.projectId}/keys`, `Token ${key}`, {
        body: { comment: 'child', scopes: ['member'], ...body },
      })
    const child = await create({})
    assert.equal(child.status, 200, JSON.stringify(child.body))
    recordSecrets(child.body.key as string)
    assert.deepEqual(child.body.allowed_ips, ['127.0.0.1/32'])
    assert.deepEqual(child.body.listen, { interim_results: false })
    invalid(await create({ allowed_ips: ['10.0.0.0/8'] }), 'allowed_ips', 'a wider child')
    invalid(await create({ listen: { interim_results: true } }), 'listen.interim_results', 'interim results')
  })

  it('a single-use token transcribes once over REST; the second request is 401, and looking it up spends nothing', async () => {
    const token = await grant({ max_uses: 1 })
    assert.equal((await introspect(`Bearer ${token}`)).status, 200)
    const first = await listen(`Bearer ${token}`)
    assert.equal(first.status, 200, JSON.stringify(first.body))
    const second = await listen(`Bearer ${token}`)
    assert.equal(second.status, 401)
    assert.equal(second.body.err_code, 'INVALID_AUTH')
    // Still itself: introspection is not a use.
    assert.equal((await introspect(`Bearer ${token}`)).status, 200)
  })

  it('origin binding over REST: a token is held to it on the usage APIs, a key on every route', async () => {
    const token = await grant({ allowed_origins: [APP_ORIGIN] })
    assert.equal((await listen(`Bearer ${token}`, '', APP_ORIGIN)).status, 200)
    const other = await listen(`Bearer ${token}`, '', 'https://evil.example.com')
    assert.equal(other.status, 403)
    assert.equal(other.body.err_code, 'FORBIDDEN')
    assert.doesNotMatch(String(other.body.err_msg), /evil/)
    const none = await listen(`Bearer ${token}`)
    assert.equal(none.status, 403)
    assert.match(String(none.body.err_msg), /Origin/)
    // A server may still look the token up.
    assert.equal((await introspect(`Bearer ${token}`)).status, 200)

    const { key } = await createKey({ allowed_origins: [APP_ORIGIN] })
    assert.equal((await listen(`Token ${key}`, '', APP_ORIGIN)).status, 200)
    assert.equal((await listen(`Token ${key}`)).status, 403)
    assert.equal((await call('GET', '/v1/projects', `Token ${key}`)).status, 403)
    assert.equal((await call('GET', '/v1/projects', `Token ${key}`, { origin: APP_ORIGIN })).status, 200)
    assert.equal((await grantRaw({}, key)).status, 403)
    assert.equal((await grantRaw({}, key, APP_ORIGIN)).status, 200)
  })

  it('address binding over REST: 10.0.0.0/8 refuses loopback, 127.0.0.1/32 admits it, for tokens and keys', async () => {
    const outside = await listen(`Bearer ${await grant({ allowed_ips: ['10.0.0.0/8'] })}`)
    assert.equal(outside.status, 403)
    assert.equal(outside.body.err_code, 'FORBIDDEN')
    assert.equal((await listen(`Bearer ${await grant({ allowed_ips: ['127.0.0.1/32'] })}`)).status, 200)
    const { key } = await createKey({ allowed_ips: ['10.0.0.0/8'] })
    assert.equal((await call('GET', '/v1/projects', `Token ${key}`)).status, 403)
    assert.equal((await listen(`Token ${key}`)).status, 403)
    const { key: inside } = await createKey({ allowed_ips: ['127.0.0.1/32'] })
    assert.equal((await listen(`Token ${inside}`)).status, 200)
  })

  it('listen constraints hold over REST whatever the client asks, with the official SDK v5 sending the request', async () => {
    const token = await grant({
      listen: {
        allowed_models: ['nova-3'],
        allowed_languages: ['en'],
        max_sample_rate: 16000,
        interim_results: false,
      },
    })
    const client = new DeepgramClient({ accessToken: token, baseUrl: server.url })
    const ok = await client.listen.v1.media.transcribeFile(AUDIO, { model: 'nova-3' })
    assert.ok('results' in ok)
    const refusedBySdk = async (options: Record<string, unknown>, what: string) => {
      await assert.rejects(
        client.listen.v1.media.transcribeFile(
          AUDIO,
          options as Parameters<typeof client.listen.v1.media.transcribeFile>[1],
        ),
        (err: unknown) => {
          assert.ok(err instanceof DeepgramError, `${what}: ${String(err)}`)
          assert.equal(err.statusCode, 403, what)
          return true
        },
      )
    }
    await refusedBySdk({ model: 'nova-2' }, 'another model')
    await refusedBySdk({}, 'no model: the default (base) is not allowed')
    await refusedBySdk({ model: 'nova-3', language: 'fr' }, 'another language')
    // What the SDK's pre-recorded options cannot carry, sent raw.
    const rate = await listen(`Bearer ${token}`, '?model=nova-3&encoding=linear16&sample_rate=48000')
    assert.equal(rate.status, 403)
    assert.match(String(rate.body.err_msg), /sample_rate/)
    const interim = await listen(`Bearer ${token}`, '?model=nova-3&interim_results=true')
    assert.equal(interim.status, 403)
    assert.match(String(interim.body.err_msg), /interim_results/)
  })

  it('records grant.issued with the jti, end user, ttl and options, never the token', async () => {
    const token = await grant({ end_user: 'user-42', max_uses: 2, allowed_ips: ['127.0.0.1'] })
    const { jti } = decodeJwt(token)
    await server.earmark.services.audit?.flush()
    const events = await server.earmark.services.store.listAuditEvents(server.projectId, {
      type: 'grant.issued',
    })
    const event = events.find((e) => e.detail.jti === jti)
    assert.ok(event, 'a grant.issued event for the token')
    assert.equal(event.endUser, 'user-42')
    assert.deepEqual(event.detail, {
      jti,
      end_user: 'user-42',
      ttl: 120,
      options: { allowed_ips: ['127.0.0.1'], max_uses: 2 },
    })
    assert.equal(JSON.stringify(events).includes(token), false)
    assert.equal(JSON.stringify(events).includes(token.split('.')[2] ?? ''), false)
  })
})
