import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { WebSocket } from 'ws'
import type { AudioDecoder } from '../audio/index.js'
import type { Engine, EngineStream, FinalHypothesis, Hypothesis, StreamSink } from '../engines/index.js'
import type { ListenOptions } from '../listen/index.js'
import { metadataMessage, resultsMessage } from '../listen/index.js'
import { CLOSE, type CloseKind } from './close-codes.js'

/** Knobs of a live session; defaults follow Deepgram (deepgram-api.md §7). */
export interface SessionLimits {
  /** Close with NET-0001 when no audio arrives this long after opening, or after the last audio/KeepAlive. */
  idleTimeoutMs: number
  /** Stop reading from the socket while this much audio waits for the engine (TCP back-pressure). */
  maxBacklogMs: number
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = { idleTimeoutMs: 10_000, maxBacklogMs: 20_000 }

export interface ListenSessionOptions {
  requestId: string
  engine: Engine
  options: ListenOptions
  limits: SessionLimits
  log: FastifyBaseLogger
  /** Makes the decoder that turns the client's bytes into engine PCM. */
  createDecoder: () => AudioDecoder
  /** Called once, when the session is over, with the close code and the audio seconds decoded. */
  onEnd(outcome: { code: number; reason: string; audioSeconds: number }): void
}

/** One live `/v1/listen` stream: the client's socket, an audio decoder and an engine stream. */
export interface ListenSession {
  /** Opens the engine stream (throws EngineBusyError / EngineOptionError before the upgrade completes). */
  open(): Promise<void>
  /** Binds the upgraded socket. */
  attach(ws: WebSocket): void
  /** Releases everything without a socket (the upgrade failed after open). */
  abort(): Promise<void>
}

export function createListenSession(o: ListenSessionOptions): ListenSession {
  const { engine, options, limits, log, requestId } = o
  const created = new Date().toISOString()
  const sha = createHash('sha256')
  const ctx = { requestId, engine, punctuate: options.punctuate }
  let ws: WebSocket | undefined
  let stream: EngineStream | undefined
  let decoder: AudioDecoder | undefined
  /** Settles when the decoder delivered its last PCM (after `end()`) or failed. */
  let decoded: Promise<void> = Promise.resolve()
  let gotAudio = false
  let closing = false
  let ended = false
  let paused = false
  let idleTimer: NodeJS.Timeout | undefined
  let tick: NodeJS.Timeout | undefined
  let lastWordEnd: number | null = null
  let utteranceEndPending = false

  const send = (message: object) => {
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(message))
  }

  const noteWords = (h: Hypothesis) => {
    const last = h.words.at(-1)
    if (last && (lastWordEnd === null || last.end > lastWordEnd)) {
      lastWordEnd = last.end
      utteranceEndPending = true
    }
  }

  /** Decoded position, seconds: audio pushed minus what still waits for the engine. */
  const position = () => (stream ? stream.audioSeconds - stream.backlogMs / 1000 : 0)

  const checkUtteranceEnd = () => {
    if (!options.utteranceEndMs || !utteranceEndPending || lastWordEnd === null) return
    if (position() - lastWordEnd >= options.utteranceEndMs / 1000) {
      utteranceEndPending = false
      send({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: Math.round(lastWordEnd * 1000) / 1000 })
    }
  }

  const sink: StreamSink = {
    onInterim(h) {
      noteWords(h)
      if (options.interimResults) {
        send(resultsMessage(h, ctx, { isFinal: false, speechFinal: false, fromFinalize: false }))
      }
    },
    onFinal(h: FinalHypothesis) {
      noteWords(h)
      send(
        resultsMessage(h, ctx, { isFinal: true, speechFinal: h.speechFinal, fromFinalize: h.fromFinalize }),
      )
      checkUtteranceEnd()
    },
    onSpeechStarted(timestamp) {
      if (options.vadEvents) send({ type: 'SpeechStarted', channel: [0, 1], timestamp })
    },
    onError(err) {
      log.error({ err, request_id: requestId }, 'engine error')
      void finish('INTERNAL')
    },
  }

  const armIdle = () => {
    clearTimeout(idleTimer)
    idleTimer = setTimeout(() => void finish('NO_AUDIO'), limits.idleTimeoutMs)
  }

