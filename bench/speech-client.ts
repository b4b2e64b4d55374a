// The client side of the speech benchmark: `ws` sockets to Earmark's live /v1/listen (and to the bare
// baseline), timed with performance.now() in this process.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { SAMPLE_RATE } from '../test/helpers/speech.js'
import { CHUNK_SAMPLES, chunksOf } from './speech-audio.js'

const CHUNK_SECONDS = CHUNK_SAMPLES / SAMPLE_RATE
/** Results carry start and duration rounded to the millisecond (src/listen/results.ts). */
const TIME_SLACK = 0.0015

/** The fields of a `Results` message the benchmark reads (docs/deepgram-compat.md §7.3). */
interface ResultsMessage {
  type: 'Results'
  start: number
  duration: number
  is_final: boolean
  from_finalize: boolean
  channel: { alternatives: { transcript: string }[] }
}

function asResults(data: WebSocket.RawData): ResultsMessage | undefined {
  const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString()
  const message = JSON.parse(text) as { type?: unknown }
  return message.type === 'Results' ? (message as ResultsMessage) : undefined
}

const CLOSE_STREAM = JSON.stringify({ type: 'CloseStream' })
const FINALIZE = JSON.stringify({ type: 'Finalize' })

/** `ws://host:port/v1/listen?...` for raw 16 kHz linear16 plus `params`. */
export function listenUrl(wsBase: string, params: Record<string, string> = {}): string {
  const query = new URLSearchParams({ encoding: 'linear16', sample_rate: String(SAMPLE_RATE), ...params })
  return `${wsBase}/v1/listen?${query}`
}

export interface Opened {
  ws: WebSocket
  /** From `new WebSocket(...)` to 'open', ms. */
  openMs: number
  /** Resolves with the close code and reason (also after a refused upgrade: code 1006). */
  closed: Promise<{ code: number; reason: string; at: number }>
}

/** Opens a socket; rejects when the upgrade is refused (with the HTTP status) or fails. */
export function connect(url: string, protocols: string[]): Promise<Opened> {
  const started = performance.now()
  const ws = new WebSocket(url, protocols)
  const closed = new Promise<{ code: number; reason: string; at: number }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: performance.now() }))
  })
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve({ ws, openMs: performance.now() - started, closed }))
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate()
      reject(new Error(`upgrade to ${new URL(url).pathname} refused: HTTP ${res.statusCode}`))
    })
    ws.once('error', (err) => reject(err))
  })
}

/** Sends CloseStream and waits for the close; throws unless it is a 1000. */
export async function closeStream(opened: Opened): Promise<number> {
  opened.ws.send(CLOSE_STREAM)
  const { code, reason, at } = await opened.closed
  if (code !== 1000) throw new Error(`the stream closed with ${code} ${reason}, not 1000`)
  return at
}

function transcriptOf(finals: readonly string[]): string {
  return finals
    .map((t) => t.trim())
    .filter((t) => t.length > 0)
    .join(' ')
}

/** Connect and auth time of one socket; it is closed at once (CloseStream for Earmark, so capacity frees). */
export async function timeConnect(url: string, protocols: string[], earmark: boolean): Promise<number> {
  const opened = await connect(url, protocols)
  if (earmark) await closeStream(opened)
  else {
    opened.ws.close(1000)
    await opened.closed
  }
  return opened.openMs
}

export interface FastOutcome {
  /** From the first audio frame sent to the close (1000) after CloseStream, ms. */
  wallMs: number
  transcript: string
  results: number
}

/**
 * Sends all of `pcm` in 100 ms binary frames as fast as the socket takes them (ws queues what the kernel
 * does not take yet; the server reads as fast as it decodes, up to its back-pressure limit), then
 * CloseStream, and times until the close.
 */
