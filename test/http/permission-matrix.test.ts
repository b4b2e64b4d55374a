import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { createEngine, type Engine } from '../../src/engines/index.js'
import type { Member } from '../../src/store/index.js'
import {
  addMember,
  bootstrapProject,
  createOtherProject,
  createTestEarmark,
  makeKey,
  type TestEarmark,
} from '../helpers/earmark.js'

/**
 * Every route × every kind of credential → the status (and so the err_code) it must get.
 * The table is written out by hand: it is the specification, not derived from the code under test.
 */
const CREDENTIALS = [
  'none',
  'malformed',
  'unknown',
  'deleted',
  'expired',
  'otherProject',
  'member',
  'admin',
  'owner',
  'usageOnly',
  'grant',
  'expiredGrant',
] as const
type Cred = (typeof CREDENTIALS)[number]

interface RouteCase {
  method: string
  /** As registered with Fastify. */
  url: string
  body?: unknown
  /** Appended to the URL. */
  query?: string
  headers?: Record<string, string>
  /** Statuses in CREDENTIALS order. */
  expect: number[]
  /** The content type of a 2xx that is not JSON (audio). */
  produces?: string
}

const DENIED = [401, 401, 401, 401, 401]
const ROUTES: RouteCase[] = [
  { method: 'GET', url: '/healthz', expect: [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200] },
  {
    method: 'OPTIONS',
    url: '*',
    headers: { origin: 'http://app.example', 'access-control-request-method': 'POST' },
    expect: [204, 204, 204, 204, 204, 204, 204, 204, 204, 204, 204, 204],
  },
  { method: 'GET', url: '/v1/projects', expect: [...DENIED, 200, 200, 200, 200, 403, 403, 401] },
  { method: 'GET', url: '/v1/projects/:project_id', expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401] },
  {
    method: 'PATCH',
    url: '/v1/projects/:project_id',
    body: { name: 'Renamed' },
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/keys',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'POST',
    url: '/v1/projects/:project_id/keys',
    body: { comment: 'matrix', scopes: ['usage:write'] },
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/keys/:key_id',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'DELETE',
    url: '/v1/projects/:project_id/keys/:key_id',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/members',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/members/:member_id/scopes',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'PUT',
    url: '/v1/projects/:project_id/members/:member_id/scopes',
    body: { scope: 'member' },
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/requests',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/requests/:request_id',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/usage',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'POST',
    url: '/v1/listen',
    query: '?encoding=linear16&sample_rate=16000',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.alloc(16000),
    expect: [...DENIED, 200, 200, 200, 200, 200, 200, 401],
  },
  { method: 'POST', url: '/v1/auth/grant', expect: [...DENIED, 200, 200, 200, 200, 403, 403, 401] },
  { method: 'GET', url: '/v1/auth/token', expect: [...DENIED, 200, 200, 200, 200, 200, 200, 401] },
  {
    method: 'POST',
    url: '/v1/speak',
    body: { text: 'hello' },
    produces: 'audio/mpeg',
    expect: [...DENIED, 200, 200, 200, 200, 200, 200, 401],
  },
]

const ERR_CODE: Record<number, string> = { 401: 'INVALID_AUTH', 403: 'FORBIDDEN', 404: 'PROJECT_NOT_FOUND' }

