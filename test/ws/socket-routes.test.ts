import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { createEngine, type Engine } from '../../src/engines/index.js'
import {
  attachSocketRoutes,
  createListenRoute,
  type SocketRoute,
  type SocketServer,
} from '../../src/ws/index.js'
import { bootstrapProject, createTestEarmark, type TestEarmark } from '../helpers/earmark.js'
import { eventually, pcmBytes } from '../helpers/listen-e2e.js'
import { finals, openSocket } from '../helpers/live-server.js'
import { handshakeHeaders, rawConnect, rawRequest, requestHead } from '../helpers/raw-upgrade.js'
import { concatPcm, silence, speech, wordErrorRate } from '../helpers/speech.js'

const SENTENCE = 'please open the door'

/** A route that claims nothing real but counts what the upgrade helper does with its leases. */
function countingRoute(path: string, behaviour: { prepareMs?: number; attachThrows?: boolean }) {
  const counts = { prepared: 0, attached: 0, released: 0 }
  const route: SocketRoute = {
    path,
    scope: 'usage:write',
    async prepare() {
      await new Promise((r) => setTimeout(r, behaviour.prepareMs ?? 0))
      counts.prepared++
      let done = false
      let resolve: () => void = () => {}
      const released = new Promise<void>((r) => {
        resolve = r
      })
      const release = async () => {
        if (done) return
        done = true
        counts.released++
        resolve()
      }
      return {
        attach(ws) {
          if (behaviour.attachThrows) throw new Error('attach failed on purpose')
          counts.attached++
          ws.on('close', () => void release())
        },
        release,
        released,
      }
    },
  }
  return { route, counts }
}

describe('socket routes: every claim is released on every path', () => {
  let em: TestEarmark
  let engine: Engine
  let app: FastifyInstance
  let sockets: SocketServer
  let port: number
  let ownerKey: string
  const slow = countingRoute('/slow', { prepareMs: 150 })
  const broken = countingRoute('/broken', { attachThrows: true })

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 2 })
    em = await createTestEarmark(':memory:')
    ownerKey = (await bootstrapProject(em.services)).ownerKey
    app = Fastify()
    sockets = attachSocketRoutes(app, {
      authenticator: em.authenticator,
      routes: [
        // A real listen route whose ffmpeg is missing: a server fault that strikes after the 101.
        createListenRoute({ services: em.services, engine, ffmpegPath: '/nonexistent/ffmpeg' }),
        slow.route,
        broken.route,
      ],
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as AddressInfo).port
  })
  after(async () => {
    await app.close()
    await em.close()
    await engine.close()
  })

  const head = (path: string) =>
    requestHead('GET', path, { ...handshakeHeaders(), authorization: `Token ${ownerKey}` })

  it('closes a stream hit by a server fault alone, with 1011 NET-0000, and frees its slot', async () => {
    const url = `ws://127.0.0.1:${port}/v1/listen`
    const healthy = await openSocket(`${url}?encoding=linear16&sample_rate=16000`, {
      protocols: ['token', ownerKey],
    })
    const faulty = await openSocket(url, { protocols: ['token', ownerKey] })
    faulty.ws.send(randomBytes(4096)) // needs ffmpeg, which cannot start
    const end = await faulty.closed
    assert.equal(end.close?.code, 1011)
    assert.equal(end.close?.reason, 'NET-0000')
    assert.equal(healthy.log.close, undefined, 'the other stream is still open')
    healthy.ws.send(pcmBytes(concatPcm(silence(0.3), await speech(SENTENCE), silence(1.2))))
    healthy.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const other = await healthy.closed
    assert.equal(other.close?.code, 1000)
    assert.ok(wordErrorRate(SENTENCE, finals(other)) <= 0.5, finals(other))
    await eventually(async () => (engine.inUse() === 0 ? true : undefined), 5000, 'slots released')
    // The same fault found while flushing after CloseStream is still the server's: 1011, not 1008.
    const flushing = await openSocket(url, { protocols: ['token', ownerKey] })
    flushing.ws.send(randomBytes(4096))
    flushing.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const flushed = await flushing.closed
    assert.deepEqual(flushed.close, { code: 1011, reason: 'NET-0000' })
    await eventually(async () => (engine.inUse() === 0 ? true : undefined), 5000, 'slots released')
    const usage = await em.services.store.listUsage((await em.services.store.listProjects())[0]?.id ?? '', {})
    assert.ok(
      usage.some((r) => r.status === 1011 && r.detail === 'NET-0000'),
      'the fault is metered as 1011',
    )
  })

  it('closes the one stream the last resort names (1011 NET-0000) and frees its slot, leaving the others', async () => {
    const url = `ws://127.0.0.1:${port}/v1/listen?encoding=linear16&sample_rate=16000`
    const named = await openSocket(url, { protocols: ['token', ownerKey] })
    const other = await openSocket(url, { protocols: ['token', ownerKey] })
    const requestId = String(named.log.headers?.['dg-request-id'] ?? '')
    assert.equal(sockets.fault('no-such-request'), false)
    assert.equal(sockets.fault(requestId), true)
    assert.deepEqual((await named.closed).close, { code: 1011, reason: 'NET-0000' })
    assert.equal(other.log.close, undefined, 'the other stream is still open')
    await eventually(async () => (engine.inUse() === 1 ? true : undefined), 5000, 'the named slot released')
    other.ws.send(JSON.stringify({ type: 'CloseStream' }))
    assert.equal((await other.closed).close?.code, 1000)
    await eventually(async () => (engine.inUse() === 0 ? true : undefined), 5000, 'slots released')
  })

  it('releases a lease whose client left while it was being prepared, and answers nobody', async () => {
    const before = { ...slow.counts }
    const socket = await rawConnect(port)
    socket.write(head('/slow'))
    await new Promise((r) => setTimeout(r, 30))
    socket.destroy()
    await eventually(async () => (slow.counts.released > before.released ? true : undefined), 2000, 'release')
    assert.equal(slow.counts.attached, before.attached)
    assert.equal(sockets.active, 0)
  })

  it('releases a lease whose attach threw, and cuts the socket', async () => {
    const { closed, log } = await openSocket(`ws://127.0.0.1:${port}/broken`, {
      protocols: ['token', ownerKey],
    })
    const end = await closed
    assert.equal(log.status, undefined, 'the upgrade itself completed')
    assert.equal(end.close?.code, 1006)
    assert.equal(broken.counts.released, 1)
    assert.equal(sockets.active, 0)
  })

  it('releases a lease prepared while the server started closing, and answers 503', async () => {
    const lateApp = Fastify()
    const late = countingRoute('/late', { prepareMs: 200 })
    attachSocketRoutes(lateApp, { authenticator: em.authenticator, routes: [late.route] })
    await lateApp.listen({ port: 0, host: '127.0.0.1' })
    const latePort = (lateApp.server.address() as AddressInfo).port
    const answer = rawRequest(latePort, head('/late'))
    await new Promise((r) => setTimeout(r, 50))
    await lateApp.close()
    const refused = await answer
    assert.equal(refused.status, 503)
    assert.equal((JSON.parse(refused.body) as { err_code: string }).err_code, 'SERVICE_UNAVAILABLE')
    assert.deepEqual(late.counts, { prepared: 1, attached: 0, released: 1 })
  })
})
