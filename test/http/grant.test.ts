import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, beforeEach, describe, it } from 'node:test'
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose'
import {
  addMember,
  bearerAuth,
  bootstrapProject,
  createTestEarmark,
  type Fixture,
  makeKey,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'

/** RFC 7230 token characters: what a WebSocket subprotocol value may hold (docs/deepgram-compat.md §0 #3). */
const TOKEN_CHARS = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/

describe('POST /v1/auth/grant', () => {
  let em: TestEarmark
  let fx: Fixture
  const opened: TestEarmark[] = []

  beforeEach(async () => {
    em = await createTestEarmark()
    opened.push(em)
    fx = await bootstrapProject(em.services)
  })
  after(async () => {
    for (const e of opened) await e.close()
  })

  const grant = (secret: string, payload?: unknown, headers: Record<string, string> = {}) =>
    em.app.inject({
      method: 'POST',
      url: '/v1/auth/grant',
      headers: { ...tokenAuth(secret), ...headers },
      ...(payload !== undefined ? { payload: payload as object } : {}),
    })

  it('grants a 30-second usage:write JWT by default, naming its project, parent key, iat, exp and jti', async () => {
    const res = await grant(fx.ownerKey)
    assert.equal(res.statusCode, 200)
    const { access_token: token, expires_in: expiresIn } = res.json() as {
      access_token: string
      expires_in: number
    }
    assert.equal(expiresIn, 30)
    assert.match(token, TOKEN_CHARS)
    const claims = decodeJwt(token)
    const header = decodeProtectedHeader(token)
    assert.equal(header.alg, 'HS256')
    assert.equal(typeof header.kid, 'string')
    assert.equal(claims.project_id, fx.projectId)
    const ownerKeyId = (await em.services.store.listKeys(fx.projectId))[0]?.id
    assert.equal(claims.sub, ownerKeyId)
    assert.equal(claims.accessor, ownerKeyId)
    assert.deepEqual(claims.scopes, ['usage:write'])
    assert.equal((claims.exp ?? 0) - (claims.iat ?? 0), 30)
    assert.equal(claims.iat, Math.floor(em.clock.now() / 1000))
    assert.equal(typeof claims.jti, 'string')
  })

  it('treats an empty JSON body as {} (SDK v3.12-v4.9 send one)', async () => {
    const res = await grant(fx.ownerKey, '', { 'content-type': 'application/json' })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().expires_in, 30)
  })

  it('honours ttl_seconds from 1 to 3600', async () => {
    for (const ttl of [1, 60, 3600]) {
      const res = await grant(fx.ownerKey, { ttl_seconds: ttl })
      assert.equal(res.statusCode, 200)
      assert.equal(res.json().expires_in, ttl)
    }
  })

  it('treats ttl_seconds null as not given', async () => {
    const res = await grant(fx.ownerKey, { ttl_seconds: null })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().expires_in, 30)
  })

  for (const ttl of [0, -5, 3601, 1.5, '60', true]) {
    it(`refuses ttl_seconds ${JSON.stringify(ttl)} with a 400 naming the field`, async () => {
      const res = await grant(fx.ownerKey, { ttl_seconds: ttl })
      assert.equal(res.statusCode, 400)
      assert.equal(res.json().err_code, 'INVALID_FIELD')
      assert.match(res.json().err_msg, /ttl_seconds/)
    })
  }

  it("never lets a token outlive its parent key's expiry", async () => {
    const key = await makeKey(em.services, fx.owner, {
      scopes: ['member'],
      expiresAt: em.clock.now() + 10_000,
    })
    const res = await grant(key.secret, { ttl_seconds: 3600 })
    assert.equal(res.statusCode, 200)
    assert.equal(res.json().expires_in, 10)
    assert.equal(decodeJwt(res.json().access_token).exp, Math.floor((em.clock.now() + 10_000) / 1000))
  })

  it('needs a member-or-higher key: a usage:write-only key is refused with 403 FORBIDDEN', async () => {
    const member = await addMember(em.services, {
      projectId: fx.projectId,
      email: 'm@example.com',
      role: 'member',
    })
    const usage = await makeKey(em.services, member, { scopes: ['usage:write'] })
    const refused = await grant(usage.secret)
    assert.equal(refused.statusCode, 403)
    assert.equal(refused.json().err_code, 'FORBIDDEN')
    const memberKey = await makeKey(em.services, member, { scopes: ['member'] })
    assert.equal((await grant(memberKey.secret)).statusCode, 200)
  })

  it('gives a token that works on usage routes, is refused for management and for granting, and expires', async () => {
    const token = (await grant(fx.ownerKey, { ttl_seconds: 5 })).json().access_token as string
    const details = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })
    assert.equal(details.statusCode, 200)
    assert.equal(details.json().type, 'access_token')
    assert.deepEqual(details.json().scopes, ['usage:write'])
    assert.equal(details.json().expires_in, 5)
    for (const [method, url] of [
      ['GET', '/v1/projects'],
      ['GET', `/v1/projects/${fx.projectId}/keys`],
      ['POST', '/v1/auth/grant'],
    ] as const) {
      const res = await em.app.inject({ method, url, headers: bearerAuth(token) })
      assert.equal(res.statusCode, 403, url)
      assert.equal(res.json().err_code, 'FORBIDDEN')
    }
    em.clock.advance(5000)
    const late = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })
    assert.equal(late.statusCode, 401)
    assert.equal(late.json().err_code, 'INVALID_AUTH')
  })

  it("revokes a parent key's tokens when the key is deleted", async () => {
    const key = await makeKey(em.services, fx.owner, { scopes: ['member'] })
    const token = (await grant(key.secret, { ttl_seconds: 600 })).json().access_token as string
    assert.equal((await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })).statusCode, 200)
    await em.services.store.deleteKey(fx.projectId, key.id, em.clock.now())
    const res = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })
    assert.equal(res.statusCode, 401)
  })

  it('refuses forged, tampered and unsigned tokens', async () => {
    const real = (await grant(fx.ownerKey, { ttl_seconds: 600 })).json().access_token as string
    const claims = decodeJwt(real)
    const header = decodeProtectedHeader(real)
    const forged = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: header.kid ?? '' })
      .sign(randomBytes(32))
    const [h, p, s] = real.split('.')
    const payload = JSON.parse(Buffer.from(p ?? '', 'base64url').toString())
    payload.scopes = ['owner']
    const tampered = [h, Buffer.from(JSON.stringify(payload)).toString('base64url'), s].join('.')
    const none = [
      Buffer.from(JSON.stringify({ alg: 'none', kid: header.kid })).toString('base64url'),
      p,
      '',
    ].join('.')
    // The real token is used first, so it is in the authenticator's cache, which finds grant tokens by
    // signature: the tampered one shares it and must still be refused.
    const ok = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(real) })
    assert.equal(ok.statusCode, 200)
    for (const [name, token] of Object.entries({ forged, tampered, none, garbage: 'not.a.jwt' })) {
      const res = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })
      assert.equal(res.statusCode, 401, name)
      assert.equal(res.json().err_code, 'INVALID_AUTH', name)
    }
  })

  it('keeps verifying tokens signed before a signing-key rotation, and signs new ones with the new kid', async () => {
    const before = (await grant(fx.ownerKey, { ttl_seconds: 600 })).json().access_token as string
    const kid = await em.services.grants.rotate()
    const after = (await grant(fx.ownerKey, { ttl_seconds: 600 })).json().access_token as string
    assert.equal(decodeProtectedHeader(after).kid, kid)
    assert.notEqual(decodeProtectedHeader(before).kid, kid)
    for (const token of [before, after]) {
      assert.equal(
        (await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })).statusCode,
        200,
      )
    }
  })

  it('carries an end_user into the token, its details and the usage it meters (Earmark extension)', async () => {
    const res = await grant(fx.ownerKey, { end_user: 'user-42' })
    assert.equal(res.statusCode, 200)
    const token = res.json().access_token as string
    assert.equal(decodeJwt(token).end_user, 'user-42')
    const details = await em.app.inject({ url: '/v1/auth/token', headers: bearerAuth(token) })
    assert.equal(details.json().end_user, 'user-42')
    for (const bad of ['', 42, 'x'.repeat(129)]) {
      const refused = await grant(fx.ownerKey, { end_user: bad })
      assert.equal(refused.statusCode, 400)
      assert.match(refused.json().err_msg, /end_user/)
    }
  })
})
