import { AsyncResource } from 'node:async_hooks'
import { createHash } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { RawData, WebSocket } from 'ws'
import { type AudioDecoder, isAudioDecodeError } from '../audio/index.js'
import type { Engine, EngineStream, FinalHypothesis, Hypothesis, StreamSink } from '../engines/index.js'
import type { ListenOptions } from '../listen/index.js'
import { metadataMessage, resultsMessage } from '../listen/index.js'
import { CLOSE, type CloseKind } from './close-codes.js'
import { controlType } from './control-message.js'
import { serverCloseReason } from './upgrade.js'

/** Knobs of a live session; defaults follow Deepgram (docs/deepgram-compat.md §7.4). */
export interface SessionLimits {
  /** Close with NET-0001 when no audio arrives this long after opening, or after the last audio/KeepAlive. */
  idleTimeoutMs: number
  /** Stop reading from the socket while this much audio waits for the engine (TCP back-pressure). */
  maxBacklogMs: number
  /**
   * Close with NET-0001 when this long passed since the last audio, however many KeepAlive came meanwhile;
   * 0: never. KeepAlive holds a paused stream open (docs/deepgram-compat.md §7.2), but not a slot forever.
   */
  keepAliveOnlyMs: number
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = {
  idleTimeoutMs: 10_000,
  maxBacklogMs: 20_000,
  keepAliveOnlyMs: 60_000,
}

/** How a session ended: the close code (the client's own when it left), its reason and the audio decoded. */
export interface SessionOutcome {
  code: number
  reason: string
  audioSeconds: number
}

export interface ListenSessionOptions {
  requestId: string
  engine: Engine
  options: ListenOptions
  limits: SessionLimits
  log: FastifyBaseLogger
  /** Makes the decoder that turns the client's bytes into engine PCM. */
  createDecoder: () => AudioDecoder
  /**
   * How much of `seconds` more audio the stream may feed the engine (its quota, docs/quotas.md); absent: all.
   * Granted less, the stream feeds exactly that much, then closes with 1008 `QUOTA-0001` after the finals.
   */
  allowAudio?: (seconds: number) => number
  /** Called exactly once, when the session is over and everything it claimed is released. */
  onEnd(outcome: SessionOutcome): void
}

/**
 * One live `/v1/listen` stream: the client's socket, an audio decoder and an engine stream.
 *
 * Nothing a client sends can make it throw or leave a promise without an owner: control messages are parsed
 * as any JSON value, every asynchronous step is awaited by the session, and a fault closes this stream alone
 * with 1011 `NET-0000` (logged with the request id). Whatever happens, `onEnd` runs once and `ended`
 * resolves, with the engine stream closed and the decoder's ffmpeg gone.
 */
export interface ListenSession {
  /** Claims the engine stream and the decoder (throws EngineBusyError / EngineOptionError). */
  open(): Promise<void>
  /** Binds the upgraded socket: from now on its close ends the session. */
  attach(ws: WebSocket): void
  /** Ends the session with no socket, or alongside it, recording `code` (e.g. 1006: the client left). */
  abandon(code: number, reason: string): Promise<void>
  /**
   * Ends the session for a server shutdown as CloseStream would (the audio received is decoded, its final
   * results and Metadata sent), then closes with 1001 `SHUTDOWN-0001`. Resolves once it ended.
   */
  shutdown(): Promise<void>
  /** Settles once the session ended and released everything; never rejects. */
  readonly ended: Promise<void>
}

export function createListenSession(o: ListenSessionOptions): ListenSession {
  const { engine, options, limits, log, requestId } = o
  const created = new Date().toISOString()
  const sha = createHash('sha256')
  const ctx = { requestId, engine, options }
  let ws: WebSocket | undefined
  let stream: EngineStream | undefined
  let decoder: AudioDecoder | undefined
  /** Settles when the decoder delivered its last PCM (after `end()`) or failed. */
  let decoded: Promise<void> = Promise.resolve()
  let gotAudio = false
  /** Set by CloseStream (or its legacy empty frame): no more audio or Finalize is taken. */
  let closing = false
  let finished: Promise<void> | undefined
  let resolveEnded: () => void = () => {}
  const ended = new Promise<void>((resolve) => {
    resolveEnded = resolve
  })
  let paused = false
  let idleTimer: NodeJS.Timeout | undefined
  /** Runs from the last audio frame; KeepAlive does not reset it. */
  let audioTimer: NodeJS.Timeout | undefined
  let tick: NodeJS.Timeout | undefined
  let lastWordEnd: number | null = null
  let utteranceEndPending = false
  /** The Finalize running now (or settled), and whether another waits behind it. */
  let finalizing: Promise<void> = Promise.resolve()
  let finalizeWaiting = false
  /** Set once the quota ran out: no more PCM reaches the engine. */
  let quotaSpent = false

  const send = (message: object) => {
    if (ws && ws.readyState === ws.OPEN) ws.send(JSON.stringify(message))
  }

  /** A fault of this stream (not the client's): logged with the request id, then 1011 NET-0000. */
  const fault = (what: string, err: unknown) => {
    log.error({ err, request_id: requestId }, what)
    void finish('INTERNAL')
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
      fault('engine error', err)
    },
  }

