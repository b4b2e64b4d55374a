import assert from 'node:assert/strict'
import { Agent, request } from 'node:http'
import { describe, it } from 'node:test'
import { startLiveServer } from '../helpers/live-server.js'

// A keep-alive connection whose request is still running when the server starts closing must not hold the
// close for its keep-alive timeout (72 s): it is ended as soon as its answer is out.

describe('shutdown with a request in flight', () => {
  it('answers the running /v1/speak request and closes within seconds, not at the keep-alive timeout', async () => {
    const srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    const agent = new Agent({ keepAlive: true })
    try {
      const text = 'the quick brown fox jumps over the lazy dog. '.repeat(40)
      const answer = new Promise<{ status: number; bytes: number; connection: string | undefined }>(
        (resolve, reject) => {
          const req = request(
            `${srv.url}/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=16000`,
            {
              method: 'POST',
              agent,
              headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
            },
            (res) => {
              let bytes = 0
              res.on('data', (d: Buffer) => {
                bytes += d.length
              })
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, bytes, connection: res.headers.connection }),
              )
              res.on('error', reject)
            },
          )
          req.on('error', reject)
          req.end(JSON.stringify({ text }))
        },
      )
      await new Promise((r) => setTimeout(r, 300)) // the synthesis is running
      const started = Date.now()
      await srv.close()
      const closeMs = Date.now() - started
      const got = await answer
      assert.equal(got.status, 200)
      assert.ok(got.bytes > 0)
      assert.ok(closeMs < 15_000, `close took ${closeMs} ms`)
    } finally {
      agent.destroy()
    }
  })
})
