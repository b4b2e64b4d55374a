import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { readdir, stat, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { type AddressInfo, connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createEngine, type Engine, type EngineStream } from '../../src/engines/index.js'
import { warmupSpeech } from '../../src/main.js'
import { ffmpegChildren, runTool } from '../helpers/audio-fixtures.js'
import { bootstrapProject, createTestEarmark, type Fixture, type TestEarmark } from '../helpers/earmark.js'
import { eventually, wav } from '../helpers/listen-e2e.js'
import { concatPcm, silence, speech } from '../helpers/speech.js'

const MAX_UPLOAD = 4 * 1024 * 1024
const MAX_AUDIO_SECONDS = 20

/** One HTTP/1.1 exchange on a raw loopback socket: the head goes first, the body as the test decides. */
interface RawExchange {
  socket: Socket
  /** Resolves with the answer once its head and its whole (Content-Length) body arrived. */
  answer: Promise<{
    status: number
    headers: Record<string, string>
    body: Record<string, unknown>
    ms: number
  }>
  /** Resolves when the server (or the test) closed the connection. */
  closed: Promise<void>
  /** Writes body bytes; false once the socket is gone. */
  send(bytes: Uint8Array): Promise<boolean>
}

function exchange(port: number, head: string): RawExchange {
  const started = performance.now()
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const answer = new Promise<Awaited<RawExchange['answer']>>((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const onData = (data: Buffer) => {
      buf = Buffer.concat([buf, data])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
      const headers: Record<string, string> = {}
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':')
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
      }
      const length = Number(headers['content-length'] ?? 0)
      if (buf.length < end + 4 + length) return
      socket.off('data', onData)
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]),
        headers,
        body: JSON.parse(buf.subarray(end + 4, end + 4 + length).toString('utf8')) as Record<string, unknown>,
        ms: performance.now() - started,
      })
    }
    socket.on('data', onData)
    void closed.then(() => reject(new Error(`closed without an answer: ${buf.toString('latin1')}`)))
  })
  answer.catch(() => {})
  socket.write(head)
  return {
    socket,
    answer,
    closed,
    send: (bytes) =>
      new Promise((resolve) => {
        if (socket.destroyed || !socket.writable) return resolve(false)
        socket.write(bytes, (err) => resolve(!err))
      }),
  }
}

