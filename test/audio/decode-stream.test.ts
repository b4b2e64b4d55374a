import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { decodeStream } from '../../src/audio/index.js'
import { ffmpegChildren } from '../helpers/audio-fixtures.js'

const CHUNK = 64 * 1024

/** `total` bytes of low noise in CHUNK pieces, counting how many were pulled and whether it was closed. */
function source(total: number) {
  const state = { pulled: 0, closed: false }
  async function* chunks() {
    try {
      for (let sent = 0; sent < total; sent += CHUNK) {
        state.pulled++
        const chunk = Buffer.alloc(Math.min(CHUNK, total - sent))
        for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0x0f
        yield chunk
      }
    } finally {
      state.closed = true
    }
  }
  return { state, chunks: chunks() }
}

describe('decodeStream', () => {
  for (const [label, sampleRate] of [
    ['through ffmpeg (8 kHz linear16)', 8000],
    ['straight through (16 kHz linear16)', 16000],
  ] as const) {
    it(`reads its input only as fast as its PCM is taken, ${label}`, async () => {
      const total = 16 * 1024 * 1024
      const { state, chunks } = source(total)
      const pcm = decodeStream(chunks, {
        format: { kind: 'raw', encoding: 'linear16', sampleRate, channels: 1 },
      })
      assert.equal(state.pulled, 0, 'nothing is read before the first next()')
      const first = await pcm.next()
      assert.equal(first.done, false)
      const pulledAtFirst = state.pulled
      await sleep(300)
      assert.equal(state.pulled, pulledAtFirst, 'nothing more is read while the consumer waits')
      assert.ok(pulledAtFirst * CHUNK < total / 4, `read ${pulledAtFirst} chunks for the first PCM`)
      await pcm.return(undefined)
      assert.ok(state.closed, 'closing early closes the input')
      assert.deepEqual(await ffmpegChildren(), [], 'and leaves no ffmpeg')
    })
  }

  it('yields every sample when read to the end, a chunk at a time', async () => {
    const total = 3 * CHUNK + 1001
    const { state, chunks } = source(total)
    let samples = 0
    for await (const pcm of decodeStream(chunks, {
      format: { kind: 'raw', encoding: 'linear16', sampleRate: 16000, channels: 1 },
    })) {
      samples += pcm.length
    }
    assert.equal(samples, Math.floor(total / 2))
    assert.ok(state.closed)
  })
})
