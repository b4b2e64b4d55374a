import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Member } from '../../src/store/index.js'
import {
  addMember,
  bootstrapProject,
  createTestEarmark,
  makeKey,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Key reroll (docs/audit.md, "Key reroll"): a new secret for the same key, the old one good for a grace period
// and never after, measured with the injected clock.

describe('POST /v1/projects/:project_id/keys/:key_id/reroll', () => {
  let em: TestEarmark
  let projectId: string
  let ownerKey: string
  let owner: Member

  const call = async (method: 'GET' | 'POST', url: string, key: string, payload?: object) => {
    const res = await em.app.inject({ method, url, headers: tokenAuth(key), ...(payload ? { payload } : {}) })
    return { status: res.statusCode, body: res.json() as Record<string, unknown> }
  }
  const reroll = async (keyId: string, payload?: object, key = ownerKey) => {
    const res = await call('POST', `/v1/projects/${projectId}/keys/${keyId}/reroll`, key, payload)
    if (typeof res.body.key === 'string') recordSecrets(res.body.key)
    return res
  }
  /** The status `GET /v1/auth/token` gives a secret: 200 while it works, 401 once it does not. */
  const works = async (secret: string) => (await call('GET', '/v1/auth/token', secret)).status

  before(async () => {
    em = await createTestEarmark()
    const fx = await bootstrapProject(em.services)
    projectId = fx.projectId
    ownerKey = fx.ownerKey
    owner = fx.owner
  })
  after(() => em.close())

  it('answers like create: a new secret once, the same id, scopes, tags and expiry', async () => {
    const created = await call('POST', `/v1/projects/${projectId}/keys`, ownerKey, {
      comment: 'browser app',
      scopes: ['member'],
      tags: ['web'],
      time_to_live_in_seconds: 86_400,
    })
    assert.equal(created.status, 200)
    recordSecrets(String(created.body.key))
    const res = await reroll(String(created.body.api_key_id))
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.match(String(res.body.key), /^emk_[0-9a-f]{56}$/)
    assert.notEqual(res.body.key, created.body.key)
    const { key: _new, previous_key_expiration_date: graceEnds, ...view } = res.body
    const { key: _old, ...createdView } = created.body
    assert.deepEqual(view, createdView, 'the same key view')
    assert.equal(graceEnds, new Date(em.clock.now() + 3600 * 1000).toISOString(), 'an hour by default')
    const read = await call('GET', `/v1/projects/${projectId}/keys/${created.body.api_key_id}`, ownerKey)
    assert.equal(JSON.stringify(read.body).includes(String(res.body.key)), false, 'shown once')
    assert.equal(await works(String(res.body.key)), 200, 'the new secret works')
  })

  it('keeps the old secret working for the grace period and refuses it after, to the millisecond', async () => {
    const key = await makeKey(em.services, owner, { scopes: ['member'] })
    const res = await reroll(key.id, { grace_period_seconds: 600 })
    assert.equal(res.status, 200)
    const fresh = String(res.body.key)
    const token = await call('GET', '/v1/auth/token', key.secret)
    assert.equal(token.status, 200, 'the old secret works during the grace period')
    assert.equal(token.body.api_key_id, key.id)
    assert.equal(token.body.expiration_date, res.body.previous_key_expiration_date, 'and says when it stops')
    em.clock.advance(600_000 - 1)
    assert.equal(await works(key.secret), 200, 'a millisecond before the end')
    em.clock.advance(1)
    assert.equal(await works(key.secret), 401, 'refused once the grace period is over')
    assert.equal(await works(fresh), 200, 'the new secret goes on')
    em.clock.advance(86_400_000)
    assert.equal(await works(key.secret), 401, 'and never again')
  })

  it('with a grace period of 0, refuses the old secret at once', async () => {
    const key = await makeKey(em.services, owner, { scopes: ['member'] })
    const res = await reroll(key.id, { grace_period_seconds: 0 })
    assert.equal(res.status, 200)
    assert.equal(await works(key.secret), 401)
    assert.equal(await works(String(res.body.key)), 200)
  })

  it('leaves the grant tokens the old secret minted good: they name the key, not its secret', async () => {
    const key = await makeKey(em.services, owner, { scopes: ['member'] })
    const grant = await call('POST', '/v1/auth/grant', key.secret, { ttl_seconds: 3600 })
    assert.equal(grant.status, 200)
    recordSecrets(String(grant.body.access_token))
    assert.equal((await reroll(key.id, { grace_period_seconds: 0 })).status, 200)
    const res = await em.app.inject({
      method: 'GET',
      url: '/v1/auth/token',
      headers: { authorization: `Bearer ${grant.body.access_token}` },
    })
    assert.equal(res.statusCode, 200)
  })

  it('refuses a grace period that is not an integer from 0 to 86400 with INVALID_FIELD', async () => {
    const key = await makeKey(em.services, owner, { scopes: ['member'] })
    for (const grace of [-1, 86_401, 1.5, '60', true]) {
      const res = await reroll(key.id, { grace_period_seconds: grace })
      assert.equal(res.status, 400, String(grace))
      assert.equal(res.body.err_code, 'INVALID_FIELD')
      assert.match(String(res.body.err_msg), /grace_period_seconds/)
    }
    assert.equal(await works(key.secret), 200, 'a refused reroll changed nothing')
  })

  it('follows the delete rules: own keys unless owner, no wider than the caller, unknown ids 404', async () => {
    const { services } = em
    const admin = await addMember(services, { projectId, email: 'admin@example.com', role: 'admin' })
    const adminKey = await makeKey(services, admin, { scopes: ['admin'] })
    const adminMemberKey = await makeKey(services, admin, { scopes: ['member'] })
    const ownersKey = await makeKey(services, owner, { scopes: ['member'] })
    const usageKey = await makeKey(services, owner, { scopes: ['usage:write'] })

    const notVisible = await reroll(ownersKey.id, {}, adminKey.secret)
    assert.equal(notVisible.status, 404, "an admin does not see the owner's keys")
    assert.equal(notVisible.body.err_code, 'KEY_NOT_FOUND')
    const wider = await reroll(adminKey.id, {}, adminMemberKey.secret)
    assert.equal(wider.status, 403, 'a member-scoped key cannot reroll an admin key')
    const noScope = await reroll(usageKey.id, {}, usageKey.secret)
    assert.equal(noScope.status, 403, 'usage:write alone cannot reroll')
    assert.equal((await reroll('no-such-key')).status, 404)
    await services.store.deleteKey(projectId, usageKey.id, services.clock.now())
    assert.equal((await reroll(usageKey.id)).status, 404, 'a deleted key')
    assert.equal((await reroll(adminMemberKey.id, {}, adminKey.secret)).status, 200, 'own narrower key')
  })

  it('refuses an expired key, and a credential that would give a key a secret outliving itself', async () => {
    const { services, clock } = em
    const shortLived = await makeKey(services, owner, { scopes: ['owner'], expiresAt: clock.now() + 60_000 })
    const lasting = await makeKey(services, owner, { scopes: ['member'] })
    const res = await reroll(lasting.id, {}, shortLived.secret)
    assert.equal(res.status, 403, 'an expiring key cannot reroll a key without expiry')
    assert.equal((await reroll(shortLived.id, {}, shortLived.secret)).status, 200, 'but can reroll itself')

    // A secret living on only in its grace period cannot buy itself a fresh, lasting secret.
    const leaked = await makeKey(services, owner, { scopes: ['owner'] })
    assert.equal((await reroll(leaked.id, { grace_period_seconds: 3600 })).status, 200)
    const again = await reroll(leaked.id, {}, leaked.secret)
    assert.equal(again.status, 403)
    assert.equal(again.body.err_code, 'FORBIDDEN')

    const expiring = await makeKey(services, owner, { scopes: ['member'], expiresAt: clock.now() + 1000 })
    clock.advance(1000)
    const expired = await reroll(expiring.id)
    assert.equal(expired.status, 409)
    assert.equal(expired.body.err_code, 'CONFLICT')
  })
})
