import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  bootstrapProject,
  createTestEarmark,
  type Fixture,
  type TestEarmark,
  tokenAuth,
} from '../helpers/earmark.js'

const ORIGIN = 'http://app.example'

describe('CORS (docs/deepgram-compat.md §0 #10)', () => {
  let em: TestEarmark
  let fx: Fixture
  before(async () => {
    em = await createTestEarmark()
    fx = await bootstrapProject(em.services)
  })
  after(async () => {
    await em.close()
  })

  it('reflects the origin of a browser request, with credentials and the dg-* headers exposed', async () => {
    for (const headers of [tokenAuth(fx.ownerKey), tokenAuth('emk_wrong')]) {
      const res = await em.app.inject({ url: '/v1/auth/token', headers: { ...headers, origin: ORIGIN } })
      assert.equal(res.headers['access-control-allow-origin'], ORIGIN)
      assert.equal(res.headers['access-control-allow-credentials'], 'true')
      const exposed = String(res.headers['access-control-expose-headers']).split(/,\s*/)
      for (const h of ['dg-request-id', 'dg-error', 'x-request-id', 'dg-model-name', 'dg-char-count']) {
        assert.ok(exposed.includes(h), `${res.statusCode}: ${h} exposed`)
      }
      assert.equal(res.headers.vary, 'Origin')
    }
  })

  it('answers a preflight before auth, allowing the headers the SDKs send', async () => {
    const res = await em.app.inject({
      method: 'OPTIONS',
      url: `/v1/projects/${fx.projectId}/keys`,
      headers: {
        origin: ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type, x-fern-sdk-name',
      },
    })
    assert.equal(res.statusCode, 204)
    assert.equal(res.headers['access-control-allow-origin'], ORIGIN)
    assert.equal(res.headers['content-length'], '0')
    const allowed = String(res.headers['access-control-allow-headers']).split(/,\s*/)
    for (const h of ['authorization', 'content-type', 'x-fern-sdk-name', 'x-deepgram-session-id']) {
      assert.ok(allowed.includes(h), `${h} allowed`)
    }
    assert.match(String(res.headers['access-control-allow-methods']), /\bPOST\b/)
    assert.equal(res.headers['access-control-max-age'], '600')
  })

  it('adds only Vary to a request without Origin, and gives an OPTIONS that is no preflight a 404', async () => {
    const res = await em.app.inject({ url: '/v1/auth/token', headers: tokenAuth(fx.ownerKey) })
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers.vary, 'Origin')
    for (const h of Object.keys(res.headers)) assert.ok(!h.startsWith('access-control-'), h)
    const options = await em.app.inject({ method: 'OPTIONS', url: '/v1/auth/token' })
    assert.equal(options.statusCode, 404)
    assert.equal(options.json().err_code, 'NOT_FOUND')
  })
})
