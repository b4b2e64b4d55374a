import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { AppOptions } from '../../src/http/index.js'
import { createSpeechJobs, synthesize } from '../../src/tts/index.js'
import { bootstrapProject, createTestEarmark, type TestEarmark } from '../helpers/earmark.js'

/** This process's child processes (zombies included), by command name. */
function children(): string[] {
  try {
    return execFileSync('ps', ['--ppid', String(process.pid), '-o', 'comm='], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && l !== 'ps')
  } catch {
    return [] // ps exits 1 when there is none
  }
}

/** Samples the flite and ffmpeg children every few ms while `work` runs; resolves with the most at once. */
async function peakSynthesisProcesses(work: Promise<unknown>): Promise<number> {
  let peak = 0
  let done = false
  const finished = work.finally(() => {
    done = true
  })
  while (!done) {
    peak = Math.max(peak, children().filter((c) => /^(flite|ffmpeg|espeak)/.test(c)).length)
    await new Promise((r) => setTimeout(r, 5))
  }
  await finished
  return peak
}

const LONG_TEXT = 'The quick brown fox jumps over the lazy dog. '.repeat(30)

async function speakServer(speak: AppOptions['speak']) {
  const em = await createTestEarmark(':memory:', { speak })
  const fx = await bootstrapProject(em.services)
  const speakOnce = (text = LONG_TEXT) =>
    em.app.inject({
      method: 'POST',
      url: '/v1/speak?encoding=linear16&container=none&sample_rate=16000',
      headers: { authorization: `Token ${fx.ownerKey}` },
      payload: { text },
    })
  return { em, fx, speakOnce }
}

function assertDeepgramError(res: { statusCode: number; body: string; headers: Record<string, unknown> }) {
  const body = JSON.parse(res.body) as Record<string, unknown>
  assert.deepEqual(Object.keys(body).sort(), ['err_code', 'err_msg', 'request_id'])
  assert.equal(body.request_id, res.headers['dg-request-id'])
  return body as { err_code: string; request_id: string }
}

describe('/v1/speak limits', () => {
  let em: TestEarmark | undefined
  after(() => em?.close())

  it('runs at most `concurrency` syntheses, queues `maxQueue` more and refuses the next with 429', async () => {
    const server = await speakServer({ concurrency: 1, maxQueue: 1, waitMs: 60_000 })
    em = server.em
    const all = Promise.all([server.speakOnce(), server.speakOnce(), server.speakOnce()])
    const peak = await peakSynthesisProcesses(all)
    const responses = await all
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [200, 200, 429])
    assert.ok(peak <= 1, `${peak} flite/ffmpeg processes ran at once`)
    const refused = responses.find((r) => r.statusCode === 429)
    assert.ok(refused)
    const body = assertDeepgramError(refused)
    assert.equal(body.err_code, 'TOO_MANY_REQUESTS')
    const usage = await server.em.services.store.getUsage(server.fx.projectId, body.request_id)
    assert.notEqual(usage?.status, 200)
    await server.em.close()
    em = undefined
  })

  it('refuses a request that waited `waitMs` for a slot with 429', async () => {
    const server = await speakServer({ concurrency: 1, maxQueue: 8, waitMs: 20 })
    em = server.em
    const responses = await Promise.all([server.speakOnce(), server.speakOnce()])
    assert.deepEqual(responses.map((r) => r.statusCode).sort(), [200, 429])
    await server.em.close()
    em = undefined
  })

  it('kills a synthesis that runs past `timeoutMs`, answers 504 and meters no success', async () => {
    const server = await speakServer({ concurrency: 2, timeoutMs: 5 })
    em = server.em
    const res = await server.speakOnce()
    assert.equal(res.statusCode, 504, res.body)
    const body = assertDeepgramError(res)
    assert.equal(body.err_code, 'GATEWAY_TIMEOUT')
    const usage = await server.em.services.store.getUsage(server.fx.projectId, body.request_id)
    assert.equal(usage?.status, 504)
    assert.deepEqual(
      children().filter((c) => /^(flite|ffmpeg)/.test(c)),
      [],
      'the killed program was reaped',
    )
    await server.em.close()
    em = undefined
  })
})

describe('synthesize time limits', () => {
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'earmark-speak-limits-'))
  })
  after(() => rm(dir, { recursive: true, force: true }))

  it('kills ffmpeg past its own limit, reaps it and removes the temporary files', async () => {
    await assert.rejects(
      synthesize(LONG_TEXT, {
        voice: 'flite-kal',
        encoding: 'flac',
        timeoutMs: 60_000,
        encodeTimeoutMs: 1,
        tmpDir: dir,
      }),
      (err: { code?: string; status?: number }) => err.code === 'GATEWAY_TIMEOUT' && err.status === 504,
    )
    assert.deepEqual(await readdir(dir), [])
    assert.deepEqual(
      children().filter((c) => /^(flite|ffmpeg)/.test(c)),
      [],
    )
  })

  it('kills the voice engine past the limit the same way', async () => {
    await assert.rejects(
      synthesize(LONG_TEXT, { voice: 'flite-slt', encoding: 'linear16', timeoutMs: 1, tmpDir: dir }),
      (err: { code?: string }) => err.code === 'GATEWAY_TIMEOUT',
    )
    assert.deepEqual(await readdir(dir), [])
  })

  it('within its limits, delivers exactly byteLength bytes and then removes its files', async () => {
    const speech = await synthesize('Hello there.', { voice: 'flite-kal', encoding: 'mp3', tmpDir: dir })
    const chunks: Buffer[] = []
    for await (const chunk of speech.stream) chunks.push(chunk as Buffer)
    assert.equal(Buffer.concat(chunks).length, speech.byteLength)
    for (let i = 0; i < 100 && (await readdir(dir)).length > 0; i++)
      await new Promise((r) => setTimeout(r, 10))
    assert.deepEqual(await readdir(dir), [], 'the files go once the stream has closed')
  })
})

describe('createSpeechJobs', () => {
  const gate = () => {
    let open: () => void = () => {}
    const opened = new Promise<void>((r) => {
      open = r
    })
    return { open, opened }
  }

  it('admits waiters first come, first served, as slots free up', async () => {
    const jobs = createSpeechJobs({ concurrency: 1, maxQueue: 2, waitMs: 10_000 })
    const order: string[] = []
    const first = gate()
    const a = jobs.run(async () => {
      await first.opened
      order.push('a')
    })
    const b = jobs.run(async () => {
      order.push('b')
    })
    const c = jobs.run(async () => {
      order.push('c')
    })
    assert.equal(jobs.active, 1)
    assert.equal(jobs.queued, 2)
    await assert.rejects(
      jobs.run(async () => {}),
      (err: { code?: string }) => err.code === 'TOO_MANY_REQUESTS',
    )
    first.open()
    await Promise.all([a, b, c])
    assert.deepEqual(order, ['a', 'b', 'c'])
    assert.equal(jobs.active, 0)
    assert.equal(jobs.queued, 0)
  })

  it('releases the slot of a job that fails', async () => {
    const jobs = createSpeechJobs({ concurrency: 1, maxQueue: 0, waitMs: 0 })
    await assert.rejects(
      jobs.run(async () => {
        throw new Error('boom')
      }),
      /boom/,
    )
    assert.equal(await jobs.run(async () => 42), 42)
  })
})
