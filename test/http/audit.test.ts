import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { createAuditLog } from '../../src/audit/index.js'
import { createRevocationBus } from '../../src/revocation/index.js'
import type { AuditEvent } from '../../src/store/index.js'
import {
  addMember,
  bootstrapProject,
  createOtherProject,
  createTestEarmark,
  makeKey,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'

// The audit trail through the API (docs/audit.md): which events the management routes write, with which
// fields, never a secret; the route's filters and paging; who may read it.

interface EventView {
  id: string
  type: string
  time: string
  actor_key_id: string | null
  key_id: string | null
  end_user: string | null
  ip: string | null
  request_id: string | null
  detail: Record<string, unknown>
}

describe('the audit trail', () => {
  let em: TestEarmark
  let projectId: string
  let ownerKey: string
  let ownerKeyId: string
  let otherProjectId: string
  /** Every secret the tests handle: none may appear in any stored event. */
  const secrets: string[] = []

  const api = async (method: string, url: string, key = ownerKey, payload?: object) => {
    const res = await em.app.inject({
      method: method as 'GET',
      url,
      headers: tokenAuth(key),
      ...(payload ? { payload } : {}),
    })
    return {
      status: res.statusCode,
      body: res.json() as Record<string, unknown>,
      requestId: String(res.headers['dg-request-id']),
    }
  }

  const audit = async (query = '', key = ownerKey) => {
    const res = await api('GET', `/v1/projects/${projectId}/audit${query}`, key)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    return res.body as { events: EventView[]; page: number; limit: number }
  }

  /** Every event of both projects, as stored. */
  const stored = async (): Promise<AuditEvent[]> => {
    await em.services.audit?.flush()
    return [
      ...(await em.services.store.listAuditEvents(projectId, {})),
      ...(await em.services.store.listAuditEvents(otherProjectId, {})),
    ]
  }

  before(async () => {
    em = await createTestEarmark()
    const { services } = em
    // The in-process helper builds its services without these; the routes read them from the same object.
    services.audit = createAuditLog({ store: services.store, clock: services.clock })
    services.revocations = createRevocationBus()
    const fx = await bootstrapProject(services)
    projectId = fx.projectId
    ownerKey = fx.ownerKey
    secrets.push(ownerKey)
    const other = await createOtherProject(services)
    otherProjectId = other.projectId
    secrets.push(other.ownerKey)
    ownerKeyId = String((await api('GET', '/v1/auth/token')).body.api_key_id)
  })
  after(() => em.close())

  it('records a created key with its scopes, tags, expiry and option names, the actor, address and request id', async () => {
    const res = await api('POST', `/v1/projects/${projectId}/keys`, ownerKey, {
      comment: 'audited',
      scopes: ['member'],
      tags: ['web', 'end_user:alice'],
      time_to_live_in_seconds: 3600,
    })
    assert.equal(res.status, 200)
    secrets.push(String(res.body.key))
    const keyId = String(res.body.api_key_id)
    const [event] = (await audit(`?type=key.created&key_id=${keyId}`)).events
    assert.ok(event, 'a key.created event')
    assert.equal(event.actor_key_id, ownerKeyId)
    assert.equal(event.key_id, keyId)
    assert.equal(event.ip, '127.0.0.1')
    assert.equal(event.request_id, res.requestId)
    assert.equal(event.end_user, null)
    assert.equal(event.time, new Date(em.clock.now()).toISOString())
    assert.deepEqual(event.detail, {
      scopes: ['member'],
      tags: ['web', 'end_user:alice'],
      expires_at: res.body.expiration_date,
      options: [],
      via: 'api',
    })
  })

  it('records a deleted key, a rerolled key (with its grace period) and a changed role', async () => {
    const { services } = em
    const subject = await makeKey(
      services,
      (await services.store.listMembers(projectId))[0] ?? assert.fail(),
      {
        scopes: ['usage:write'],
      },
    )
    secrets.push(subject.secret)
    const reroll = await api('POST', `/v1/projects/${projectId}/keys/${subject.id}/reroll`, ownerKey, {
      grace_period_seconds: 60,
    })
    assert.equal(reroll.status, 200)
    secrets.push(String(reroll.body.key))
    const del = await api('DELETE', `/v1/projects/${projectId}/keys/${subject.id}`)
    assert.equal(del.status, 200)
    const member = await addMember(services, { projectId, email: 'promoted@example.com', role: 'member' })
    const role = await api('PUT', `/v1/projects/${projectId}/members/${member.id}/scopes`, ownerKey, {
      scope: 'admin',
    })
    assert.equal(role.status, 200)

    const byType = async (type: string) => (await audit(`?type=${type}`)).events[0] ?? assert.fail(type)
    const rerolled = await byType('key.rerolled')
    assert.equal(rerolled.key_id, subject.id)
    assert.equal(rerolled.request_id, reroll.requestId)
    assert.deepEqual(rerolled.detail, {
      grace_period_seconds: 60,
      previous_secret_expires_at: new Date(em.clock.now() + 60_000).toISOString(),
      via: 'api',
    })
    const deleted = await byType('key.deleted')
    assert.equal(deleted.key_id, subject.id)
    assert.equal(deleted.actor_key_id, ownerKeyId)
    assert.equal(deleted.request_id, del.requestId)
    const changed = await byType('member.role_changed')
    assert.equal(changed.actor_key_id, ownerKeyId)
    assert.deepEqual(changed.detail, { member_id: member.id, from: 'member', to: 'admin' })
  })

  it('records a retired signing key in every project, naming the acting key only in its own', async () => {
    const kid = await em.services.grants.rotate()
    const res = await api('DELETE', `/v1/auth/signing-keys/${kid}`)
    assert.equal(res.status, 200)
    const events = (await stored()).filter((e) => e.type === 'signing_key.retired' && e.detail.kid === kid)
    assert.deepEqual(events.map((e) => e.projectId).sort(), [projectId, otherProjectId].sort())
    const own = events.find((e) => e.projectId === projectId)
    const elsewhere = events.find((e) => e.projectId === otherProjectId)
    assert.equal(own?.actorKeyId, ownerKeyId)
    assert.equal(own?.requestId, res.requestId)
    assert.equal(elsewhere?.actorKeyId, null, 'another project never learns the acting key')
    assert.deepEqual(elsewhere?.detail, { kid, current_kid: res.body.current_kid, via: 'api' })
  })

  it('lists newest first and filters by type, type prefix, key, end user and time, with paging', async () => {
    const { store, clock } = em.services
    const t0 = clock.now() + 3_600_000
    const ev = (i: number, type: string, keyId: string | null, endUser: string | null): AuditEvent => ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      projectId,
      at: t0 + i * 1000,
      type,
      actorKeyId: null,
      keyId,
      endUser,
      ip: null,
      requestId: null,
      detail: { i },
    })
    await store.insertAuditEvents([
      ev(1, 'grant.issued', 'k-a', 'alice'),
      ev(2, 'grant.issued', 'k-b', 'bob'),
      ev(3, 'suspicious.distinct_ips', 'k-a', 'alice'),
      ev(4, 'suspicious.new_origin', 'k-b', null),
      ev(5, 'grant.issuedx', 'k-a', null),
    ])
    // Another project's events never show.
    await store.insertAuditEvents([
      { ...ev(6, 'grant.issued', 'k-a', 'alice'), id: randomUUID(), projectId: otherProjectId },
    ])
    const after = `start=${encodeURIComponent(new Date(t0).toISOString())}`
    const is = async (query: string) => (await audit(`?${after}&${query}`)).events.map((e) => e.detail.i)

    assert.deepEqual(await is(''), [5, 4, 3, 2, 1], 'newest first')
    assert.deepEqual(await is('type=grant.issued'), [2, 1], 'an exact type matches only itself')
    assert.deepEqual(await is('type=suspicious.'), [4, 3], 'a prefix ending in a dot')
    assert.deepEqual(await is('key_id=k-a'), [5, 3, 1])
    assert.deepEqual(await is('end_user=alice'), [3, 1])
    assert.deepEqual(await is('key_id=k-a&type=grant.'), [5, 1])
    const end = encodeURIComponent(new Date(t0 + 3000).toISOString())
    assert.deepEqual(await is(`end=${end}`), [2, 1], 'end is exclusive')
    assert.deepEqual(await is('limit=2'), [5, 4])
    assert.deepEqual(await is('limit=2&page=1'), [3, 2])
    assert.deepEqual(await is('limit=2&page=3'), [])
    const page = await audit(`?${after}&limit=2&page=1`)
    assert.equal(page.page, 1)
    assert.equal(page.limit, 2)
    assert.equal((await audit()).limit, 100, 'the default limit')
  })

  it('refuses bad filters with INVALID_FIELD naming the field', async () => {
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=1001', 'limit'],
      ['page=-1', 'page'],
      ['start=yesterday', 'start'],
      ['end=2026-13-01', 'end'],
      ['type=Key.Created', 'type'],
      ['type=key..created', 'type'],
      ['type=a&type=b', 'type'],
      [`key_id=${'k'.repeat(300)}`, 'key_id'],
    ] as const) {
      const res = await api('GET', `/v1/projects/${projectId}/audit?${query}`)
      assert.equal(res.status, 400, query)
      assert.equal(res.body.err_code, 'INVALID_FIELD', query)
      assert.match(String(res.body.err_msg), new RegExp(field), query)
    }
  })

  it('is read with audit:read: admins and owners, not members, usage keys or other projects', async () => {
    const { services } = em
    const members = await services.store.listMembers(projectId)
    const admin = await addMember(services, { projectId, email: 'reader@example.com', role: 'admin' })
    const owner = members.find((m) => m.role === 'owner') ?? assert.fail()
    const adminKey = await makeKey(services, admin, { scopes: ['admin'] })
    const memberKey = await makeKey(services, owner, { scopes: ['member'] })
    const usageKey = await makeKey(services, owner, { scopes: ['usage:write'] })
    const auditOnly = await makeKey(services, owner, { scopes: ['audit:read'] })
    const other = (await services.store.listKeys(otherProjectId))[0]
    assert.ok(other)
    secrets.push(adminKey.secret, memberKey.secret, usageKey.secret, auditOnly.secret)
    const url = `/v1/projects/${projectId}/audit`
    assert.equal((await api('GET', url, adminKey.secret)).status, 200)
    assert.equal((await api('GET', url, auditOnly.secret)).status, 200, 'the single scope is enough')
    for (const key of [memberKey.secret, usageKey.secret]) {
      const res = await api('GET', url, key)
      assert.equal(res.status, 403)
      assert.equal(res.body.err_code, 'FORBIDDEN')
    }
    const grant = await api('POST', '/v1/auth/grant', ownerKey, { ttl_seconds: 60 })
    secrets.push(String(grant.body.access_token))
    const byToken = await em.app.inject({
      method: 'GET',
      url,
      headers: { authorization: `Bearer ${grant.body.access_token}` },
    })
    assert.equal(byToken.statusCode, 403)
    const elsewhere = await api('GET', `/v1/projects/${otherProjectId}/audit`)
    assert.equal(elsewhere.status, 404)
    assert.equal(elsewhere.body.err_code, 'PROJECT_NOT_FOUND')
  })

  it('holds no key secret and no grant token in any stored event', async () => {
    const events = await stored()
    assert.ok(events.length >= 8, `events recorded (${events.length})`)
    const text = JSON.stringify(events)
    for (const secret of secrets) assert.ok(!text.includes(secret), 'a secret reached the audit trail')
    assert.doesNotMatch(text, /emk_[A-Za-z0-9_-]{8,}/, 'nothing key-shaped')
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\./, 'nothing JWT-shaped')
  })
})
