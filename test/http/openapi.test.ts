import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Validator } from '@seriousme/openapi-schema-validator'
import { bootstrapProject, createTestEarmark, type TestEarmark, tokenAuth } from '../helpers/earmark.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { registeredRoutes } from '../helpers/registered-routes.js'

type Operation = {
  summary?: string
  responses: Record<string, { description?: string }>
  'x-earmark'?: boolean
  'x-earmark-websocket'?: { closeCodes: unknown[]; clientMessages: object; serverMessages: object }
  parameters?: { name: string; in: string; 'x-earmark'?: boolean }[]
}
type Document = { openapi: string; paths: Record<string, Record<string, Operation>> }

/**
 * Routes served on purpose without an operation in the document: the CORS preflight catch-all (`*` is no
 * OpenAPI path) and Swagger UI's own page and files under `/docs` (docs/openapi.md).
 */
/** The CORS catch-all, Swagger UI's own routes, and the console's page and assets (pages, not API). */
const UNDOCUMENTED = (method: string, url: string) =>
  (method === 'OPTIONS' && url === '*') ||
  url.startsWith('/docs') ||
  url === '/' ||
  url.startsWith('/console/')

/** `/v1/projects/:project_id` → `/v1/projects/{project_id}`. */
const openapiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}')

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace']

describe('the OpenAPI document of the whole server', () => {
  let srv: LiveServer
  let doc: Document

  before(async () => {
    srv = await startLiveServer()
    const res = await fetch(`${srv.url}/openapi.json`)
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/)
    doc = (await res.json()) as Document
  })
  after(() => srv.close())

  it('validates against the OpenAPI 3.1 schema', async () => {
    const validator = new Validator()
    const result = await validator.validate(doc)
    assert.deepEqual(result.errors, undefined)
    assert.equal(result.valid, true)
    assert.equal(validator.version, '3.1')
    assert.equal(doc.openapi, '3.1.0')
  })

  it('describes every registered HTTP route and every socket route, and no operation that is not served', () => {
    const served = new Set<string>()
    for (const { method, url } of registeredRoutes(srv.earmark.app)) {
      if (!UNDOCUMENTED(method, url)) served.add(`${method.toLowerCase()} ${openapiPath(url)}`)
    }
    for (const path of srv.earmark.sockets.paths) served.add(`get ${path}`)
    assert.ok(served.has('get /v1/listen') && served.has('post /v1/listen'), 'the routes were read')

    const documented = new Set<string>()
    const undescribed: string[] = []
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of METHODS) {
        const op = item[method]
        if (!op) continue
        documented.add(`${method} ${path}`)
        // A route without `documented(...)` still shows up, with no summary and Swagger's "Default Response".
        const described = Object.values(op.responses).every((r) => r.description !== 'Default Response')
        if (!op.summary || !described) undescribed.push(`${method} ${path}`)
      }
    }
    assert.deepEqual(
      [...served].filter((r) => !documented.has(r)).sort(),
      [],
      'routes missing from the document',
    )
    assert.deepEqual([...documented].filter((r) => !served.has(r)).sort(), [], 'documented routes not served')
    assert.deepEqual(undescribed.sort(), [], 'routes registered without a description (documented(...))')
  })

  it('describes the sockets as GET operations answered 101, with their messages and close codes', () => {
    for (const path of srv.earmark.sockets.paths) {
      const op = doc.paths[path]?.get
      assert.ok(op?.responses['101'], `${path} answers 101`)
      assert.ok(op.responses['401'], `${path} documents the refusal of a bad credential`)
      const ws = op['x-earmark-websocket']
      assert.ok(ws && ws.closeCodes.length > 0, `${path} lists its close codes`)
      assert.ok(Object.keys(ws.clientMessages).length > 0 && Object.keys(ws.serverMessages).length > 0)
    }
  })

  it("marks Earmark's extensions and leaves Deepgram's operations unmarked", () => {
    const marked = (path: string, method: string) => doc.paths[path]?.[method]?.['x-earmark'] === true
    // Earmark's own (docs/deepgram-compat.md does not list them).
    assert.ok(marked('/v1/projects/{project_id}/keys/{key_id}/reroll', 'post'))
    assert.ok(marked('/v1/projects/{project_id}/audit', 'get'))
    assert.ok(marked('/v1/auth/signing-keys', 'get'))
    assert.ok(marked('/openapi.json', 'get'))
    // Deepgram's.
    for (const [path, method] of [
      ['/v1/listen', 'post'],
      ['/v1/listen', 'get'],
      ['/v1/speak', 'post'],
      ['/v1/projects/{project_id}/keys', 'post'],
      ['/v1/auth/grant', 'post'],
    ] as const) {
      assert.equal(marked(path, method), false, `${method} ${path} is Deepgram's`)
    }
    // A field: `end_user` filters usage in Earmark only, `accessor` is Deepgram's.
    const params = doc.paths['/v1/projects/{project_id}/requests']?.get?.parameters ?? []
    assert.equal(params.find((p) => p.name === 'end_user')?.['x-earmark'], true)
    assert.equal(params.find((p) => p.name === 'accessor')?.['x-earmark'], undefined)
  })

  it('is served to the docs page too, the same document', async () => {
    const res = await fetch(`${srv.url}/docs/json`)
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), doc)
  })
})

