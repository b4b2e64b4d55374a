import assert from 'node:assert/strict'
import { once } from 'node:events'
import { request } from 'node:http'
import { after, describe, it } from 'node:test'
import { finals, openSocket, type StreamLog, sendPcm } from '../helpers/live-server.js'
import { removeDir, startServerProcess } from '../helpers/server-process.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'

// SIGTERM to a real `earmark serve` (bin/earmark.js) with two live streams and a pre-recorded upload in
// flight: new work is refused with 503 and Retry-After at once, the upload completes with 200, the streams
// run on until EARMARK_DRAIN_SECONDS, then get their final results, Metadata and 1001 SHUTDOWN-0001, and the
// process exits 0 (docs/deploy.md, "Graceful shutdown").

const RAW = 'encoding=linear16&sample_rate=16000'
const DRAIN_SECONDS = 4

function bytesOf(pcm: Int16Array): Buffer {
  return Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)
}

describe('graceful shutdown of earmark serve', () => {
  const dirs: string[] = []
  after(() => {
    for (const dir of dirs) removeDir(dir)
  })

  it('lets the upload finish, ends both streams with their finals and 1001 SHUTDOWN-0001, and exits 0', async () => {
    const ownerKey = `emk_drain_test_${process.pid}_owner_secret`
    const srv = await startServerProcess({
      bootstrapKey: ownerKey,
      env: { EARMARK_CAPACITY: '3', EARMARK_DRAIN_SECONDS: String(DRAIN_SECONDS) },
    })
    dirs.push(srv.dataDir)
    const exited = once(srv.child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>
    const wsUrl = srv.url.replace(/^http/, 'ws')
    const sentence = concatPcm(await speech('the quick brown fox jumps over the lazy dog'), silence(1))

    // Two live streams: speech, then silence every 100 ms, never a CloseStream.
    const streams = await Promise.all(
      [0, 1].map(() => openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['token', ownerKey] })),
    )
    for (const s of streams) assert.equal(s.log.status, undefined, 'the stream opened')
    await Promise.all(streams.map((s) => sendPcm(s.ws, sentence)))
    const keepSending = setInterval(() => {
      for (const s of streams) if (s.ws.readyState === s.ws.OPEN) s.ws.send(Buffer.alloc(3200))
    }, 100)

    // A pre-recorded upload, half sent when the signal comes.
    const body = bytesOf(sentence)
    const half = body.length >> 1
    const upload = request(`${srv.url}/v1/listen?${RAW}`, {
      method: 'POST',
      headers: {
        authorization: `Token ${ownerKey}`,
        'content-type': 'audio/l16',
        'content-length': String(body.length),
      },
    })
    const answer = new Promise<{ status: number; text: string }>((resolve, reject) => {
      upload.on('response', (res) => {
        let text = ''
        res.on('data', (d: Buffer) => {
          text += d.toString()
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
      })
      upload.on('error', reject)
    })
    upload.write(body.subarray(0, half))
    await new Promise((r) => setTimeout(r, 300))

    const signalled = Date.now()
    srv.child.kill('SIGTERM')
    await new Promise((r) => setTimeout(r, 500))

    // Draining: new work is refused, the balancer's probe says not ready, the process is still alive.
    const refused = await fetch(`${srv.url}/v1/projects`, { headers: { authorization: `Token ${ownerKey}` } })
    assert.equal(refused.status, 503)
    assert.equal(refused.headers.get('retry-after'), '5')
    const late = await openSocket(`${wsUrl}/v1/listen?${RAW}`, { protocols: ['token', ownerKey] })
    assert.equal(late.log.status, 503)
    assert.equal((await fetch(`${srv.url}/readyz`)).status, 503)
    assert.equal((await fetch(`${srv.url}/healthz`)).status, 200)

    upload.end(body.subarray(half))
    const got = await answer
    assert.equal(got.status, 200, got.text)
    const transcript = (
      JSON.parse(got.text) as { results: { channels: { alternatives: { transcript: string }[] }[] } }
    ).results.channels[0]?.alternatives[0]?.transcript
    assert.match(transcript ?? '', /fox/)

    const logs: StreamLog[] = await Promise.all(streams.map((s) => s.closed))
    const closedAfter = Date.now() - signalled
    clearInterval(keepSending)
    for (const log of logs) {
      assert.deepEqual(log.close, { code: 1001, reason: 'SHUTDOWN-0001' })
      assert.match(finals(log), /fox/)
      const last = log.messages.at(-1)
      assert.equal(last?.type, 'Metadata', 'Metadata comes last, after the finals')
    }
    // They ran on until the deadline, not cut at the signal.
    assert.ok(closedAfter >= DRAIN_SECONDS * 1000 - 200, `closed ${closedAfter} ms after SIGTERM`)

    const [code, signal] = await exited
    assert.equal(signal, null)
    assert.equal(code, 0, srv.output.slice(-20).join('\n'))
    const lines = srv.output.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string })
    assert.ok(lines.some((l) => l.msg === 'drain deadline reached: closing the streams still open'))
  })
})
