import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { createEngine, type Engine } from '../../src/engines/index.js'
import type { Services } from '../../src/projects/index.js'
import type { Member } from '../../src/store/index.js'
import {
  addMember,
  bootstrapProject,
  createOtherProject,
  createTestEarmark,
  makeKey,
  type TestEarmark,
} from '../helpers/earmark.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { handshakeHeaders, rawRequest, requestHead, socketsReleased } from '../helpers/raw-upgrade.js'

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
  /** The URL requested, for a route whose `url` has a wildcard. */
  path?: string
  headers?: Record<string, string>
  /** Statuses in CREDENTIALS order. */
  expect: number[]
  /** The content type of a 2xx that is not JSON (audio). */
  produces?: string
}

const DENIED = [401, 401, 401, 401, 401]
const PUBLIC = [200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200]
const ROUTES: RouteCase[] = [
  { method: 'GET', url: '/healthz', expect: PUBLIC },
  // The API description and Swagger UI's page and files (docs/openapi.md): public, whatever is presented.
  { method: 'GET', url: '/openapi.json', expect: PUBLIC },
  { method: 'GET', url: '/docs/', produces: 'text/html; charset=utf-8', expect: PUBLIC },
  { method: 'GET', url: '/docs/json', expect: PUBLIC },
  { method: 'GET', url: '/docs/yaml', produces: 'application/x-yaml', expect: PUBLIC },
  {
    method: 'GET',
    url: '/docs/static/swagger-initializer.js',
    produces: 'application/javascript; charset=utf-8',
    expect: PUBLIC,
  },
  { method: 'GET', url: '/docs/static/index.html', expect: PUBLIC.map(() => 302) },
  {
    method: 'GET',
    url: '/docs/static/*',
    path: '/docs/static/index.css',
    produces: 'text/css; charset=utf-8',
    expect: PUBLIC,
  },
  { method: 'HEAD', url: '/docs/static/*', path: '/docs/static/index.css', expect: PUBLIC },
  // The console's page and assets (docs/console.md) are public: the page signs in with a key of its own.
  ...(
    [
      ['/', 'text/html; charset=utf-8'],
      ['/console/console.js', 'text/javascript; charset=utf-8'],
      ['/console/console.css', 'text/css; charset=utf-8'],
    ] as const
  ).map(([url, produces]) => ({
    method: 'GET',
    url,
    produces,
    expect: PUBLIC,
  })),
  { method: 'GET', url: '/readyz', expect: PUBLIC },
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
  // Project settings (docs/limits.md): `project:read` to read, `project:write:settings` (owners) to change.
  {
    method: 'GET',
    url: '/v1/projects/:project_id/settings',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'PATCH',
    url: '/v1/projects/:project_id/settings',
    body: { limits: { requests_per_minute: 1000 } },
    expect: [...DENIED, 404, 403, 403, 200, 403, 403, 401],
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
    method: 'POST',
    url: '/v1/projects/:project_id/keys/:key_id/reroll',
    body: { grace_period_seconds: 0 },
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  // Disable and enable (docs/suspicious-activity.md): the same rules as delete.
  {
    method: 'POST',
    url: '/v1/projects/:project_id/keys/:key_id/disable',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  {
    method: 'POST',
    url: '/v1/projects/:project_id/keys/:key_id/enable',
    expect: [...DENIED, 404, 200, 200, 200, 403, 403, 401],
  },
  // The audit trail (docs/audit.md): `audit:read`, which admins and owners hold.
  {
    method: 'GET',
    url: '/v1/projects/:project_id/audit',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  // Live streams and outstanding grants (docs/live-streams.md): `audit:read` to list, plus `keys:write` to
  // close one by revoking its credential.
  {
    method: 'GET',
    url: '/v1/projects/:project_id/streams',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'DELETE',
    url: '/v1/projects/:project_id/streams/:request_id',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'GET',
    url: '/v1/projects/:project_id/grants',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
  },
  {
    method: 'DELETE',
    url: '/v1/projects/:project_id/grants/:jti',
    expect: [...DENIED, 404, 403, 200, 200, 403, 403, 401],
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
  // Signing keys serve the whole server: an owner of any project (`project:write:settings`) may manage them.
  { method: 'GET', url: '/v1/auth/signing-keys', expect: [...DENIED, 200, 403, 403, 200, 403, 403, 401] },
  {
    method: 'DELETE',
    url: '/v1/auth/signing-keys/:kid',
    expect: [...DENIED, 200, 403, 403, 200, 403, 403, 401],
  },
  {
    method: 'POST',
    url: '/v1/speak',
    body: { text: 'hello' },
    produces: 'audio/mpeg',
    expect: [...DENIED, 200, 200, 200, 200, 200, 200, 401],
  },
]

/**
 * Every WebSocket route × every kind of credential: 101 for an admitted upgrade, else the HTTP status the
 * refusal must carry before any 101. Same credential table as above.
 */
interface SocketCase {
  /** As served, e.g. `/v1/listen`. */
  path: string
  /** Appended to the path. */
  query: string
  /** Statuses in CREDENTIALS order. */
  expect: number[]
}

const SOCKET_ROUTES: SocketCase[] = [
  {
    path: '/v1/listen',
    query: '?encoding=linear16&sample_rate=16000',
    expect: [...DENIED, 101, 101, 101, 101, 101, 101, 401],
  },
  {
    path: '/v1/speak',
    query: '?model=aura-2-thalia-en&encoding=linear16&sample_rate=16000',
    expect: [...DENIED, 101, 101, 101, 101, 101, 101, 401],
  },
]

const ERR_CODE: Record<number, string> = { 401: 'INVALID_AUTH', 403: 'FORBIDDEN', 404: 'PROJECT_NOT_FOUND' }

/** The credentials of the table, made in `services` for the project of `owner`; `elapse` lets the short ones expire. */
async function makeCredentials(
  services: Services,
  fx: { projectId: string; owner: Member; ownerKey: string },
  elapse: (ms: number) => Promise<void>,
): Promise<{
  headers: Record<Cred, Record<string, string>>
  members: Record<'owner' | 'admin' | 'member', Member>
  memberKeyId: string
}> {
  const { projectId } = fx
  const now = () => services.clock.now()
  const admin = await addMember(services, { projectId, email: 'admin@example.com', role: 'admin' })
  const member = await addMember(services, { projectId, email: 'member@example.com', role: 'member' })
  const adminKey = await makeKey(services, admin, { scopes: ['admin'] })
  const memberKey = await makeKey(services, member, { scopes: ['member'] })
  const usageKey = await makeKey(services, member, { scopes: ['usage:write'] })
  const deleted = await makeKey(services, fx.owner, { scopes: ['owner'] })
  await services.store.deleteKey(projectId, deleted.id, now())
  const expired = await makeKey(services, fx.owner, { scopes: ['owner'], expiresAt: now() + 1000 })
  const other = await createOtherProject(services)
  const shortGrant = services.grants.mint({
    projectId,
    accessor: memberKey.id,
    ttlSeconds: 1,
    notAfterMs: null,
  })
  await elapse(2000)
  const grant = services.grants.mint({
    projectId,
    accessor: memberKey.id,
    ttlSeconds: 3600,
    notAfterMs: null,
  })
  const token = (s: string) => ({ authorization: `Token ${s}` })
  return {
    headers: {
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
    },
    members: { owner: fx.owner, admin, member },
    memberKeyId: memberKey.id,
  }
}

describe('permission matrix', () => {
  let em: TestEarmark
  let engine: Engine
  let projectId: string
  let headers: Record<Cred, Record<string, string>>
  let members: Record<'owner' | 'admin' | 'member', Member>
  let subject: Member
  let memberKeyId: string
  const requestId = '5b0c0e8e-0000-4000-8000-000000000001'

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 1 })
    em = await createTestEarmark(':memory:', { engine })
    const { services, clock } = em
    const fx = await bootstrapProject(services)
    projectId = fx.projectId
    subject = await addMember(services, { projectId, email: 'subject@example.com', role: 'member' })
    const made = await makeCredentials(services, fx, async (ms) => clock.advance(ms))
    headers = made.headers
    members = made.members
    memberKeyId = made.memberKeyId
    await services.store.insertUsage({
      id: requestId,
      projectId,
      keyId: made.memberKeyId,
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

  /**
   * A fresh grant token for a cell to revoke, recorded as `POST /v1/auth/grant` records it (`grant.issued`);
   * for a stream cell, also listed as a live stream of it (as the socket server lists an upgraded socket).
   */
  async function targetGrant(asStream: boolean): Promise<{ jti: string; requestId: string }> {
    const { services } = em
    const { claims } = services.grants.mint({
      projectId,
      accessor: memberKeyId,
      ttlSeconds: 600,
      notAfterMs: null,
    })
    await services.store.insertAuditEvents([
      {
        id: randomUUID(),
        projectId,
        at: services.clock.now(),
        type: 'grant.issued',
        actorKeyId: memberKeyId,
        keyId: memberKeyId,
        endUser: null,
        ip: null,
        requestId: null,
        detail: { jti: claims.jti, end_user: null, ttl: claims.exp - claims.iat },
      },
    ])
    const streamId = randomUUID()
    if (asStream) {
      em.streams.add({
        requestId: streamId,
        projectId,
        keyId: memberKeyId,
        endUser: null,
        jti: claims.jti,
        grantExpiresAt: claims.exp * 1000,
        route: '/v1/listen',
        ip: '127.0.0.1',
      })
    }
    return { jti: claims.jti, requestId: streamId }
  }

  for (const route of ROUTES) {
    it(`${route.method} ${route.url} answers each credential as specified`, async () => {
      const failures: string[] = []
      for (const [i, cred] of CREDENTIALS.entries()) {
        const expected = route.expect[i]
        const grant =
          route.url.includes(':jti') || route.url.includes('/streams/')
            ? await targetGrant(route.url.includes('/streams/'))
            : undefined
        const url = `${route.path ?? route.url}${route.query ?? ''}`
          .replace('*', '/v1/projects')
          .replace(':jti', grant?.jti ?? '')
          .replace(':project_id', projectId)
          .replace(':key_id', route.url.includes(':key_id') ? await targetKey(cred) : '')
          .replace(':member_id', subject.id)
          .replace(':request_id', grant?.requestId ?? requestId)
          // A fresh signing key to retire, so the grant tokens of the other cells stay good.
          .replace(':kid', route.url.includes(':kid') ? await em.services.grants.rotate() : '')
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
        } else if (expected === 200 && route.method === 'HEAD') {
          assert.equal(res.rawPayload.length, 0, `${cred}: no body`)
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

describe('permission matrix of the WebSocket routes', () => {
  let srv: LiveServer
  let port: number
  let headers: Record<Cred, Record<string, string>>

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '2' })
    port = (srv.earmark.app.server.address() as AddressInfo).port
    const owner = srv.earmark.bootstrap?.owner
    if (!owner) throw new Error('the live server did not bootstrap')
    const fx = { projectId: srv.projectId, owner, ownerKey: srv.ownerKey }
    headers = (await makeCredentials(srv.earmark.services, fx, (ms) => new Promise((r) => setTimeout(r, ms))))
      .headers
  })
  after(() => srv.close())

  /** The credential as the subprotocol pair browsers use (`token, <key>` / `bearer, <jwt>`), when it has one. */
  const asSubprotocol = (h: Record<string, string>): Record<string, string> | undefined => {
    const [scheme, secret] = (h.authorization ?? '').split(' ')
    if (!secret || (scheme !== 'Token' && scheme !== 'Bearer')) return undefined
    return { 'sec-websocket-protocol': `${scheme.toLowerCase()}, ${secret}` }
  }

  for (const route of SOCKET_ROUTES) {
    it(`the ${route.path} upgrade answers each credential as specified, before any 101 when refused`, async () => {
      const failures: string[] = []
      for (const [i, cred] of CREDENTIALS.entries()) {
        const expected = route.expect[i]
        const forms = [headers[cred], asSubprotocol(headers[cred])].filter((f) => f !== undefined)
        for (const form of forms) {
          const what = `${cred} (${Object.keys(form).join(', ') || 'nothing'})`
          const answer = await rawRequest(
            port,
            requestHead('GET', `${route.path}${route.query}`, { ...handshakeHeaders(), ...form }),
          )
          if (answer.status !== expected) {
            failures.push(`${what}: got ${answer.status}, want ${expected} (${answer.body})`)
            continue
          }
          if (!answer.headers['dg-request-id']) failures.push(`${what}: no dg-request-id`)
          if (expected === 101) {
            // The raw client dropped right after the 101: the slot comes back before the next cell.
            await socketsReleased(srv.earmark)
            continue
          }
          const body = JSON.parse(answer.body) as { err_code: string; request_id: string }
          if (body.err_code !== ERR_CODE[expected]) failures.push(`${what}: err_code ${body.err_code}`)
          if (body.request_id !== answer.headers['dg-request-id'])
            failures.push(`${what}: request_id mismatch`)
          if (answer.headers['x-request-id'] !== body.request_id) failures.push(`${what}: x-request-id`)
        }
      }
      assert.deepEqual(failures, [])
    })
  }

  it('covers every socket route the server serves, and serves every socket route it covers', () => {
    const served = [...srv.earmark.sockets.paths].sort()
    const covered = SOCKET_ROUTES.map((r) => r.path).sort()
    assert.deepEqual(
      served.filter((p) => !covered.includes(p)),
      [],
      'socket routes missing from the matrix',
    )
    assert.deepEqual(
      covered.filter((p) => !served.includes(p)),
      [],
      'matrix rows with no socket route',
    )
  })
})
