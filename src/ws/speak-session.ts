import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import type { Speech, SpeechFormat, Voice } from '../tts/index.js'
import { serverCloseReason } from './upgrade.js'

/** Knobs of a live text-to-speech socket; defaults follow Deepgram (docs/speech.md, "Live text to speech"). */
export interface SpeakSessionLimits {
  /** Characters the text buffer may hold before a Flush; past it the socket closes 1009 `BIG-0001`. */
  maxBufferedCharacters: number
  /** Flushes allowed in one `flushWindowMs`; more get a `Warning` and are dropped. */
  flushesPerWindow: number
  flushWindowMs: number
  /** Close with 1011 `NET-0001` after this long without a message while nothing is being spoken. */
  idleTimeoutMs: number
  /** Queued Flushes waiting to be spoken; past it the socket closes 1008 `DATA-0001`. */
  maxQueuedFlushes: number
}

export const DEFAULT_SPEAK_LIMITS: SpeakSessionLimits = {
  maxBufferedCharacters: 2000,
  flushesPerWindow: 20,
  flushWindowMs: 60_000,
  idleTimeoutMs: 60_000,
  maxQueuedFlushes: 20,
}

/** Close codes of the speak socket (docs/speech.md; Deepgram's TTS WebSocket codes). */
export const SPEAK_CLOSE = {
  NORMAL: { code: 1000, reason: '' },
  UNKNOWN_MESSAGE: { code: 1008, reason: 'DATA-0000' },
  TOO_MANY_FLUSHES: { code: 1008, reason: 'DATA-0001' },
  TEXT_TOO_LONG: { code: 1009, reason: 'BIG-0001' },
  INTERNAL: { code: 1011, reason: 'NET-0000' },
  IDLE: { code: 1011, reason: 'NET-0001' },
} as const
type SpeakCloseKind = keyof typeof SPEAK_CLOSE

export interface SpeakSessionOptions {
  requestId: string
  /** The model as the client named it (echoed in Metadata). */
  model: string
  voice: Voice
  /** A headerless format (container `none`): linear16, mulaw or alaw. */
  format: SpeechFormat
  limits: SpeakSessionLimits
  log: FastifyBaseLogger
  /** Renders text in `format`; the session destroys the stream when it no longer wants it. */
  synthesize(text: string): Promise<Speech>
  /** Called once, when the socket is gone, with what was spoken. */
  onEnd(outcome: { code: number; reason: string; characters: number }): void
}

/** One live `/v1/speak` socket: a text buffer, and Flushes spoken one after another as binary frames. */
export interface SpeakSession {
  attach(ws: WebSocket): void
  /** Ends the session without a socket (the upgrade did not complete), reporting `code`. */
  abandon(code: number, reason: string): void
  /** Settles once the session ended, whichever way. */
  readonly ended: Promise<void>
}

/** Bytes the socket may hold unsent before the session waits for the client to read. */
const HIGH_WATER_BYTES = 256 * 1024

/**
 * Messages (docs/speech.md): `Speak {text}` appends to the buffer; `Flush` speaks the buffer, streams the
 * audio and answers `Flushed {sequence_id}`; `Clear` drops the buffer and whatever is being spoken and answers
 * `Cleared`; `Close` speaks what was already flushed, then closes 1000. Anything else closes 1008 `DATA-0000`.
 * Every message is parsed defensively: no client input can throw out of a listener.
 */
