import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { freePort } from '../helpers/free-port.js'
import { openSocket, startLiveServer } from '../helpers/live-server.js'

// /healthz says the process is alive (its answer unchanged); /readyz says whether to send it traffic: the
// store answers, the engine is loaded, Redis answers when configured, and the node is not draining
// (docs/deploy.md, "Health and readiness").

interface Readiness {
  status: string
  checks: Record<string, string>
  not_ready?: string[]
  request_id?: string
}

describe('/healthz and /readyz', () => {
  it('is ready with the store, the engine and admission all ok; /healthz keeps its answer', async () => {
    const srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    try {
      const health = await fetch(`${srv.url}/healthz`)
      assert.equal(health.status, 200)
      assert.deepEqual(await health.json(), { status: 'ok', store: 'sqlite' })
      const ready = await fetch(`${srv.url}/readyz`)
      assert.equal(ready.status, 200)
      assert.deepEqual(await ready.json(), {
        status: 'ready',
        checks: { admitting: 'ok', store: 'ok', engine: 'ok' },
      })
    } finally {
      await srv.close()
    }
  })

  it('answers 503 naming the store once the store is closed, while /healthz stays 200', async () => {
    const srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    try {
      await srv.earmark.services.store.close()
      const ready = await fetch(`${srv.url}/readyz`)
      assert.equal(ready.status, 503)
      const body = (await ready.json()) as Readiness
      assert.equal(body.status, 'not_ready')
      assert.deepEqual(body.not_ready, ['store'])
      assert.equal(body.checks.store, 'unavailable')
      assert.equal(body.checks.engine, 'ok')
      assert.equal(typeof body.request_id, 'string')
      assert.equal((await fetch(`${srv.url}/healthz`)).status, 200)
    } finally {
      await srv.close().catch(() => {}) // the store is closed already
    }
  })

  it('answers 503 naming redis when EARMARK_REDIS_URL points at a port nothing listens on', async () => {
    const port = await freePort()
    const srv = await startLiveServer({
      EARMARK_CAPACITY: '1',
      EARMARK_REDIS_URL: `redis://127.0.0.1:${port}/0`,
      EARMARK_REDIS_PREFIX: `earmark-readyz-test-${process.pid}:`,
    })
    try {
      const started = Date.now()
      const ready = await fetch(`${srv.url}/readyz`)
      assert.equal(ready.status, 503)
      const body = (await ready.json()) as Readiness
      assert.deepEqual(body.not_ready, ['redis'])
      assert.deepEqual(body.checks, { admitting: 'ok', store: 'ok', engine: 'ok', redis: 'unavailable' })
      // Bounded: a dead dependency never hangs the probe.
      assert.ok(Date.now() - started < 3000)
    } finally {
      await srv.close()
    }
  })

  it('while draining: 503 with Retry-After for requests and upgrades, /readyz 503, /healthz and /metrics still served', async () => {
    const srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    try {
      srv.earmark.lifecycle.startDraining()
      const refused = await fetch(`${srv.url}/v1/projects`, {
        headers: { authorization: `Token ${srv.ownerKey}` },
      })
      assert.equal(refused.status, 503)
      assert.equal(refused.headers.get('retry-after'), '5')
      assert.equal(((await refused.json()) as { err_code: string }).err_code, 'SERVICE_UNAVAILABLE')
      const upgrade = await openSocket(`${srv.wsUrl}/v1/listen?encoding=linear16&sample_rate=16000`, {
        protocols: ['token', srv.ownerKey],
      })
      assert.equal(upgrade.log.status, 503)
      assert.equal(upgrade.log.headers?.['retry-after'], '5')
      const ready = await fetch(`${srv.url}/readyz`)
      assert.equal(ready.status, 503)
      assert.deepEqual(((await ready.json()) as Readiness).not_ready, ['admitting'])
      assert.equal((await fetch(`${srv.url}/healthz`)).status, 200)
      assert.equal((await fetch(`${srv.url}/metrics`)).status, 200)
    } finally {
      await srv.close()
    }
  })
})
