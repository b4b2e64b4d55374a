import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { finals, type LiveServer, openSocket, sendPcm, startLiveServer } from '../helpers/live-server.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'

// Real traffic against the real composition root (SQLite file, PocketSphinx, flite speech), then a scrape:
// every counter the traffic touches must have moved by exactly what the traffic did (docs/metrics.md).

const RAW = 'encoding=linear16&sample_rate=16000'

/** One sample of the exposition text: `name{labels} value`, labels in any order; 0 when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue
    const open = line.indexOf('{')
    const close = line.lastIndexOf('}')
    const body = open > 0 && open < close ? line.slice(open + 1, close) : ''
    const found = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]))
    const want = Object.entries(labels)
    if (want.length !== Object.keys(found).length) continue
    if (want.every(([k, v]) => found[k] === v)) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}

async function scrape(srv: LiveServer): Promise<string> {
  const res = await fetch(`${srv.url}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return res.text()
}

describe('GET /metrics after real traffic', () => {
  let srv: LiveServer
  let pcm: Int16Array
  before(async () => {
    // One engine slot, so a second live stream is refused for capacity; one grant a minute, so a second
    // grant is refused by the rate limit.
    srv = await startLiveServer({ EARMARK_CAPACITY: '1', EARMARK_LIMIT_GRANTS_PER_MINUTE: '1' })
    pcm = concatPcm(await speech('the quick brown fox jumps over the lazy dog'), silence(0.5))
  })
  after(async () => {
    await srv.close()
  })

  it('counts a transcription, a live stream, refusals and failed credentials exactly', async () => {
    const auth = { authorization: `Token ${srv.ownerKey}` }
    const before = await scrape(srv)

    // One pre-recorded transcription.
    const rest = await fetch(`${srv.url}/v1/listen?${RAW}`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'audio/l16' },
      body: Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength),
    })
    assert.equal(rest.status, 200)
    const restBody = (await rest.json()) as {
      results: { channels: { alternatives: { transcript: string }[] }[] }
    }
    assert.match(restBody.results.channels[0]?.alternatives[0]?.transcript ?? '', /fox/)

    // One live stream; while it is open, a second one is refused for capacity and the gauge shows it.
    const live = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    assert.equal(live.log.status, undefined)
    const busy = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`, { protocols: ['token', srv.ownerKey] })
    assert.equal(busy.log.status, 429)
    const during = await scrape(srv)
    assert.equal(sample(during, 'earmark_live_streams_open', { route: '/v1/listen' }), 1)
    await sendPcm(live.ws, pcm)
    live.ws.send(JSON.stringify({ type: 'CloseStream' }))
    const closed = await live.closed
    assert.equal(closed.close?.code, 1000)
    assert.match(finals(closed), /fox/)

    // Refused credentials: an unknown key over HTTP, no credential at all on an upgrade. (Scraped first: while
    // a stream is open its revocation guard reads the store too.)
    const quiet = await scrape(srv)
    const unknown = await fetch(`${srv.url}/v1/projects`, {
      headers: { authorization: 'Token emk_this_key_does_not_exist_anywhere_00' },
    })
    assert.equal(unknown.status, 401)
    const anonymous = await openSocket(`${srv.wsUrl}/v1/listen?${RAW}`)
    assert.equal(anonymous.log.status, 401)

    // Two grants: the first minted, the second over the one-a-minute limit.
    const grant = () =>
      fetch(`${srv.url}/v1/auth/grant`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: '{}',
      })
    assert.equal((await grant()).status, 200)
    assert.equal((await grant()).status, 429)

    const after = await scrape(srv)
    const delta = (name: string, labels: Record<string, string> = {}) =>
      sample(after, name, labels) - sample(before, name, labels)
    const seconds = pcm.length / 16_000

    assert.equal(
      delta('earmark_http_requests_total', { method: 'POST', route: '/v1/listen', status: '200' }),
      1,
    )
    assert.equal(
      delta('earmark_http_requests_total', { method: 'GET', route: '/v1/projects', status: '401' }),
      1,
    )
    assert.equal(
      delta('earmark_http_requests_total', { method: 'POST', route: '/v1/auth/grant', status: '200' }),
      1,
    )
    assert.equal(
      delta('earmark_http_requests_total', { method: 'POST', route: '/v1/auth/grant', status: '429' }),
      1,
    )
    // Scrapes are requests too: the three before this one.
    assert.equal(delta('earmark_http_requests_total', { method: 'GET', route: '/metrics', status: '200' }), 3)
    assert.equal(delta('earmark_ws_upgrades_total', { route: '/v1/listen', status: '101' }), 1)
    assert.equal(delta('earmark_ws_upgrades_total', { route: '/v1/listen', status: '429' }), 1)
    assert.equal(delta('earmark_ws_upgrades_total', { route: '/v1/listen', status: '401' }), 1)
    assert.equal(delta('earmark_auth_failures_total', { reason: 'unknown' }), 1)
    assert.equal(delta('earmark_auth_failures_total', { reason: 'missing' }), 1)
    assert.equal(delta('earmark_grants_minted_total'), 1)
    assert.equal(delta('earmark_admission_refusals_total', { reason: 'capacity' }), 1)
    assert.equal(delta('earmark_admission_refusals_total', { reason: 'rate_limit' }), 1)
    assert.equal(delta('earmark_admission_refusals_total', { reason: 'quota' }), 0)
    assert.equal(delta('earmark_admission_refusals_total', { reason: 'share' }), 0)
    assert.ok(Math.abs(delta('earmark_audio_seconds_total', { transport: 'prerecorded' }) - seconds) < 1e-6)
    assert.ok(Math.abs(delta('earmark_audio_seconds_total', { transport: 'live' }) - seconds) < 1e-6)
    assert.equal(sample(after, 'earmark_live_streams_open', { route: '/v1/listen' }), 0)
    // The unknown secret cost exactly one store lookup by hash.
    const lookups = (text: string) =>
      sample(text, 'earmark_store_operation_seconds_count', { operation: 'findKeyByHash' })
    assert.equal(lookups(after) - lookups(quiet), 1)

    // The engine decoded both recordings, slice by slice, and says how fast.
    const decoded = delta('earmark_engine_decoded_audio_seconds_total', { engine: 'pocketsphinx' })
    assert.ok(decoded >= 2 * seconds - 0.2 && decoded <= 2 * seconds + 0.2, `decoded ${decoded} s`)
    assert.ok(delta('earmark_engine_decode_seconds_total', { engine: 'pocketsphinx' }) > 0)
    const rtf = sample(after, 'earmark_engine_real_time_factor', { engine: 'pocketsphinx' })
    assert.ok(rtf > 0 && rtf < 1, `real-time factor ${rtf}`)
    assert.equal(sample(after, 'earmark_engine_capacity', { engine: 'pocketsphinx' }), 1)
    assert.equal(sample(after, 'earmark_engine_backlog_seconds', { engine: 'pocketsphinx' }), 0)
    // prom-client's process metrics, event-loop lag among them.
    assert.ok(after.includes('\nnodejs_eventloop_lag_seconds '))
  })

  it('never labels a request with its raw URL', async () => {
    const secretish = 'emk_pasted_into_a_path_0123456789abcdef'
    const res = await fetch(`${srv.url}/v1/auth/token/${secretish}?key=${secretish}`)
    assert.equal(res.status, 404)
    const text = await scrape(srv)
    assert.ok(!text.includes(secretish))
    assert.ok(
      sample(text, 'earmark_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' }) >= 1,
    )
  })

  it('refuses a scrape that came through a proxy under the default EARMARK_METRICS=local', async () => {
    const res = await fetch(`${srv.url}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.7' } })
    assert.equal(res.status, 403)
    assert.equal(((await res.json()) as { err_code: string }).err_code, 'FORBIDDEN')
  })
})

describe('who may read /metrics', () => {
  it('wants the bearer token with EARMARK_METRICS=token, and serves nothing with off', async () => {
    const token = 'metrics-scraper-token-0123456789'
    const srv = await startLiveServer({
      EARMARK_CAPACITY: '1',
      EARMARK_METRICS: 'token',
      EARMARK_METRICS_TOKEN: token,
    })
    try {
      assert.equal((await fetch(`${srv.url}/metrics`)).status, 401)
      const wrong = await fetch(`${srv.url}/metrics`, {
        headers: { authorization: 'Bearer not-the-token-at-all-000' },
      })
      assert.equal(wrong.status, 401)
      const right = await fetch(`${srv.url}/metrics`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(right.status, 200)
      assert.match(await right.text(), /earmark_http_requests_total/)
    } finally {
      await srv.close()
    }
    const off = await startLiveServer({ EARMARK_CAPACITY: '1', EARMARK_METRICS: 'off' })
    try {
      assert.equal((await fetch(`${off.url}/metrics`)).status, 404)
    } finally {
      await off.close()
    }
  })
})