function requestHead(key: string, query: string, headers: Record<string, string | number>): string {
  const lines = [`POST /v1/listen${query} HTTP/1.1`, 'Host: 127.0.0.1', `Authorization: Token ${key}`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** Asserts the Deepgram error shape, with the request id the headers carry. */
function assertDeepgramError(res: Awaited<RawExchange['answer']>, status: number, code: string) {
  assert.equal(res.status, status, JSON.stringify(res.body))
  assert.equal(res.body.err_code, code)
  assert.equal(typeof res.body.err_msg, 'string')
  assert.match(String(res.body.request_id), /^[0-9a-f-]{36}$/)
  assert.equal(res.body.request_id, res.headers['dg-request-id'])
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe('POST /v1/listen limits (real server on loopback, real ffmpeg and PocketSphinx)', () => {
  let engine: Engine
  let em: TestEarmark
  let fx: Fixture
  let port: number
  let uploadDir: string
  let speechWav: Buffer
  /** About 60 s of speech as FLAC: decoding it needs ffmpeg, and takes a few seconds. */
  let longFlac: Buffer
  let drip: Server
  let dripHost: string
  const dripTimers = new Set<NodeJS.Timeout>()

  before(async () => {
    engine = await createEngine('pocketsphinx', { capacity: 1, warmup: warmupSpeech() })
    uploadDir = mkdtempSync(join(tmpdir(), 'earmark-upload-test-'))
    drip = createServer((req, res) => {
      const every = (ms: number, fn: () => void) => {
        const timer = setInterval(fn, ms)
        dripTimers.add(timer)
        res.on('close', () => {
          clearInterval(timer)
          dripTimers.delete(timer)
        })
      }
      if (req.url === '/drip') {
        // A byte every 100 ms, for ever: never idle, never done.
        res.writeHead(200, { 'content-type': 'audio/wav' })
        every(100, () => res.write(Buffer.from([0])))
      } else if (req.url === '/stall') {
        res.writeHead(200, { 'content-type': 'audio/wav' })
        res.write(speechWav.subarray(0, 1000))
        every(60_000, () => {})
      } else if (req.url === '/no-headers') {
        every(60_000, () => {})
      } else {
        res.writeHead(404).end()
      }
    })
    await new Promise<void>((r) => drip.listen(0, '127.0.0.1', r))
    dripHost = `127.0.0.1:${(drip.address() as AddressInfo).port}`
    em = await createTestEarmark(':memory:', {
      engine,
      options: {
        maxUploadBytes: MAX_UPLOAD,
        capacityWaitMs: 10_000,
        fetch: { allowedHosts: [dripHost], timeoutMs: 1500, idleTimeoutMs: 400 },
        prerecorded: {
          maxQueue: 1,
          maxUploads: 2,
          maxAudioSeconds: MAX_AUDIO_SECONDS,
          uploadIdleTimeoutMs: 500,
          uploadDir,
        },
      },
    })
    fx = await bootstrapProject(em.services)
    await em.app.listen({ port: 0, host: '127.0.0.1' })
    port = (em.app.server.address() as AddressInfo).port

    const sentence = await speech('please open the door and turn on the lights in the kitchen')
    speechWav = wav(concatPcm(silence(0.3), sentence, silence(0.5)))
    const parts: Int16Array[] = []
    for (let seconds = 0; seconds < 60; seconds += sentence.length / 16000 + 0.5)
      parts.push(sentence, silence(0.5))
    const wavPath = join(uploadDir, '..', `earmark-long-${process.pid}.wav`)
    await writeFile(wavPath, wav(concatPcm(...parts)))
    longFlac = await runTool('ffmpeg', [
      '-hide_banner',
      '-loglevel',
      'error',
      '-i',
      wavPath,
      '-f',
      'flac',
      'pipe:1',
    ])
    rmSync(wavPath, { force: true })
  })

  after(async () => {
    for (const timer of dripTimers) clearInterval(timer)
    await em.close()
    await engine.close()
    drip.closeAllConnections()
    drip.close()
    rmSync(uploadDir, { recursive: true, force: true })
  })

  /** A request with the owner key: its head is sent now, its body as the test decides. */
  const post = (headers: Record<string, string | number>) =>
    exchange(port, requestHead(fx.ownerKey, '', headers))

  const postWav = () => post({ 'Content-Type': 'audio/wav', 'Content-Length': speechWav.length })
  const postFlac = () => post({ 'Content-Type': 'audio/flac', 'Content-Length': longFlac.length })

  /** Nothing is left behind: no spool file, no ffmpeg process, no decoder lent out. */
  async function assertAllReleased() {
    await eventually(
      async () => ((await readdir(uploadDir)).length === 0 ? true : undefined),
      5000,
      'the upload dir to be empty',
    )
    await eventually(
      async () => ((await ffmpegChildren()).length === 0 ? true : undefined),
      5000,
      'no ffmpeg',
    )
    await eventually(async () => (engine.inUse() === 0 ? true : undefined), 5000, 'engine.inUse() to be 0')
  }

  const seenUsage = new Set<string>()
  /** Usage records finished since the last call (the clock is manual: start times do not order them). */
  const freshUsage = async () => {
    const fresh = (await em.services.store.listUsage(fx.projectId, { limit: 1000 })).filter(
      (r) => !seenUsage.has(r.id) && r.status !== null,
    )
    for (const r of fresh) seenUsage.add(r.id)
    return fresh
  }
  /** The one usage record finished since the last look, if any. */
  const newestUsage = async () => {
    const fresh = await freshUsage()
    assert.ok(fresh.length <= 1, `one record at a time, not ${fresh.length}`)
    return fresh[0]
  }

  it('still transcribes a normal WAV upload over a real socket', async () => {
    const ex = postWav()
    await ex.send(speechWav)
    const res = await ex.answer
    assert.equal(res.status, 200, JSON.stringify(res.body))
    const results = res.body.results as { channels: { alternatives: { transcript: string }[] }[] }
    assert.match(results.channels[0]?.alternatives[0]?.transcript ?? '', /door/)
    assert.equal((await newestUsage())?.status, 200)
    ex.socket.destroy()
    await assertAllReleased()
  })

  it('refuses a Content-Length over the limit with 413 from the header alone, and closes the connection', async () => {
    const ex = post({ 'Content-Type': 'audio/wav', 'Content-Length': 600_000_000 })
    const res = await ex.answer
    assertDeepgramError(res, 413, 'PAYLOAD_TOO_LARGE')
    assert.ok(res.ms < 1000, `answered in ${res.ms.toFixed(0)} ms without a body byte`)
    assert.equal(res.headers.connection, 'close')
    await Promise.race([
      ex.closed,
      sleep(2000).then(() => assert.fail('the server left the connection open')),
    ])
    assert.equal(await newestUsage(), undefined, 'nothing was metered')
    await assertAllReleased()
  })

  it('answers a refusal before the body (bad credentials) at once and closes the connection', async () => {
    const ex = exchange(
      port,
      requestHead('emk_not_a_real_key_0000000000', '', {
        'Content-Type': 'audio/wav',
        'Content-Length': MAX_UPLOAD,
      }),
    )
    const res = await ex.answer
    assertDeepgramError(res, 401, 'INVALID_AUTH')
    assert.equal(res.headers.connection, 'close')
    await Promise.race([
      ex.closed,
      sleep(2000).then(() => assert.fail('the server kept reading the connection')),
    ])
    assert.equal(await newestUsage(), undefined)
  })

  it('cuts off a chunked upload at the limit with 413 and removes what it had spooled', async () => {
    const ex = post({ 'Content-Type': 'audio/wav', 'Transfer-Encoding': 'chunked' })
    const piece = Buffer.alloc(64 * 1024, 1)
    let sent = 0
    let answered = false
    void ex.answer.then(() => {
      answered = true
    })
    while (!answered && sent < 4 * MAX_UPLOAD) {
      if (
        !(await ex.send(
          Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]),
        ))
      )
        break
      sent += piece.length
    }
    const res = await ex.answer
    assertDeepgramError(res, 413, 'PAYLOAD_TOO_LARGE')
    assert.ok(sent > MAX_UPLOAD, `cut off after ${sent} bytes`)
    assert.equal((await newestUsage())?.status, 413)
    ex.socket.destroy()
    await assertAllReleased()
  })

  it('leaves no temp file, ffmpeg or decoder behind when the client drops an upload half-way', async () => {
    const ex = postFlac()
    await ex.send(longFlac.subarray(0, longFlac.length >> 1))
    const [name] = await eventually(
      async () => {
        const names = await readdir(uploadDir)
        return names.length > 0 ? names : undefined
      },
      5000,
      'the spool file',
    )
    const mode = (await stat(join(uploadDir, name ?? ''))).mode & 0o777
    assert.equal(mode, 0o600, 'the spool file is private')
    ex.socket.destroy()
    await assertAllReleased()
    const record = await eventually(newestUsage, 5000, 'a usage record')
    assert.equal(record.status, 499)
  })

  it('stops decoding, kills ffmpeg and frees the decoder when the client leaves while its audio is decoded', async () => {
    const ex = postFlac()
    await ex.send(longFlac)
    await eventually(
      async () => ((await ffmpegChildren()).length === 1 && engine.inUse() === 1 ? true : undefined),
      10_000,
      'the decode to start',
    )
    ex.socket.destroy()
    await assertAllReleased()
    const record = await eventually(newestUsage, 5000, 'a usage record')
    assert.equal(record.status, 499)
    assert.equal(record.detail, 'CLIENT_CLOSED')
  })

  it('refuses audio longer than the limit: from the WAV header before decoding, else once decoding passes it', async () => {
    const long = wav(silence(MAX_AUDIO_SECONDS + 5))
    const fromHeader = post({ 'Content-Type': 'audio/wav', 'Content-Length': long.length })
    await fromHeader.send(long)
    const refused = await fromHeader.answer
    assertDeepgramError(refused, 413, 'PAYLOAD_TOO_LARGE')
    assert.match(String(refused.body.err_msg), new RegExp(`${MAX_AUDIO_SECONDS} s`))
    assert.equal((await newestUsage())?.audioSeconds, 0, 'not a sample was decoded')
    fromHeader.socket.destroy()

    // FLAC says nothing cheap about its length: decoding stops at the limit.
    const decoded = postFlac()
    await decoded.send(longFlac)
    const cut = await decoded.answer
    assertDeepgramError(cut, 413, 'PAYLOAD_TOO_LARGE')
    const record = await newestUsage()
    assert.equal(record?.status, 413)
    // Decoding stops once the decoded audio passes the limit; the engine took what came before.
    const metered = record?.audioSeconds ?? 0
    assert.ok(metered > MAX_AUDIO_SECONDS - 10 && metered <= MAX_AUDIO_SECONDS, `metered ${metered} s`)
    decoded.socket.destroy()
    await assertAllReleased()
  })

  it('queues one request for a busy decoder, refuses the next with 429 at once, and serves the queued one', async () => {
    let stream: EngineStream | undefined = await engine.openStream(
      { language: 'en', interimResults: false, endpointingMs: 10 },
      { onInterim() {}, onFinal() {}, onSpeechStarted() {}, onError() {} },
    )
    try {
      const queued = postWav()
      await queued.send(speechWav)
      await sleep(300) // its upload is spooled and it waits for the decoder
      const refused = postWav()
      await refused.send(speechWav)
      const res = await refused.answer
      assertDeepgramError(res, 429, 'TOO_MANY_REQUESTS')
      assert.ok(res.ms < 1000, `refused in ${res.ms.toFixed(0)} ms`)
      assert.equal((await newestUsage())?.status, 429)
      await stream.close()
      stream = undefined
      const served = await queued.answer
      assert.equal(served.status, 200, JSON.stringify(served.body))
      assert.equal((await newestUsage())?.status, 200)
      queued.socket.destroy()
      refused.socket.destroy()
    } finally {
      await stream?.close()
    }
    await assertAllReleased()
  })

  it('refuses an upload beyond the uploads in progress with 429 before reading its body', async () => {
    const slow = [postWav(), postWav()]
    for (const ex of slow) await ex.send(speechWav.subarray(0, 100))
    await eventually(
      async () => ((await readdir(uploadDir)).length === 2 ? true : undefined),
      5000,
      'two spools',
    )
    const third = postWav()
    const res = await third.answer
    assertDeepgramError(res, 429, 'TOO_MANY_REQUESTS')
    assert.equal(res.headers.connection, 'close')
    for (const ex of [...slow, third]) ex.socket.destroy()
    await assertAllReleased()
    const records = await eventually(
      async () => {
        const fresh = await freshUsage()
        return fresh.length > 0 ? fresh : undefined
      },
      5000,
      'usage records',
    )
    await sleep(100)
    records.push(...(await freshUsage()))
    assert.deepEqual(
      records.map((r) => r.status),
      [499, 499],
      'the two dropped uploads were metered; the refused one never was',
    )
  })

  it('answers 408 when an upload stops sending, and removes its spool', async () => {
    const ex = postWav()
    await ex.send(speechWav.subarray(0, 2000))
    const res = await ex.answer
    assertDeepgramError(res, 408, 'REQUEST_TIMEOUT')
    assert.ok(res.ms < 2000, `gave up after ${res.ms.toFixed(0)} ms`)
    assert.equal((await newestUsage())?.status, 408)
    ex.socket.destroy()
    await assertAllReleased()
  })

  for (const [path, why, withinMs] of [
    ['/drip', 'drips bytes past the total fetch timeout', 1500],
    ['/stall', 'stops sending its body', 400],
    ['/no-headers', 'never answers', 400],
  ] as const) {
    it(`answers a {"url"} whose server ${why} with 400 REMOTE_CONTENT_ERROR within the timeout`, async () => {
      const body = Buffer.from(JSON.stringify({ url: `http://${dripHost}${path}` }))
      const ex = post({ 'Content-Type': 'application/json', 'Content-Length': body.length })
      await ex.send(body)
      const res = await ex.answer
      assertDeepgramError(res, 400, 'REMOTE_CONTENT_ERROR')
      assert.ok(res.ms >= withinMs - 50 && res.ms < withinMs + 1000, `answered after ${res.ms.toFixed(0)} ms`)
      assert.equal((await newestUsage())?.status, 400)
      ex.socket.destroy()
      await assertAllReleased()
    })
  }
  it('a server shutdown stops a decode in progress: 503 to its client, and nothing left behind', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'earmark-upload-test-'))
    const other = await createTestEarmark(':memory:', {
      engine,
      options: { prerecorded: { uploadDir: dir, maxAudioSeconds: 3600 } },
    })
    try {
      const owner = await bootstrapProject(other.services)
      await other.app.listen({ port: 0, host: '127.0.0.1' })
      const ex = exchange(
        (other.app.server.address() as AddressInfo).port,
        requestHead(owner.ownerKey, '', { 'Content-Type': 'audio/flac', 'Content-Length': longFlac.length }),
      )
      await ex.send(longFlac)
      await eventually(async () => (engine.inUse() === 1 ? true : undefined), 10_000, 'the decode to start')
      const closing = performance.now()
      const closed = other.close()
      const res = await ex.answer
      await closed
      assertDeepgramError(res, 503, 'SERVICE_UNAVAILABLE')
      assert.ok(performance.now() - closing < 3000, 'the shutdown did not wait for the decode')
      assert.equal(engine.inUse(), 0)
      assert.deepEqual(await readdir(dir), [])
      assert.deepEqual(await ffmpegChildren(), [])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