export async function streamAsFastAsPossible(url: string, protocols: string[], pcm: Int16Array) {
  const opened = await connect(url, protocols)
  const finals: string[] = []
  let results = 0
  opened.ws.on('message', (data) => {
    const m = asResults(data)
    if (!m) return
    results++
    if (m.is_final) finals.push(m.channel.alternatives[0]?.transcript ?? '')
  })
  const started = performance.now()
  for (const chunk of chunksOf(pcm))
    opened.ws.send(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
  const closedAt = await closeStream(opened)
  return { wallMs: closedAt - started, transcript: transcriptOf(finals), results } satisfies FastOutcome
}

export interface PacedOptions {
  /** An open socket; the stream ends with CloseStream and waits for its close. */
  opened: Opened
  pcm: Int16Array
  /** performance.now() at which chunk 0 goes out; chunk k goes out 100 ms × k later. */
  startAt: number
  /** Send Finalize right after these chunks. */
  finalizeAfter?: ReadonlySet<number>
}

/** One Results message, timed against the chunk its end (start + duration) falls on. */
export interface ResultLag {
  /** From that chunk's send to this message, ms. */
  ms: number
  final: boolean
}

export interface PacedOutcome {
  /**
   * Result lag: for every chunk at which a Results message ends (start + duration = the chunk's end time)
   * and which no earlier message covered, ms from the chunk's send to that message.
   */
  resultLags: ResultLag[]
  /**
   * Coverage lag, for every chunk: ms from its send to the first Results whose start + duration covers its
   * end, whether or not that message ends there. Chunks of a pause wait for the next utterance's first
   * interim, so this measures how often the server has something to say as much as how fast it says it.
   */
  coverageMs: number[]
  /** Finalize sent → Results with from_finalize, ms. */
  finalizeMs: number[]
  /** Finals from Finalize that ended before the chunk sent just before the Finalize (audio reordered). */
  finalizeShort: number
  /** How late chunks went out against the schedule (client event-loop delay), ms. */
  sendDelayMs: number[]
  /** Frames sent (audio, Finalize, CloseStream) and received (every message), for per-frame costs. */
  framesSent: number
  framesReceived: number
  transcript: string
}

/** Streams `pcm` in real time (100 ms chunks every 100 ms) and times every Results message. */
export async function streamPaced(o: PacedOptions): Promise<PacedOutcome> {
  const chunks = chunksOf(o.pcm)
  const sentAt: number[] = []
  const coverageMs: number[] = new Array<number>(chunks.length).fill(Number.NaN)
  const resultLags: ResultLag[] = []
  const finalizeMs: number[] = []
  const pendingFinalize: { at: number; chunk: number }[] = []
  const sendDelayMs: number[] = []
  const finals: string[] = []
  let finalizeShort = 0
  let covered = 0 // chunks [0, covered) have their coverage lag
  let framesReceived = 0
  let finalizesSent = 0

  o.opened.ws.on('message', (data) => {
    const now = performance.now()
    framesReceived++
    const m = asResults(data)
    if (!m) return
    if (m.is_final) finals.push(m.channel.alternatives[0]?.transcript ?? '')
    const end = m.start + m.duration
    const first = covered
    while (covered < sentAt.length && (covered + 1) * CHUNK_SECONDS <= end + TIME_SLACK) {
      coverageMs[covered] = now - (sentAt[covered] ?? now)
      covered++
    }
    const last = covered - 1
    if (last >= first && Math.abs((last + 1) * CHUNK_SECONDS - end) <= TIME_SLACK) {
      resultLags.push({ ms: now - (sentAt[last] ?? now), final: m.is_final })
    }
    if (m.from_finalize) {
      const asked = pendingFinalize.shift()
      if (asked) {
        finalizeMs.push(now - asked.at)
        if (end < (asked.chunk + 1) * CHUNK_SECONDS - TIME_SLACK) finalizeShort++
      }
    }
  })

  for (const [k, chunk] of chunks.entries()) {
    const due = o.startAt + k * CHUNK_SECONDS * 1000
    const wait = due - performance.now()
    if (wait > 0) await sleep(wait)
    const now = performance.now()
    sendDelayMs.push(Math.max(0, now - due))
    sentAt.push(now)
    o.opened.ws.send(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    if (o.finalizeAfter?.has(k)) {
      pendingFinalize.push({ at: performance.now(), chunk: k })
      o.opened.ws.send(FINALIZE)
      finalizesSent++
    }
  }
  await closeStream(o.opened)
  return {
    resultLags,
    coverageMs: coverageMs.filter((v) => !Number.isNaN(v)),
    finalizeMs,
    finalizeShort,
    sendDelayMs,
    framesSent: chunks.length + finalizesSent + 1,
    framesReceived,
    transcript: transcriptOf(finals),
  }
}
