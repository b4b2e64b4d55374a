import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createClient as createClientV4, LiveTTSEvents } from 'dg4'
import { DeepgramClient } from 'dg5'
import WebSocket from 'ws'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { wordErrorRate } from '../helpers/speech.js'

// The live text-to-speech socket (`/v1/speak` WebSocket, docs/speech.md "Live text to speech"): real flite and
// ffmpeg speak, and real PocketSphinx checks what was said by transcribing the audio through `POST /v1/listen`.

const SENTENCE = 'please open the door'
const QUERY = 'model=aura-2-thalia-en&encoding=linear16&sample_rate=16000'

interface SpeakRun {
  audio: Buffer[]
  messages: Record<string, unknown>[]
  close: Promise<{ code: number; reason: string }>
  ws: WebSocket
}

/** Opens a speak socket with the given credentials and collects everything the server sends. */
function openSpeak(url: string, protocols: string[]): Promise<SpeakRun> {
  const ws = new WebSocket(url, protocols)
  const run: Omit<SpeakRun, 'close'> = { audio: [], messages: [], ws }
  const close = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
  )
  ws.on('message', (data, isBinary) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
    if (isBinary) run.audio.push(buf)
    else run.messages.push(JSON.parse(buf.toString()) as Record<string, unknown>)
  })
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ...run, close }))
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)))
    ws.once('error', reject)
  })
}