  /** Ends the session: flush what can be flushed, send Metadata on a normal end, close with `kind`. */
  const finish = async (kind: CloseKind, clientClosed?: { code: number }) => {
    if (ended) return
    ended = true
    clearTimeout(idleTimer)
    clearInterval(tick)
    try {
      // A client that left gets no flush: nobody is there to read it.
      if (kind === 'NORMAL' && !clientClosed && decoder) {
        decoder.end()
        await decoded
      } else {
        await decoder?.kill()
      }
    } catch (err) {
      log.warn({ err, request_id: requestId }, 'audio decoder failed at end of stream')
      kind = 'BAD_AUDIO'
    }
    try {
      await stream?.close()
    } catch (err) {
      log.error({ err, request_id: requestId }, 'engine stream failed to close')
    }
    checkUtteranceEnd()
    const close = CLOSE[kind]
    if (kind === 'NORMAL') {
      send(metadataMessage({ requestId, engine, sha256: sha.digest('hex'), created, duration: position() }))
    }
    if (ws && (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING))
      ws.close(close.code, close.reason)
    o.onEnd({
      code: clientClosed?.code ?? close.code,
      reason: clientClosed ? 'client closed' : close.reason,
      audioSeconds: stream?.audioSeconds ?? 0,
    })
  }

  const onControl = async (text: string) => {
    let message: { type?: unknown }
    try {
      message = JSON.parse(text) as { type?: unknown }
    } catch {
      return // not JSON: ignored, like any unknown control message
    }
    switch (message.type) {
      case 'KeepAlive':
        if (gotAudio) armIdle() // KeepAlive alone does not satisfy the first-audio timeout
        return
      case 'Finalize':
        // The decoder hands PCM on in a microtask, and a frame read in the same chunk as this message has not
        // reached the engine yet: wait one microtask (they run in order), so the final covers all the audio
        // sent before Finalize (deepgram-api.md §7), not all but the last frame.
        await new Promise<void>((resolve) => queueMicrotask(resolve))
        await stream?.finalize()
        checkUtteranceEnd()
        return
      case 'CloseStream':
        closing = true
        await finish('NORMAL')
        return
      default:
        return // Configure and anything else: ignored (deepgram-api.md §7)
    }
  }

  const onAudio = (chunk: Buffer) => {
    if (closing || ended) return
    if (chunk.length === 0) {
      // The legacy end-of-stream signal: an empty binary frame.
      closing = true
      void finish('NORMAL')
      return
    }
    gotAudio = true
    armIdle()
    sha.update(chunk)
    decoder?.write(chunk)
  }

  /** Back-pressure: stop reading the socket while the engine is far behind, resume when it catches up. */
  const watchBacklog = () => {
    if (!ws || !stream) return
    const behind = stream.backlogMs > limits.maxBacklogMs
    if (behind && !paused) {
      ws.pause()
      paused = true
    } else if (!behind && paused) {
      ws.resume()
      paused = false
    }
    checkUtteranceEnd()
  }

  return {
    async open() {
      stream = await engine.openStream(
        { language: options.language, interimResults: true, endpointingMs: options.endpointing },
        sink,
      )
      const d = o.createDecoder()
      decoder = d
      decoded = new Promise<void>((resolve, reject) => {
        d.onEnd(resolve)
        d.onError(reject)
      })
      decoded.catch(() => {}) // handled by the error listener below, or awaited in finish()
      d.onPcm((pcm) => stream?.push(pcm))
      d.onError((err) => {
        log.info({ request_id: requestId, reason: err.code }, 'undecodable audio')
        if (!closing) void finish('BAD_AUDIO')
      })
    },
    attach(socket) {
      ws = socket
      armIdle()
      tick = setInterval(watchBacklog, 100)
      socket.on('message', (data, isBinary) => {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
        if (isBinary) onAudio(buf)
        else void onControl(buf.toString('utf8'))
      })
      socket.on('close', (code) => void finish('NORMAL', { code }))
      socket.on('error', (err) => {
        log.info({ err, request_id: requestId }, 'socket error')
        void finish('INTERNAL', { code: 1006 })
      })
    },
    async abort() {
      ended = true
      await decoder?.kill()
      await stream?.close()
    },
  }
}
