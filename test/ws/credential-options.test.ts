import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { DeepgramClient } from 'dg5'
import { loadConfig } from '../../src/config/index.js'
import { createEarmark, type Earmark } from '../../src/main.js'
import { eventually } from '../helpers/listen-e2e.js'
import { openSocket, type StreamLog } from '../helpers/live-server.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets, recordSecretsOf, testLogDestination } from '../helpers/test-logs.js'

// Earmark's credential options on live streams (docs/credential-options.md): a real server from the real
// composition root (real SQLite file, real PocketSphinx), listening on `::` so the same server is reached over
// IPv4 loopback (seen as `::ffff:127.0.0.1`) and IPv6 loopback (`::1`).

const RAW = 'encoding=linear16&sample_rate=16000'
const APP_ORIGIN = 'https://app.example.com'

describe('credential options on live streams', { timeout: 120_000 }, () => {
  const dir = tempDataDir()
  const ownerKey = `emk_credopts_ws_${Math.random().toString(16).slice(2)}_owner`
  let earmark: Earmark
  let http: string
  let ws4: string
  let ws6: string
  let projectId: string
  const sockets: { terminate(): void }[] = []

  before(async () => {
    recordSecrets(ownerKey)
    const logTo = testLogDestination('credential-options-ws')
    const config = loadConfig({
      EARMARK_DATA_DIR: dir,
      EARMARK_BOOTSTRAP_KEY: ownerKey,
      EARMARK_LOG_LEVEL: logTo ? 'debug' : 'silent',
      EARMARK_CAPACITY: '4',
      EARMARK_MAX_STREAMS_PER_CREDENTIAL: '0',
      EARMARK_MAX_STREAMS_PER_KEY: '0',
      EARMARK_MAX_STREAMS_PER_END_USER: '0',
    })
    earmark = await createEarmark(config, undefined, logTo)
    recordSecretsOf(earmark.app)
    await earmark.app.listen({ port: 0, host: '::' })
    const { port } = earmark.app.server.address() as AddressInfo
    http = `http://127.0.0.1:${port}`
    ws4 = `ws://127.0.0.1:${port}`
    ws6 = `ws://[::1]:${port}`
    projectId = earmark.bootstrap?.project.id ?? ''
  })

  after(async () => {
    for (const s of sockets) s.terminate()
    await earmark.close()
    removeDir(dir)
  })

  const api = async (method: string, path: string, key: string, body?: unknown, origin?: string) => {
    const res = await fetch(`${http}${path}`, {
      method,
      headers: {
        authorization: `Token ${key}`,
        'content-type': 'application/json',
        ...(origin ? { origin } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    return { status: res.status, body: (await res.json()) as Record<string, unknown> }
  }

  const grant = async (options: Record<string, unknown>, key = ownerKey, origin?: string) => {
    const res = await api('POST', '/v1/auth/grant', key, { ttl_seconds: 120, ...options }, origin)
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const token = res.body.access_token as string
    recordSecrets(token)
    return token
  }

  const createKey = async (options: Record<string, unknown>) => {
    const res = await api('POST', `/v1/projects/${projectId}/keys`, ownerKey, {
      comment: 'bound',
      scopes: ['member'],
      ...options,
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const key = res.body.key as string
    recordSecrets(key)
    return key
  }

  /** Opens a listen socket; a refused one resolves with its status and body in the log. */
  const upgrade = async (
    protocols: string[],
    o: { base?: string; query?: string; origin?: string } = {},
  ): Promise<StreamLog & { ws: { terminate(): void; readyState: number } }> => {
    const { ws, log } = await openSocket(`${o.base ?? ws4}/v1/listen?${o.query ?? RAW}`, {
      protocols,
      ...(o.origin ? { headers: { origin: o.origin } } : {}),
    })
    sockets.push(ws)
    return Object.assign(log, { ws })
  }

  const opened = (log: StreamLog) => log.status === undefined

  const refusedWith = (log: StreamLog, status: number, code: string, what: string) => {
    assert.equal(log.status, status, `${what}: ${JSON.stringify(log.body)}`)
    assert.equal(log.body?.err_code, code, what)
  }

  const idle = () =>
    eventually(
      async () => (earmark.engine.inUse() === 0 ? true : undefined),
      5000,
      'every engine slot released',
    )

  it('a single-use token opens exactly one stream: of 20 concurrent upgrades one gets 101, the rest 401, and a later one 401', async (t) => {
    const token = await grant({ max_uses: 1 })
    const started = Date.now()
    const logs = await Promise.all(Array.from({ length: 20 }, () => upgrade(['bearer', token])))
    const winners = logs.filter(opened)
    t.diagnostic(`20 concurrent upgrades settled in ${Date.now() - started} ms: ${winners.length} opened`)
    assert.equal(winners.length, 1)
    for (const log of logs.filter((l) => !opened(l)))
      refusedWith(log, 401, 'INVALID_AUTH', 'a losing upgrade')
    for (const log of winners) log.ws.terminate()
    await idle()
    refusedWith(await upgrade(['bearer', token]), 401, 'INVALID_AUTH', 'a later upgrade')
  })

  it('max_uses 3 admits exactly three of 20 concurrent upgrades; looking the token up spends none', async () => {
    const token = await grant({ max_uses: 3 })
    for (let i = 0; i < 2; i++) {
      const res = await fetch(`${http}/v1/auth/token`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(res.status, 200)
      assert.equal(((await res.json()) as { max_uses?: number }).max_uses, 3)
    }
    const logs = await Promise.all(Array.from({ length: 20 }, () => upgrade(['bearer', token])))
    assert.equal(logs.filter(opened).length, 3)
    for (const log of logs.filter((l) => !opened(l))) refusedWith(log, 401, 'INVALID_AUTH', 'a fourth use')
    for (const log of logs.filter(opened)) log.ws.terminate()
    await idle()
  })

  it('max_session_duration_seconds closes a live stream 1008 AUTH-0003 when reached, and its usage record says so', async (t) => {
    const token = await grant({ max_session_duration_seconds: 2 })
    const log = await upgrade(['bearer', token])
    assert.ok(opened(log), JSON.stringify(log.body))
    const openedAt = Date.now()
    const ws = log.ws as unknown as import('ws').WebSocket
    const closedAt = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())))
    // Keeps sending silence: only the session limit can end it.
    const feed = setInterval(() => {
      if (ws.readyState === ws.OPEN) ws.send(Buffer.alloc(3200))
    }, 100)
    const ms = (await closedAt) - openedAt
    clearInterval(feed)
    t.diagnostic(`a 2 s session closed ${ms} ms after the 101`)
    assert.deepEqual(log.close, { code: 1008, reason: 'AUTH-0003' })
    assert.ok(ms >= 1900 && ms <= 3500, `closed after ${ms} ms`)
    const requestId = String(log.headers?.['dg-request-id'])
    const response = await eventually(
      async () => {
        const res = await api('GET', `/v1/projects/${projectId}/requests/${requestId}`, ownerKey)
        const r = res.body.response as { code?: number; message?: string } | undefined
        return typeof r?.code === 'number' ? r : undefined
      },
      5000,
      'the usage record of the closed stream',
    )
    assert.equal(response.code, 1008)
    assert.equal(response.message, 'AUTH-0003')
    await idle()
  })

  it('a key’s max_session_duration_seconds closes its /v1/speak socket too, and its tokens inherit it', async () => {
    const key = await createKey({ max_session_duration_seconds: 1 })
    for (const protocols of [
      ['token', key],
      ['bearer', await grant({}, key)],
    ]) {
      const { ws, log, closed } = await openSocket(`${ws4}/v1/speak`, { protocols })
      sockets.push(ws)
      assert.equal(log.status, undefined, JSON.stringify(log.body))
      const at = Date.now()
      await closed
      const ms = Date.now() - at
      assert.deepEqual(log.close, { code: 1008, reason: 'AUTH-0003' }, protocols[0])
      assert.ok(ms >= 900 && ms <= 2500, `${protocols[0]}: closed after ${ms} ms`)
    }
  })

  it('a key bound to origins admits an upgrade from one of them and refuses another origin or none, 403', async () => {
    const key = await createKey({ allowed_origins: [APP_ORIGIN] })
    // A key's origin binding holds on every route it calls, the grant route included.
    const token = await grant({}, key, APP_ORIGIN)
    for (const protocols of [
      ['token', key],
      ['bearer', token],
    ]) {
      const ok = await upgrade(protocols, { origin: APP_ORIGIN })
      assert.ok(opened(ok), JSON.stringify(ok.body))
      ok.ws.terminate()
      refusedWith(
        await upgrade(protocols, { origin: 'https://evil.example.com' }),
        403,
        'FORBIDDEN',
        `${protocols[0]} from another origin`,
      )
      const none = await upgrade(protocols)
      refusedWith(none, 403, 'FORBIDDEN', `${protocols[0]} without an Origin`)
      assert.match(none.body?.err_msg ?? '', /Origin/)
    }
    await idle()
  })

  it('allowed_ips refuses an upgrade from outside the ranges and admits one from inside, IPv4 and IPv6', async () => {
    const cases: { ips: string[]; base: string; admitted: boolean; what: string }[] = [
      { ips: ['10.0.0.0/8'], base: ws4, admitted: false, what: '127.0.0.1 against 10.0.0.0/8' },
      { ips: ['127.0.0.1/32'], base: ws4, admitted: true, what: '127.0.0.1 against 127.0.0.1/32' },
      {
        ips: ['10.0.0.0/8', '127.0.0.0/8'],
        base: ws4,
        admitted: true,
        what: '127.0.0.1 against 127.0.0.0/8',
      },
      { ips: ['::1'], base: ws6, admitted: true, what: '::1 against ::1' },
      { ips: ['::1'], base: ws4, admitted: false, what: '127.0.0.1 against ::1' },
      { ips: ['2001:db8::/32'], base: ws6, admitted: false, what: '::1 against 2001:db8::/32' },
    ]
    for (const c of cases) {
      const token = await grant({ allowed_ips: c.ips })
      const log = await upgrade(['bearer', token], { base: c.base })
      if (c.admitted) {
        assert.ok(opened(log), `${c.what}: ${JSON.stringify(log.body)}`)
        log.ws.terminate()
      } else {
        refusedWith(log, 403, 'FORBIDDEN', c.what)
      }
    }
    // A key's own binding holds for the key itself.
    const key = await createKey({ allowed_ips: ['10.0.0.0/8'] })
    refusedWith(await upgrade(['token', key]), 403, 'FORBIDDEN', 'a key bound to 10.0.0.0/8')
    await idle()
  })

  /** Whether the official SDK v5 gets a stream open with `token` and these connect arguments. */
  const v5Opens = async (token: string, args: Record<string, unknown>): Promise<boolean> => {
    const client = new DeepgramClient({ accessToken: token, baseUrl: http })
    const socket = await client.listen.v1.connect({
      model: 'nova-3',
      encoding: 'linear16',
      sample_rate: 16000,
      reconnectAttempts: 0,
      ...args,
    } as Parameters<typeof client.listen.v1.connect>[0])
    const outcome = new Promise<boolean>((resolve) => {
      socket.on('open', () => resolve(true))
      socket.on('error', () => resolve(false))
      socket.on('close', () => resolve(false))
    })
    socket.connect()
    const result = await Promise.race([
      outcome,
      new Promise<boolean>((r) => setTimeout(() => r(false), 10_000)),
    ])
    socket.close()
    return result
  }

  it('listen constraints hold on the socket whatever the client asks, with the official SDK v5 and raw upgrades', async () => {
    const listen = {
      allowed_models: ['nova-3'],
      allowed_languages: ['en', 'en-US'],
      max_sample_rate: 16000,
      interim_results: false,
    }
    const token = await grant({ listen })
    // The SDK asking for what the token allows gets its stream; asking for more, none.
    assert.equal(await v5Opens(token, {}), true, 'nova-3 at 16 kHz')
    assert.equal(await v5Opens(token, { language: 'en-us' }), true, 'en-us (compared case-insensitively)')
    assert.equal(await v5Opens(token, { model: 'nova-2' }), false, 'nova-2')
    assert.equal(await v5Opens(token, { interim_results: 'true' }), false, 'interim results')
    await idle()
    const refusals: [string, string][] = [
      ['model=nova-2&encoding=linear16&sample_rate=16000', 'another model'],
      [RAW, 'no model: the default (base) is not allowed'],
      ['model=nova-3&language=fr&encoding=linear16&sample_rate=16000', 'another language'],
      ['model=nova-3&encoding=linear16&sample_rate=48000', 'a higher sample rate'],
      ['model=nova-3&interim_results=true&encoding=linear16&sample_rate=16000', 'interim results'],
    ]
    for (const [query, what] of refusals) {
      const log = await upgrade(['bearer', token], { query })
      refusedWith(log, 403, 'FORBIDDEN', what)
    }
    // Nothing was claimed for the refusals.
    assert.equal(earmark.engine.inUse(), 0)
    const ok = await upgrade(['bearer', token], { query: `model=nova-3&language=en&${RAW}` })
    assert.ok(opened(ok), JSON.stringify(ok.body))
    ok.ws.terminate()
    await idle()
  })
})
