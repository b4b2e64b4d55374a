import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { ownerApi, pcmBytes, spokenSentences, wsUrlOf } from '../helpers/listen-e2e.js'
import { finals, openSocket, sendPcm } from '../helpers/live-server.js'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'
import { concatPcm } from '../helpers/speech.js'
import { recordSecrets } from '../helpers/test-logs.js'

// How a relayed stream ends (docs/gateway.md "What passes through"): Earmark A relays to Earmark B, two real
// processes with real PocketSphinx on B. A's idle timeout is short, so a far end that takes longer than it to
// flush after the client's end of audio shows whether A waits for the far end or cuts it off.

const A_IDLE_MS = 2000
// Interim results: while B decodes, frames keep coming back (A's idle clock then runs on them).
const LINEAR16 = '?model=nova-3&encoding=linear16&sample_rate=16000&interim_results=true'

describe('the end of a relayed live stream', { timeout: 300_000 }, () => {
  const bOwner = `emk_gwclose_b_${randomBytes(8).toString('hex')}_owner`
  const aOwner = `emk_gwclose_a_${randomBytes(8).toString('hex')}_owner`
  let b: ServerProcess
  let a: ServerProcess
  let speech: Int16Array

  before(async () => {
    ;[b, speech] = await Promise.all([
      startServerProcess({ bootstrapKey: bOwner, env: { EARMARK_CAPACITY: '2' } }),
      spokenSentences(['the meeting starts at nine in the morning on monday', 'please open the door']),
    ])
    const upstreamKey = await (await ownerApi(b.url, bOwner)).createKey('gateway A', ['member'])
    recordSecrets(upstreamKey.key)
    a = await startServerProcess({
      bootstrapKey: aOwner,
      env: {
        EARMARK_ENGINE: 'upstream',
        EARMARK_UPSTREAM_URL: b.url,
        EARMARK_UPSTREAM_KEY: upstreamKey.key,
        EARMARK_WS_IDLE_TIMEOUT_MS: String(A_IDLE_MS),
      },
    })
  })
  after(async () => {
    await Promise.allSettled([a?.stop(), b?.stop()])
    for (const s of [a, b]) if (s) removeDir(s.dataDir)
  })

  it('waits for a far end that flushes for longer than the idle timeout after CloseStream, and passes on every final', async () => {
    // About a minute of speech sent at once: B decodes most of it after the client has stopped sending.
    const pcm = concatPcm(...Array.from({ length: 8 }, () => speech))
    const { ws, log, closed } = await openSocket(`${wsUrlOf(a.url)}/v1/listen${LINEAR16}`, {
      protocols: ['token', aOwner],
    })
    await sendPcm(ws, pcm)
    const endedAt = Date.now()
    ws.send(JSON.stringify({ type: 'CloseStream' }))
    await closed
    const flushMs = Date.now() - endedAt
    assert.ok(flushMs > A_IDLE_MS, `B flushed in ${flushMs} ms, not longer than A's idle timeout`)
    assert.deepEqual(log.close, { code: 1000, reason: '' })
    assert.equal(finals(log).match(/meeting starts at nine/g)?.length, 8, finals(log))
    const metadata = log.messages.find((m) => m.type === 'Metadata')
    assert.equal(metadata?.duration, pcm.length / 16000)
  })

  it('relays the legacy end of stream, an empty binary frame, and closes normally with Metadata', async () => {
    const { ws, log, closed } = await openSocket(`${wsUrlOf(a.url)}/v1/listen${LINEAR16}`, {
      protocols: ['token', aOwner],
    })
    ws.send(pcmBytes(speech))
    ws.send(Buffer.alloc(0))
    await closed
    assert.equal(log.close?.code, 1000)
    assert.match(finals(log), /open the door/)
    assert.equal(log.messages.filter((m) => m.type === 'Metadata').length, 1)
  })
})