describe('permission matrix', () => {
  let em: TestEarmark
  let engine: Engine
  let projectId: string
  let headers: Record<Cred, Record<string, string>>
  let members: Record<'owner' | 'admin' | 'member', Member>
  let subject: Member
  const requestId = '5b0c0e8e-0000-4000-8000-000000000001'

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 1 })
    em = await createTestEarmark(':memory:', { engine })
    const { services, clock } = em
    const fx = await bootstrapProject(services)
    projectId = fx.projectId
    const admin = await addMember(services, { projectId, email: 'admin@example.com', role: 'admin' })
    const member = await addMember(services, { projectId, email: 'member@example.com', role: 'member' })
    subject = await addMember(services, { projectId, email: 'subject@example.com', role: 'member' })
    members = { owner: fx.owner, admin, member }
    const adminKey = await makeKey(services, admin, { scopes: ['admin'] })
    const memberKey = await makeKey(services, member, { scopes: ['member'] })
    const usageKey = await makeKey(services, member, { scopes: ['usage:write'] })
    const deleted = await makeKey(services, fx.owner, { scopes: ['owner'] })
    await services.store.deleteKey(projectId, deleted.id, clock.now())
    const expired = await makeKey(services, fx.owner, { scopes: ['owner'], expiresAt: clock.now() + 1000 })
    const other = await createOtherProject(services)
    await services.store.insertUsage({
      id: requestId,
      projectId,
      keyId: memberKey.id,
      endUser: null,
      tags: [],
      endpoint: 'listen',
      method: 'sync',
      path: '/v1/listen',
      model: null,
      startedAt: clock.now(),
      endedAt: clock.now(),
      audioSeconds: 1,
      characters: 0,
      status: 200,
      detail: null,
    })
    const shortGrant = services.grants.mint({
      projectId,
      accessor: memberKey.id,
      ttlSeconds: 1,
      notAfterMs: null,
    })
    clock.advance(2000)
    const grant = services.grants.mint({
      projectId,
      accessor: memberKey.id,
      ttlSeconds: 3600,
      notAfterMs: null,
    })
    const token = (s: string) => ({ authorization: `Token ${s}` })
    headers = {
      none: {},
      malformed: { authorization: 'Basic dXNlcjpwYXNz' },
      unknown: token(generateKeySecret()),
      deleted: token(deleted.secret),
      expired: token(expired.secret),
      otherProject: token(other.ownerKey),
      member: token(memberKey.secret),
      admin: token(adminKey.secret),
      owner: token(fx.ownerKey),
      usageOnly: token(usageKey.secret),
      grant: { authorization: `Bearer ${grant.token}` },
      expiredGrant: { authorization: `Bearer ${shortGrant.token}` },
    }
  })
  after(async () => {
    await em.close()
    await engine.close()
  })

  /** A fresh key for a cell to read or delete: owned by the caller's member, so "own keys" rules allow it. */
  async function targetKey(cred: Cred): Promise<string> {
    const owner = cred === 'admin' ? members.admin : cred === 'member' ? members.member : members.owner
    return (await makeKey(em.services, owner, { scopes: ['usage:write'] })).id
  }

  for (const route of ROUTES) {
    it(`${route.method} ${route.url} answers each credential as specified`, async () => {
      const failures: string[] = []
      for (const [i, cred] of CREDENTIALS.entries()) {
        const expected = route.expect[i]
        const url = `${route.url}${route.query ?? ''}`
          .replace('*', '/v1/projects')
          .replace(':project_id', projectId)
          .replace(':key_id', route.url.includes(':key_id') ? await targetKey(cred) : '')
          .replace(':member_id', subject.id)
          .replace(':request_id', requestId)
        const res = await em.app.inject({
          method: route.method as 'GET',
          url,
          headers: { ...headers[cred], ...route.headers },
          ...(route.body !== undefined ? { payload: route.body as object } : {}),
        })
        if (res.statusCode !== expected) {
          failures.push(`${cred}: got ${res.statusCode}, want ${expected} (${res.body})`)
          continue
        }
        assert.ok(res.headers['dg-request-id'], `${cred}: dg-request-id header`)
        if (expected >= 400) {
          const body = res.json() as { err_code: string; request_id: string }
          if (body.err_code !== ERR_CODE[expected]) failures.push(`${cred}: err_code ${body.err_code}`)
          if (body.request_id !== res.headers['dg-request-id']) failures.push(`${cred}: request_id mismatch`)
          // SDK v5's DeepgramError.requestId reads x-request-id.
          if (res.headers['x-request-id'] !== body.request_id) failures.push(`${cred}: x-request-id`)
        } else if (expected === 200 && route.produces) {
          assert.equal(res.headers['content-type'], route.produces, `${cred}: content type`)
          assert.ok(res.rawPayload.length > 0, `${cred}: a body`)
        } else if (expected === 200) {
          assert.equal(typeof res.json(), 'object', `${cred}: a 2xx carries a JSON body`)
        }
      }
      assert.deepEqual(failures, [])
    })
  }

  it('covers every registered route, and registers every route it covers', () => {
    const registered = new Set(
      em.routes.flatMap((r) => (Array.isArray(r.method) ? r.method : [r.method]).map((m) => `${m} ${r.url}`)),
    )
    const covered = new Set(ROUTES.map((r) => `${r.method} ${r.url}`))
    assert.deepEqual(
      [...registered].filter((r) => !covered.has(r)).sort(),
      [],
      'routes missing from the matrix',
    )
    assert.deepEqual([...covered].filter((r) => !registered.has(r)).sort(), [], 'matrix rows with no route')
  })
})