async function until(check: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe('live /v1/speak socket', () => {
  let srv: LiveServer
  let speakUrl = ''

  /** Transcribes 16 kHz linear16 through the real recogniser. */
  const transcribe = async (pcm: Buffer): Promise<string> => {
    const res = await fetch(`${srv.url}/v1/listen?encoding=linear16&sample_rate=16000`, {
      method: 'POST',
      headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'audio/l16' },
      body: pcm,
    })
    assert.equal(res.status, 200)
    const body = (await res.json()) as {
      results: { channels: { alternatives: { transcript: string }[] }[] }
    }
    return body.results.channels[0]?.alternatives[0]?.transcript ?? ''
  }

  before(async () => {
    srv = await startLiveServer({ EARMARK_CAPACITY: '1' })
    speakUrl = `${srv.wsUrl}/v1/speak?${QUERY}`
  })
  after(() => srv.close())

  it('speaks flushed text as linear16 frames, answers Flushed, and the audio says the text', async () => {
    const run = await openSpeak(speakUrl, ['token', srv.ownerKey])
    run.ws.send(JSON.stringify({ type: 'Speak', text: SENTENCE }))
    run.ws.send(JSON.stringify({ type: 'Flush' }))
    await until(() => run.messages.some((m) => m.type === 'Flushed'), 'Flushed')
    const metadata = run.messages[0]
    assert.equal(metadata?.type, 'Metadata')
    assert.equal(metadata?.model_name, 'aura-2-thalia-en')
    assert.equal(typeof metadata?.request_id, 'string')
    assert.deepEqual(
      run.messages.find((m) => m.type === 'Flushed'),
      { type: 'Flushed', sequence_id: 0 },
    )
    const pcm = Buffer.concat(run.audio)
    assert.ok(pcm.length > 16000, `expected over half a second of audio, got ${pcm.length} bytes`)
    assert.ok(wordErrorRate(SENTENCE, await transcribe(pcm)) <= 0.25)
    run.ws.send(JSON.stringify({ type: 'Close' }))
    assert.deepEqual(await run.close, { code: 1000, reason: '' })
    // One usage record for the socket, closed with what was spoken and the close code.
    const requestId = String(metadata?.request_id)
    let record: Awaited<ReturnType<typeof srv.earmark.services.store.listUsage>>[number] | undefined
    for (let i = 0; i < 100 && record?.status == null; i++) {
      record = (await srv.earmark.services.store.listUsage(srv.projectId, {})).find((r) => r.id === requestId)
      if (record?.status == null) await new Promise((r) => setTimeout(r, 20))
    }
    assert.equal(record?.endpoint, 'speak')
    assert.equal(record?.method, 'streaming')
    assert.equal(record?.characters, SENTENCE.length)
    assert.equal(record?.status, 1000)
  })

  it('Close speaks what was flushed before closing 1000', async () => {
    const run = await openSpeak(speakUrl, ['token', srv.ownerKey])
    run.ws.send(JSON.stringify({ type: 'Speak', text: 'good morning' }))
    run.ws.send(JSON.stringify({ type: 'Flush' }))
    run.ws.send(JSON.stringify({ type: 'Close' }))
    assert.deepEqual(await run.close, { code: 1000, reason: '' })
    assert.ok(run.messages.some((m) => m.type === 'Flushed'))
    assert.ok(Buffer.concat(run.audio).length > 0)
  })

  it('Clear drops buffered text and answers Cleared; the socket keeps working', async () => {
    const run = await openSpeak(speakUrl, ['token', srv.ownerKey])
    run.ws.send(JSON.stringify({ type: 'Speak', text: 'this text is never spoken' }))
    run.ws.send(JSON.stringify({ type: 'Clear' }))
    await until(() => run.messages.some((m) => m.type === 'Cleared'), 'Cleared')
    run.ws.send(JSON.stringify({ type: 'Flush' }))
    await until(() => run.messages.some((m) => m.type === 'Flushed'), 'Flushed')
    assert.equal(Buffer.concat(run.audio).length, 0, 'cleared text must not be spoken')
    run.ws.send(JSON.stringify({ type: 'Speak', text: 'hello' }))
    run.ws.send(JSON.stringify({ type: 'Flush' }))
    await until(() => run.messages.filter((m) => m.type === 'Flushed').length === 2, 'second Flushed')
    assert.ok(Buffer.concat(run.audio).length > 0)
    run.ws.close()
  })

  const BAD: [string, string | Buffer, number, string][] = [
    ['an unknown message type', JSON.stringify({ type: 'Nope' }), 1008, 'DATA-0000'],
    ['the JSON value null', 'null', 1008, 'DATA-0000'],
    ['text that is not JSON', 'speak!', 1008, 'DATA-0000'],
    ['Speak with a number as text', JSON.stringify({ type: 'Speak', text: 42 }), 1008, 'DATA-0000'],
    ['a binary frame', Buffer.from([1, 2, 3]), 1008, 'DATA-0000'],
    [
      'Speak past the character limit',
      JSON.stringify({ type: 'Speak', text: 'a'.repeat(2001) }),
      1009,
      'BIG-0001',
    ],
  ]
  for (const [what, frame, code, reason] of BAD) {
    it(`${what} closes the socket ${code} ${reason} and frees everything`, async () => {
      const run = await openSpeak(speakUrl, ['token', srv.ownerKey])
      run.ws.send(frame)
      assert.deepEqual(await run.close, { code, reason })
      assert.equal(srv.earmark.engine.inUse(), 0)
    })
  }

  it('the official SDK v4 speaks through it with a grant token', async () => {
    const grant = await fetch(`${srv.url}/v1/auth/grant`, {
      method: 'POST',
      headers: { authorization: `Token ${srv.ownerKey}` },
    })
    const { access_token } = (await grant.json()) as { access_token: string }
    const client = createClientV4({ accessToken: access_token, global: { url: srv.url } })
    const live = client.speak.live({ model: 'aura-2-thalia-en', encoding: 'linear16', sample_rate: 16000 })
    const audio: Buffer[] = []
    const flushed = new Promise<void>((resolve, reject) => {
      live.on(LiveTTSEvents.Open, () => {
        live.sendText(SENTENCE)
        live.flush()
      })
      live.on(LiveTTSEvents.Audio, (data: ArrayBuffer) => audio.push(Buffer.from(data)))
      live.on(LiveTTSEvents.Flushed, () => resolve())
      live.on(LiveTTSEvents.Error, reject)
    })
    await flushed
    live.requestClose()
    assert.ok(wordErrorRate(SENTENCE, await transcribe(Buffer.concat(audio))) <= 0.25)
  })

  it('the official SDK v5 speaks through it', async () => {
    const client = new DeepgramClient({ apiKey: srv.ownerKey, baseUrl: srv.url })
    const socket = await client.speak.v1.connect({
      model: 'aura-2-thalia-en',
      encoding: 'linear16',
      sample_rate: '16000',
    })
    const audio: Buffer[] = []
    const types: string[] = []
    // v5.13's typed `message` handler JSON-parses every frame (a binary one throws inside it, before later
    // listeners run), so binary audio is read through `onmessage`, which the socket below calls first.
    socket.socket.binaryType = 'arraybuffer'
    socket.socket.onmessage = (event: { data: unknown }) => {
      if (event.data instanceof ArrayBuffer) audio.push(Buffer.from(event.data))
    }
    const flushed = new Promise<void>((resolve) => {
      socket.on('message', (message: unknown) => {
        const type = (message as { type?: string }).type ?? ''
        types.push(type)
        if (type === 'Flushed') resolve()
      })
    })
    socket.connect()
    await socket.waitForOpen()
    socket.sendText({ type: 'Speak', text: SENTENCE })
    socket.sendFlush({ type: 'Flush' })
    await flushed
    socket.close()
    assert.ok(types.includes('Metadata'), `messages: ${types.join(',')}`)
    assert.ok(wordErrorRate(SENTENCE, await transcribe(Buffer.concat(audio))) <= 0.25)
  })
})