describe('the docs page', () => {
  let em: TestEarmark

  before(async () => {
    em = await createTestEarmark()
  })
  after(() => em.close())

  it('loads every script and style sheet from this server, and names no other host', async () => {
    const page = await em.app.inject({ method: 'GET', url: '/docs' })
    assert.equal(page.statusCode, 200)
    assert.match(page.headers['content-type'] as string, /^text\/html/)
    assert.doesNotMatch(page.body, /https?:|\/\//i, 'no absolute or protocol-relative URL')
    const csp = page.headers['content-security-policy'] as string
    assert.doesNotMatch(csp, /https?:|\*/, 'the CSP allows this origin only')
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] ?? '')
    const scripts = assets.filter((a) => a.endsWith('.js'))
    const styles = assets.filter((a) => a.endsWith('.css'))
    assert.ok(scripts.length >= 3 && styles.length >= 1, `assets found: ${assets.join(', ')}`)
    for (const asset of [...scripts, ...styles]) {
      assert.ok(asset.startsWith('/docs/'), `${asset} is served under /docs`)
      const res = await em.app.inject({ method: 'GET', url: asset })
      assert.equal(res.statusCode, 200, asset)
      assert.match(
        res.headers['content-type'] as string,
        asset.endsWith('.js') ? /javascript/ : /text\/css/,
        `${asset} content type`,
      )
      assert.ok(res.rawPayload.length > 0, `${asset} has a body`)
    }
  })
})

describe('documented routes behave as before', () => {
  let em: TestEarmark
  let auth: Record<string, string>
  let projectId: string

  before(async () => {
    em = await createTestEarmark()
    const fx = await bootstrapProject(em.services)
    auth = tokenAuth(fx.ownerKey)
    projectId = fx.projectId
  })
  after(() => em.close())

  it('a body the schema types differently reaches the route, which answers INVALID_FIELD as before', async () => {
    // A validator compiled from the schema would coerce "30" to 30 (ajv's coerceTypes) and mint a token.
    const res = await em.app.inject({
      method: 'POST',
      url: '/v1/auth/grant',
      headers: auth,
      payload: { ttl_seconds: '30' },
    })
    assert.equal(res.statusCode, 400)
    assert.equal(res.json().err_code, 'INVALID_FIELD')
  })

  it('an answer keeps fields its schema does not list', async () => {
    // The settings schema names its sections only; a compiled serializer would answer `limits: {}`.
    const patch = await em.app.inject({
      method: 'PATCH',
      url: `/v1/projects/${projectId}/settings`,
      headers: auth,
      payload: { limits: { requests_per_minute: 77 } },
    })
    assert.equal(patch.statusCode, 200)
    const res = await em.app.inject({
      method: 'GET',
      url: `/v1/projects/${projectId}/settings`,
      headers: auth,
    })
    assert.equal(res.json().limits.requests_per_minute, 77)
  })

  it('an error answer is the Deepgram body, serialised as before', async () => {
    const res = await em.app.inject({ method: 'GET', url: '/v1/projects', headers: tokenAuth('emk_nope') })
    assert.equal(res.statusCode, 401)
    assert.deepEqual(Object.keys(res.json()).sort(), ['err_code', 'err_msg', 'request_id'])
    assert.equal(res.json().request_id, res.headers['dg-request-id'])
  })
})
