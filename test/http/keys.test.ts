import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, beforeEach, describe, it } from 'node:test'
import {
  addMember,
  bootstrapProject,
  createTestEarmark,
  type Fixture,
  makeKey,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'

interface CreatedKeyBody {
  api_key_id: string
  key: string
  comment: string
  scopes: string[]
  tags: string[]
  created: string
  expiration_date?: string
}

describe('keys API', () => {
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

  const create = (secret: string, body: unknown, url = `/v1/projects/${fx.projectId}/keys`) =>
    em.app.inject({ method: 'POST', url, headers: tokenAuth(secret), payload: body as object })

  it('creates a key with a TTL, shows its secret once, and refuses it the moment it expires', async () => {
    const res = await create(fx.ownerKey, {
      comment: 'browser',
      scopes: ['usage:write'],
      tags: ['web'],
      time_to_live_in_seconds: 10,
    })
    assert.equal(res.statusCode, 200)
    const key = res.json() as CreatedKeyBody
    assert.match(key.key, /^emk_[0-9a-f]{56}$/)
    assert.deepEqual(key.scopes, ['usage:write'])
    assert.deepEqual(key.tags, ['web'])
    assert.equal(Date.parse(key.expiration_date ?? ''), em.clock.now() + 10_000)

    const listed = await em.app.inject({
      url: `/v1/projects/${fx.projectId}/keys`,
      headers: tokenAuth(fx.ownerKey),
    })
    assert.ok(!listed.body.includes(key.key), 'the secret is never listed')
    const got = await em.app.inject({
      url: `/v1/projects/${fx.projectId}/keys/${key.api_key_id}`,
      headers: tokenAuth(fx.ownerKey),
    })
    assert.ok(!got.body.includes(key.key), 'the secret is never shown again')
    const shape = got.json() as {
      api_key: { api_key_id: string }
      item: { member: { api_key: { api_key_id: string } } }
    }
    assert.equal(shape.api_key.api_key_id, key.api_key_id)
    assert.equal(shape.item.member.api_key.api_key_id, key.api_key_id)

    const ok = await em.app.inject({ url: '/v1/auth/token', headers: tokenAuth(key.key) })
    assert.equal(ok.statusCode, 200)
    em.clock.advance(10_000)
    const refused = await em.app.inject({ url: '/v1/auth/token', headers: tokenAuth(key.key) })
    assert.equal(refused.statusCode, 401)
    assert.equal(refused.json().err_code, 'INVALID_AUTH')
  })

  it('accepts an expiration_date and lists keys by status', async () => {
    const soon = new Date(em.clock.now() + 5000).toISOString()
    const a = (
      await create(fx.ownerKey, { comment: 'a', scopes: ['usage:write'], expiration_date: soon })
    ).json()
    const b = (await create(fx.ownerKey, { comment: 'b', scopes: ['usage:write'] })).json()
    assert.equal(a.expiration_date, soon)
    assert.equal(b.expiration_date, undefined)
    em.clock.advance(6000)
    const ids = async (q: string) =>
      (await em.app.inject({ url: `/v1/projects/${fx.projectId}/keys${q}`, headers: tokenAuth(fx.ownerKey) }))
        .json()
        .api_keys.map((k: { api_key: { api_key_id: string } }) => k.api_key.api_key_id)
    assert.ok((await ids('?status=expired')).includes(a.api_key_id))
    assert.ok(!(await ids('?status=expired')).includes(b.api_key_id))
    assert.ok((await ids('?status=active')).includes(b.api_key_id))
    assert.ok(!(await ids('?status=active')).includes(a.api_key_id))
    const all = await ids('')
    assert.ok(all.includes(a.api_key_id) && all.includes(b.api_key_id))
    const bad = await em.app.inject({
      url: `/v1/projects/${fx.projectId}/keys?status=gone`,
      headers: tokenAuth(fx.ownerKey),
    })
    assert.equal(bad.statusCode, 400)
    assert.match(bad.json().err_msg, /status/)
  })

  const invalid: [string, unknown, string][] = [
    ['no comment', { scopes: ['usage:write'] }, 'comment'],
    ['no scopes', { comment: 'x' }, 'scopes'],
    ['empty scopes', { comment: 'x', scopes: [] }, 'scopes'],
    ['an unknown scope', { comment: 'x', scopes: ['usage:everything'] }, 'scopes'],
    ['scopes that are not strings', { comment: 'x', scopes: [1] }, 'scopes'],
    ['tags that are not an array', { comment: 'x', scopes: ['member'], tags: 'a' }, 'tags'],
    [
      'both expiry fields',
      {
        comment: 'x',
        scopes: ['member'],
        time_to_live_in_seconds: 60,
        expiration_date: '2030-01-01T00:00:00Z',
      },
      'expiration_date',
    ],
    [
      'a zero TTL',
      { comment: 'x', scopes: ['member'], time_to_live_in_seconds: 0 },
      'time_to_live_in_seconds',
    ],
    [
      'a fractional TTL',
      { comment: 'x', scopes: ['member'], time_to_live_in_seconds: 1.5 },
      'time_to_live_in_seconds',
    ],
    [
      'a TTL as a string',
      { comment: 'x', scopes: ['member'], time_to_live_in_seconds: '60' },
      'time_to_live_in_seconds',
    ],
    [
      'a date that is not a date',
      { comment: 'x', scopes: ['member'], expiration_date: 'soon' },
      'expiration_date',
    ],
    [
      'a date in the past',
      { comment: 'x', scopes: ['member'], expiration_date: '2001-01-01T00:00:00Z' },
      'expiration_date',
    ],
    ['a body that is an array', ['member'], 'body'],
  ]
  for (const [what, body, field] of invalid) {
    it(`refuses ${what} with a 400 that names the field, and stores nothing`, async () => {
      const res = await create(fx.ownerKey, body)
      assert.equal(res.statusCode, 400)
      const err = res.json() as { err_code: string; err_msg: string }
      assert.match(err.err_code, /^INVALID_(FIELD|JSON)$/)
      if (field !== 'body') assert.match(err.err_msg, new RegExp(field))
      assert.equal((await em.services.store.listKeys(fx.projectId)).length, 1, 'only the owner key exists')
    })
  }

  it('refuses malformed JSON with INVALID_JSON and an unsupported content type with 415', async () => {
    const bad = await em.app.inject({
      method: 'POST',
      url: `/v1/projects/${fx.projectId}/keys`,
      headers: { ...tokenAuth(fx.ownerKey), 'content-type': 'application/json' },
      payload: '{"comment":',
    })
    assert.equal(bad.statusCode, 400)
    assert.equal(bad.json().err_code, 'INVALID_JSON')
    const text = await em.app.inject({
      method: 'POST',
      url: `/v1/projects/${fx.projectId}/keys`,
      headers: { ...tokenAuth(fx.ownerKey), 'content-type': 'text/plain' },
      payload: 'comment=x',
    })
    assert.equal(text.statusCode, 415)
    assert.equal(text.json().err_code, 'UNSUPPORTED_MEDIA_TYPE')
  })

  it('refuses a body over the limit with 413 PAYLOAD_TOO_LARGE', async () => {
    const res = await create(fx.ownerKey, { comment: 'x'.repeat(70 * 1024), scopes: ['member'] })
    assert.equal(res.statusCode, 413)
    assert.equal(res.json().err_code, 'PAYLOAD_TOO_LARGE')
  })

  it('reads the body and ignores a copy of it in the query string (SDK v3/v4)', async () => {
    const res = await create(
      fx.ownerKey,
      { comment: 'from body', scopes: ['usage:write'] },
      `/v1/projects/${fx.projectId}/keys?comment=from%20query&scopes=owner`,
    )
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json().scopes, ['usage:write'])
    assert.equal(res.json().comment, 'from body')
  })

  it('never lets a key grant a scope it does not hold', async () => {
    const member = await addMember(em.services, {
      projectId: fx.projectId,
      email: 'm@example.com',
      role: 'member',
    })
    const memberKey = await makeKey(em.services, member, { scopes: ['member'] })
    for (const scopes of [['admin'], ['owner'], ['members:read'], ['member', 'billing:read']]) {
      const res = await create(memberKey.secret, { comment: 'escalate', scopes })
      assert.equal(res.statusCode, 403, `scopes ${scopes.join(',')}`)
      assert.equal(res.json().err_code, 'FORBIDDEN')
    }
    assert.equal((await create(memberKey.secret, { comment: 'ok', scopes: ['usage:write'] })).statusCode, 200)
    // A key holding `owner` on a member-role account is capped to the member role.
    const capped = await makeKey(em.services, member, { scopes: ['owner'] })
    assert.equal((await create(capped.secret, { comment: 'escalate', scopes: ['admin'] })).statusCode, 403)
  })

  it('never lets a key create a key that outlives it', async () => {
    const shortLived = await makeKey(em.services, fx.owner, {
      scopes: ['owner'],
      expiresAt: em.clock.now() + 60_000,
    })
    const res = await create(shortLived.secret, { comment: 'forever', scopes: ['usage:write'] })
    assert.equal(res.statusCode, 200)
    assert.equal(Date.parse(res.json().expiration_date), em.clock.now() + 60_000)
  })

  it('shows admins and members only their own keys, and owners every key', async () => {
    const admin = await addMember(em.services, {
      projectId: fx.projectId,
      email: 'a@example.com',
      role: 'admin',
    })
    const adminKey = await makeKey(em.services, admin, { scopes: ['admin'] })
    const ownerOnly = await makeKey(em.services, fx.owner, { scopes: ['usage:write'] })
    const list = async (secret: string) =>
      (await em.app.inject({ url: `/v1/projects/${fx.projectId}/keys`, headers: tokenAuth(secret) }))
        .json()
        .api_keys.map((k: { api_key: { api_key_id: string } }) => k.api_key.api_key_id)
    assert.deepEqual(await list(adminKey.secret), [adminKey.id])
    assert.equal((await list(fx.ownerKey)).length, 3)
    const peek = await em.app.inject({
      url: `/v1/projects/${fx.projectId}/keys/${ownerOnly.id}`,
      headers: tokenAuth(adminKey.secret),
    })
    assert.equal(peek.statusCode, 404)
    assert.equal(peek.json().err_code, 'KEY_NOT_FOUND')
    const del = await em.app.inject({
      method: 'DELETE',
      url: `/v1/projects/${fx.projectId}/keys/${ownerOnly.id}`,
      headers: tokenAuth(adminKey.secret),
    })
    assert.equal(del.statusCode, 404)
  })

  it('refuses to let a weaker key of the same member delete a stronger one', async () => {
    const weak = await makeKey(em.services, fx.owner, { scopes: ['member'] })
    const strong = await makeKey(em.services, fx.owner, { scopes: ['owner'] })
    const res = await em.app.inject({
      method: 'DELETE',
      url: `/v1/projects/${fx.projectId}/keys/${strong.id}`,
      headers: tokenAuth(weak.secret),
    })
    assert.equal(res.statusCode, 403)
    assert.equal(res.json().err_code, 'FORBIDDEN')
  })

  it('deletes a key, refuses it at once with INVALID_AUTH, and answers 404 for a second delete', async () => {
    const k = (await create(fx.ownerKey, { comment: 'x', scopes: ['usage:write'] })).json() as CreatedKeyBody
    const url = `/v1/projects/${fx.projectId}/keys/${k.api_key_id}`
    const del = await em.app.inject({ method: 'DELETE', url, headers: tokenAuth(fx.ownerKey) })
    assert.equal(del.statusCode, 200)
    assert.deepEqual(del.json(), { message: 'Successfully deleted the API key!' })
    const use = await em.app.inject({ url: '/v1/auth/token', headers: tokenAuth(k.key) })
    assert.equal(use.statusCode, 401)
    assert.equal(use.json().err_code, 'INVALID_AUTH')
    const again = await em.app.inject({ method: 'DELETE', url, headers: tokenAuth(fx.ownerKey) })
    assert.equal(again.statusCode, 404)
    assert.equal(again.json().err_code, 'KEY_NOT_FOUND')
  })

  it('answers an unknown route with a Deepgram-shaped 404 and a request id', async () => {
    const res = await em.app.inject({ url: '/v1/nothing-here' })
    assert.equal(res.statusCode, 404)
    assert.equal(res.json().err_code, 'NOT_FOUND')
    assert.equal(res.json().request_id, res.headers['dg-request-id'])
  })
})

describe('key storage', () => {
  it('keeps only the hash of a secret in the database file', async () => {
    const dir = tempDataDir()
    const em = await createTestEarmark(join(dir, 'earmark.sqlite'))
    try {
      const fx = await bootstrapProject(em.services)
      const res = await em.app.inject({
        method: 'POST',
        url: `/v1/projects/${fx.projectId}/keys`,
        headers: tokenAuth(fx.ownerKey),
        payload: { comment: 'x', scopes: ['usage:write'] },
      })
      const secret = res.json().key as string
      await em.close()
      const bytes = Buffer.concat(
        ['earmark.sqlite', 'earmark.sqlite-wal']
          .map((f) => {
            try {
              return readFileSync(join(dir, f))
            } catch {
              return Buffer.alloc(0)
            }
          })
          .filter((b) => b.length > 0),
      )
      assert.ok(bytes.length > 0)
      for (const s of [secret, fx.ownerKey]) {
        assert.equal(bytes.indexOf(s), -1, 'secret stored in clear')
        assert.equal(bytes.indexOf(s.slice(4, 40)), -1, 'part of a secret stored in clear')
      }
    } finally {
      removeDir(dir)
    }
  })
})