export function createSpeakSession(o: SpeakSessionOptions): SpeakSession {
  const { limits, log, requestId } = o
  let ws: WebSocket | undefined
  let buffer = ''
  let bufferedCharacters = 0
  let characters = 0
  let sequenceId = 0
  /** Flush jobs waiting, in order; each is the text of one Flush and its sequence id. */
  const queue: { text: string; characters: number; sequence: number }[] = []
  let current: Speech | undefined
  /** Moves on every Clear, so audio rendered for text that was cleared meanwhile is dropped. */
  let generation = 0
  let working = false
  let closeAfterQueue = false
  let ended = false
  const flushTimes: number[] = []
  let idleTimer: NodeJS.Timeout | undefined

  const send = (message: object) => {
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(message))
  }

  let markEnded: () => void = () => {}
  const endedPromise = new Promise<void>((resolve) => {
    markEnded = resolve
  })

  const end = (kind: SpeakCloseKind, client?: { code: number; reason?: string }) => {
    if (ended) return
    ended = true
    markEnded()
    clearTimeout(idleTimer)
    queue.length = 0
    current?.stream.destroy()
    current = undefined
    const close = SPEAK_CLOSE[kind]
    if (ws && (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING))
      ws.close(close.code, close.reason)
    o.onEnd({
      code: client?.code ?? close.code,
      reason: client ? (client.reason ?? 'client closed') : close.reason,
      characters,
    })
  }

  const armIdle = () => {
    clearTimeout(idleTimer)
    if (ended) return
    idleTimer = setTimeout(() => {
      if (!working) end('IDLE')
      else armIdle()
    }, limits.idleTimeoutMs)
  }

  /** Resolves once the socket's unsent bytes fell below the high-water mark (or the socket went away). */
  const drained = async () => {
    while (ws && ws.readyState === ws.OPEN && ws.bufferedAmount > HIGH_WATER_BYTES && !ended) {
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }

  const speakOne = async (job: { text: string; characters: number; sequence: number }) => {
    const started = generation
    if (job.text === '') {
      send({ type: 'Flushed', sequence_id: job.sequence })
      return
    }
    const speech = await o.synthesize(job.text)
    if (ended || generation !== started) {
      // Cleared (or gone) while it was being rendered: nobody wants this audio.
      speech.stream.destroy()
      return
    }
    current = speech
    characters += job.characters
    for await (const chunk of speech.stream as AsyncIterable<Buffer>) {
      if (ended || current !== speech) break
      if (ws?.readyState === ws?.OPEN) ws?.send(chunk)
      await drained()
    }
    if (current === speech) {
      current = undefined
      send({ type: 'Flushed', sequence_id: job.sequence })
    }
  }

  /** Speaks queued Flushes one after another; the one owner of every synthesis promise. */
  const work = async () => {
    if (working) return
    working = true
    try {
      for (let job = queue.shift(); job && !ended; job = queue.shift()) await speakOne(job)
    } catch (err) {
      log.error({ err, request_id: requestId }, 'speech synthesis failed on a live socket')
      end('INTERNAL')
    } finally {
      working = false
    }
    if (closeAfterQueue && !ended) end('NORMAL')
  }

  const flush = () => {
    const now = Date.now()
    while (flushTimes.length > 0 && (flushTimes[0] ?? 0) <= now - limits.flushWindowMs) flushTimes.shift()
    if (flushTimes.length >= limits.flushesPerWindow) {
      send({
        type: 'Warning',
        description: `Too many Flush messages: at most ${limits.flushesPerWindow} per ${limits.flushWindowMs / 1000} s.`,
        code: 'FLUSH_LIMIT',
      })
      return
    }
    flushTimes.push(now)
    const sequence = sequenceId++
    if (bufferedCharacters === 0 || buffer.trim() === '') {
      buffer = ''
      bufferedCharacters = 0
      // Nothing to say: answer in order, after what is already queued.
      queue.push({ text: '', characters: 0, sequence })
    } else {
      queue.push({ text: buffer, characters: bufferedCharacters, sequence })
      buffer = ''
      bufferedCharacters = 0
    }
    if (queue.length > limits.maxQueuedFlushes) {
      end('TOO_MANY_FLUSHES')
      return
    }
    void work()
  }

  const onText = (text: string) => {
    let message: unknown
    try {
      message = JSON.parse(text)
    } catch {
      end('UNKNOWN_MESSAGE')
      return
    }
    const type =
      message !== null && typeof message === 'object' && !Array.isArray(message)
        ? (message as { type?: unknown }).type
        : undefined
    switch (type) {
      case 'Speak': {
        const value = (message as { text?: unknown }).text
        if (typeof value !== 'string') {
          end('UNKNOWN_MESSAGE')
          return
        }
        const count = Array.from(value).length
        if (bufferedCharacters + count > limits.maxBufferedCharacters) {
          end('TEXT_TOO_LONG')
          return
        }
        buffer += value
        bufferedCharacters += count
        return
      }
      case 'Flush':
        flush()
        return
      case 'Clear':
        buffer = ''
        bufferedCharacters = 0
        queue.length = 0
        generation++
        current?.stream.destroy()
        current = undefined
        send({ type: 'Cleared', sequence_id: sequenceId++ })
        return
      case 'Close':
        closeAfterQueue = true
        if (!working && queue.length === 0) end('NORMAL')
        return
      default:
        end('UNKNOWN_MESSAGE')
    }
  }

  return {
    ended: endedPromise,
    abandon(code, reason) {
      end('NORMAL', { code, reason })
    },
    attach(socket) {
      ws = socket
      send({
        type: 'Metadata',
        request_id: requestId,
        model_name: o.model,
        model_version: o.voice.engine,
        model_uuid: o.voice.uuid,
      })
      armIdle()
      socket.on('message', (data: RawData, isBinary: boolean) => {
        if (ended) return
        armIdle()
        if (isBinary) {
          end('UNKNOWN_MESSAGE')
          return
        }
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
        onText(buf.toString('utf8'))
      })
      socket.on('close', (code) => {
        const reason = serverCloseReason(socket)
        end('NORMAL', reason === undefined ? { code } : { code, reason })
      })
      socket.on('error', (err) => {
        log.info({ err, request_id: requestId }, 'socket error')
        end('INTERNAL', { code: 1006 })
      })
    },
  }
}