  const armIdle = () => {
    clearTimeout(idleTimer)
    if (paused) return // see watchBacklog
    idleTimer = setTimeout(() => void finish('NO_AUDIO'), limits.idleTimeoutMs)
  }

  const armAudio = () => {
    clearTimeout(audioTimer)
    if (paused || limits.keepAliveOnlyMs <= 0) return
    audioTimer = setTimeout(() => {
      log.info(
        { request_id: requestId, limit_ms: limits.keepAliveOnlyMs },
        'no audio, only KeepAlive: closing',
      )
      void finish('NO_AUDIO')
    }, limits.keepAliveOnlyMs)
  }

  /**
   * Ends the session once: flush what can be flushed, send Metadata on a normal end, close with `kind`,
   * release the decoder and the engine stream, then `onEnd`. Every step is guarded, so it never rejects.
   */
  const finish = (kind: CloseKind, clientClosed?: { code: number; reason?: string }): Promise<void> => {
    finished ??= end(kind, clientClosed)
    return finished
  }

  const end = async (kind: CloseKind, clientClosed?: { code: number; reason?: string }) => {
    closing = true
    /** Ends as a client's CloseStream does: everything received is transcribed and answered. */
    const flushes = () => kind === 'NORMAL' || kind === 'SHUTDOWN'
    clearTimeout(idleTimer)
    clearTimeout(audioTimer)
    clearInterval(tick)
    try {
      // A client that left gets no flush: nobody is there to read it.
      if (flushes() && !clientClosed && decoder) {
        decoder.end()
        await decoded
      }
    } catch (err) {
      const serverFault = isAudioDecodeError(err) && err.code === 'DECODER_UNAVAILABLE'
      log[serverFault ? 'error' : 'info'](
        { err, request_id: requestId },
        'audio decoder failed at end of stream',
      )
      kind = serverFault ? 'INTERNAL' : 'BAD_AUDIO'
    }
    // The quota ran out while the decoder flushed (audio still being decoded at CloseStream): what came past
    // it was not transcribed, and the close must say so.
    if (quotaSpent && flushes() && !clientClosed) kind = 'QUOTA'
    try {
      await decoder?.kill()
    } catch (err) {
      log.error({ err, request_id: requestId }, 'audio decoder failed to stop')
    }
    try {
      await finalizing
      await stream?.close()
    } catch (err) {
      log.error({ err, request_id: requestId }, 'engine stream failed to close')
      if (flushes()) kind = 'INTERNAL'
    }
    try {
      checkUtteranceEnd()
      if (flushes()) {
        send(metadataMessage({ requestId, engine, sha256: sha.digest('hex'), created, duration: position() }))
      }
      const close = CLOSE[kind]
      if (ws && (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING)) {
        ws.close(close.code, close.reason)
      }
      o.onEnd({
        code: clientClosed?.code ?? close.code,
        reason: clientClosed ? (clientClosed.reason ?? 'client closed') : close.reason,
        audioSeconds: stream?.audioSeconds ?? 0,
      })
    } catch (err) {
      log.error({ err, request_id: requestId }, 'live stream failed to end cleanly')
      ws?.terminate()
    } finally {
      resolveEnded()
    }
  }

  /**
   * Finalize flushes the audio received so far. While one runs, a second one waits behind it and any later
   * ones join the waiting one: it starts after them all and covers their audio too, so a flood of Finalize
   * queues at most one engine call.
   */
  const requestFinalize = () => {
    if (closing || finalizeWaiting || !stream) return
    finalizeWaiting = true
    const target = stream
    finalizing = finalizing.then(async () => {
      // The decoder hands PCM on in a microtask, and a frame read in the same chunk as this message has not
      // reached the engine yet: wait one microtask (they run in order), so the final covers all the audio
      // sent before Finalize (docs/deepgram-compat.md §7.2), not all but the last frame.
      await new Promise<void>((resolve) => queueMicrotask(resolve))
      finalizeWaiting = false
      if (closing) return
      try {
        await target.finalize()
        checkUtteranceEnd()
      } catch (err) {
        // A stream closed meanwhile (CloseStream, a fault, the client leaving) refuses Finalize: expected.
        if (!closing) fault('Finalize failed', err)
      }
    })
  }

