import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import {
  createAuthenticator,
  createGrants,
  createManualClock,
  generateKeySecret,
} from '../../src/auth/index.js'
import { createApp, REDACTED, redactPath, redactSecrets } from '../../src/http/index.js'
import { createLogger } from '../../src/main.js'
import type { Services } from '../../src/projects/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { bootstrapProject } from '../helpers/earmark.js'

/** An app whose log lines (access log on) are collected in `lines`. */
async function loggedApp(logLevel: 'trace' | 'info') {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  const clock = createManualClock()
  const store = createSqliteStore({ path: ':memory:' })
  const services: Services = { store, clock, grants: await createGrants({ store, clock }) }
  const app = await createApp({
    services,
    authenticator: createAuthenticator(services),
    logger: createLogger({ logLevel }, sink),
    accessLog: true,
  })
  return { app, store, services, lines }
}

describe('logging', () => {
  it('never writes a key secret or a grant token to a log line, on success or failure', async () => {
    const { app, store, services, lines } = await loggedApp('trace')
    try {
      const fx = await bootstrapProject(services)
      const secrets = [fx.ownerKey]
      const auth = (s: string, scheme = 'Token') => ({ authorization: `${scheme} ${s}` })
      const created = await app.inject({
        method: 'POST',
        url: `/v1/projects/${fx.projectId}/keys?key=${fx.ownerKey}`,
        headers: auth(fx.ownerKey),
        payload: { comment: 'x', scopes: ['member'] },
      })
      secrets.push(created.json().key)
      const granted = await app.inject({
        method: 'POST',
        url: '/v1/auth/grant',
        headers: auth(created.json().key),
      })
      secrets.push(granted.json().access_token)
      const unknown = generateKeySecret()
      secrets.push(unknown)
      await app.inject({ url: '/v1/auth/token', headers: auth(granted.json().access_token, 'Bearer') })
      await app.inject({ url: '/v1/projects', headers: auth(granted.json().access_token, 'Bearer') })
      await app.inject({ url: '/v1/projects', headers: auth(unknown) })
      await app.inject({ url: `/v1/nowhere?token=${unknown}`, headers: auth(unknown) })
      await app.inject({
        method: 'POST',
        url: '/v1/auth/grant',
        headers: { ...auth(fx.ownerKey), 'content-type': 'application/json' },
        payload: `{"ttl_seconds": "${fx.ownerKey}"`,
      })
      const log = lines.join('')
      assert.ok(lines.length >= 7, 'every request was logged')
      assert.match(log, /"status":401/)
      for (const s of secrets) assert.ok(!log.includes(s), 'a secret reached the log')
    } finally {
      await app.close()
      await store.close()
    }
  })

  it('names the request id on every line logged for a request (the request logger is made on first use)', async () => {
    const { app, store, lines } = await loggedApp('info')
    app.get('/boom', async () => {
      throw new Error('internal detail')
    })
    try {
      const ok = await app.inject({ url: '/healthz' })
      const boom = await app.inject({ url: '/boom' })
      assert.equal(boom.statusCode, 500)
      const parsed = lines.map((l) => JSON.parse(l) as { reqId?: string; msg: string; level: number })
      const forOk = parsed.filter((l) => l.reqId === ok.headers['dg-request-id'])
      const forBoom = parsed.filter((l) => l.reqId === boom.headers['dg-request-id'])
      assert.deepEqual(
        forOk.map((l) => l.msg),
        ['request'],
      )
      assert.deepEqual(forBoom.map((l) => l.msg).sort(), ['request', 'unhandled error'])
      assert.equal(boom.json().err_msg.includes('internal detail'), false)
      assert.equal(lines.length, 3, 'no line without its request id')
    } finally {
      await app.close()
      await store.close()
    }
  })

  it('logs a path with a key, a JWT or another long secret pasted into it redacted, and never a query', async () => {
    const { app, store, services, lines } = await loggedApp('info')
    app.get('/echo-boom', async (req) => {
      throw new Error(`internal detail about ${req.headers['x-echo']}`)
    })
    try {
      const fx = await bootstrapProject(services)
      const granted = await app.inject({
        method: 'POST',
        url: '/v1/auth/grant',
        headers: { authorization: `Token ${fx.ownerKey}` },
      })
      const jwt = (granted.json() as { access_token: string }).access_token
      const deepgramKey = 'aaaaaaaa0123456789abcdef0123456789abcdef'
      const secrets = [fx.ownerKey, jwt, deepgramKey, fx.ownerKey.slice(4), jwt.split('.')[2] ?? jwt]
      const paths = [
        `/v1/auth/token/${fx.ownerKey}`,
        `/v1/auth/token/${fx.ownerKey.replace('_', '%5F')}/more`,
        `/v1/projects/${jwt}/keys`,
        `/v1/keys/${deepgramKey}`,
        `/v1/projects/${fx.projectId}/keys?secret=${fx.ownerKey}`,
      ]
      for (const url of paths) await app.inject({ url, headers: { authorization: `Token ${fx.ownerKey}` } })
      for (const echo of [fx.ownerKey, jwt])
        await app.inject({ url: '/echo-boom', headers: { 'x-echo': echo } })
      const log = lines.join('')
      for (const s of secrets) assert.ok(!log.includes(s), `a secret reached the log: ${s.slice(0, 12)}…`)
      const logged = lines.map((l) => JSON.parse(l) as { path?: string; msg: string })
      const accessPaths = logged.filter((l) => l.msg === 'request').map((l) => l.path)
      assert.ok(
        accessPaths.includes(`/v1/projects/${fx.projectId}/keys`),
        'a UUID is kept and the query dropped',
      )
      assert.ok(accessPaths.includes(`/v1/auth/token/${REDACTED}`))
      assert.ok(accessPaths.includes(`/v1/auth/token/${REDACTED}/more`))
      assert.equal(
        logged.filter((l) => l.msg === 'unhandled error').length,
        2,
        'the error lines were written',
      )
    } finally {
      await app.close()
      await store.close()
    }
  })
})

describe('redaction', () => {
  it('redactPath keeps ordinary segments and UUIDs and drops the query', () => {
    assert.equal(
      redactPath('/v1/projects/0b5c3f2e-8a1d-4c3e-9f00-112233445566/keys?x=emk_1'),
      '/v1/projects/0b5c3f2e-8a1d-4c3e-9f00-112233445566/keys',
    )
    assert.equal(redactPath('/v1/listen'), '/v1/listen')
    assert.equal(redactPath('/v1/x/EMK_short'), `/v1/x/${REDACTED}`)
    assert.equal(redactPath('/v1/x/%E0%A4%A'), '/v1/x/%E0%A4%A')
    assert.equal(redactPath(`/v1/x/${'Zm9v'.repeat(10)}`), `/v1/x/${REDACTED}`)
  })
  it('redactSecrets cuts keys and JWTs out of any text and leaves the rest', () => {
    assert.equal(redactSecrets('{"msg":"bad key emk_00ff in /a"}'), `{"msg":"bad key ${REDACTED} in /a"}`)
    assert.equal(redactSecrets('token eyJhbGciOi.eyJzdWIi.c2ln end'), `token ${REDACTED} end`)
    assert.equal(redactSecrets('nothing here'), 'nothing here')
  })
})