  const onControl = (text: string) => {
    switch (controlType(text)) {
      case 'KeepAlive':
        if (gotAudio && !closing) armIdle() // KeepAlive alone does not satisfy the first-audio timeout
        return
      case 'Finalize':
        requestFinalize()
        return
      case 'CloseStream':
        if (closing) return
        closing = true
        void finish('NORMAL')
        return
      default:
        return // not JSON, not an object, Configure, any other type: ignored (docs/deepgram-compat.md §7.2)
    }
  }

  const onAudio = (chunk: Buffer) => {
    if (closing) return
    if (chunk.length === 0) {
      // The legacy end-of-stream signal: an empty binary frame.
      closing = true
      void finish('NORMAL')
      return
    }
    gotAudio = true
    armIdle()
    armAudio()
    sha.update(chunk)
    decoder?.write(chunk)
  }

  const onMessage = (data: RawData, isBinary: boolean) => {
    try {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)
      if (isBinary) onAudio(buf)
      else onControl(buf.toString('utf8'))
    } catch (err) {
      fault('live message handling failed', err)
    }
  }

  /** Back-pressure: stop reading the socket while the engine is far behind, resume when it catches up. */
  const watchBacklog = () => {
    if (!ws || !stream || closing) return
    try {
      const behind = stream.backlogMs > limits.maxBacklogMs
      // While Earmark is not reading, the client cannot be idle: the idle clock stops until reading resumes.
      if (behind && !paused) {
        ws.pause()
        paused = true
        clearTimeout(idleTimer)
        clearTimeout(audioTimer)
      } else if (!behind && paused) {
        ws.resume()
        paused = false
        armIdle()
        armAudio()
      }
      checkUtteranceEnd()
    } catch (err) {
      fault('live back-pressure check failed', err)
    }
  }

  return {
    async open() {
      stream = await engine.openStream(
        {
          language: options.language,
          interimResults: true,
          endpointingMs: options.endpointing,
          keywords: options.keywords,
        },
        sink,
      )
      const d = o.createDecoder()
      decoder = d
      decoded = new Promise<void>((resolve, reject) => {
        d.onEnd(resolve)
        d.onError(reject)
      })
      decoded.catch(() => {}) // handled by the error listener below, or awaited in finish()
      d.onPcm((pcm) => {
        try {
          if (quotaSpent) return
          let part = pcm
          if (o.allowAudio) {
            const asked = pcm.length / engine.sampleRate
            const granted = o.allowAudio(asked)
            if (granted < asked) {
              // Cut at the allowance, to the sample, never past it (docs/quotas.md "Live streams").
              quotaSpent = true
              part = pcm.subarray(0, Math.min(pcm.length, Math.floor(granted * engine.sampleRate + 1e-6)))
            }
          }
          if (part.length > 0) stream?.push(part)
          if (quotaSpent) void finish('QUOTA')
        } catch (err) {
          fault('engine refused audio', err)
        }
      })
      d.onError((err) => {
        // ffmpeg that cannot start is the server's fault (1011); anything else is the client's audio (1008).
        if (err.code === 'DECODER_UNAVAILABLE') return fault('audio decoder unavailable', err)
        log.info({ request_id: requestId, reason: err.code }, 'undecodable audio')
        if (!closing) void finish('BAD_AUDIO')
      })
    },
    attach(socket) {
      ws = socket
      if (finished) {
        socket.terminate()
        return
      }
      armIdle()
      armAudio()
      tick = setInterval(watchBacklog, 100)
      // Bound to the upgrade's context, so a fault anywhere in this stream's work carries its request id.
      socket.on('message', AsyncResource.bind(onMessage))
      // ws emits 'close' after every 'error' (invalid UTF-8: 1007, a frame over maxPayload: 1009), so the
      // session ends there, once, with the code the socket closed with.
      socket.on(
        'close',
        AsyncResource.bind((code: number) => {
          const reason = serverCloseReason(socket)
          void finish('NORMAL', reason === undefined ? { code } : { code, reason })
        }),
      )
      socket.on('error', (err) => log.info({ err, request_id: requestId }, 'socket error'))
    },
    abandon(code, reason) {
      return finish('INTERNAL', { code, reason })
    },
    shutdown() {
      return finish('SHUTDOWN')
    },
    ended,
  }
}
