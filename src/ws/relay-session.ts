import { AsyncResource } from 'node:async_hooks'
import type { FastifyBaseLogger } from 'fastify'
import { WebSocket } from 'ws'
import type { RelayEngine, RelayStream } from '../engines/index.js'
import { CLOSE } from './close-codes.js'
import { controlType } from './control-message.js'
import type { ListenSession, SessionLimits, SessionOutcome } from './listen-session.js'
import { closeReasonText, pipeFrames, sendableCloseCode } from './relay-pipe.js'
import { serverCloseReason } from './upgrade.js'

/**
 * How a relayed stream's audio is measured (docs/gateway.md "Metering"). Raw audio of a known layout is
 * counted from the bytes relayed, exactly; a container's bytes do not say how long they play, so it is
 * counted from how far the far end's results reach (its `Results` `start + duration`, and the closing
 * `Metadata` `duration`).
 */
export interface RelayMeter {
  /** Bytes per second of the client's raw audio (`encoding`, `sample_rate`, `channels`), when known. */
  bytesPerSecond: number | undefined
  /** Bytes of one sample frame (all channels): a quota cut never splits one. */
  frameBytes: number
}

export interface RelaySessionOptions {
  requestId: string
  relay: RelayEngine
  /** The client's query string, exactly as sent. */
  query: string
  meter: RelayMeter
  limits: SessionLimits
  log: FastifyBaseLogger
  /** Per direction: above this many bytes queued for one side, the other side is not read. */
  maxBufferedBytes: number
  /** How much of `seconds` more audio the stream may relay (its quota); absent: all. */
  allowAudio?: (seconds: number) => number
  /** Called exactly once, when both sockets are closed and the slot is released. */
  onEnd(outcome: SessionOutcome): void
}

/** How far the far end's results reach, seconds, read from one of its text frames (0 when none). */
function reportedEnd(text: Buffer): number {
  try {
    const m = JSON.parse(text.toString('utf8')) as { type?: unknown; start?: unknown; duration?: unknown }
    if (typeof m.duration !== 'number' || !Number.isFinite(m.duration)) return 0
    if (m.type === 'Metadata') return m.duration
    if (m.type === 'Results' && typeof m.start === 'number') return m.start + m.duration
  } catch {
    // not JSON: nothing to learn from it
  }
  return 0
}

/**
 * One live `/v1/listen` stream relayed to an upstream service (docs/gateway.md): the client's frames go to
 * the far end unchanged (audio, KeepAlive, Finalize, CloseStream alike), and the far end's come back
 * unchanged but for its request id. A close on either side closes the other with the same code and
 * reason; a revocation or a session limit closes the client's socket from outside (src/ws/upgrade.ts),
 * and with it the far end's. The same shape as a decoding session, so the route handles both alike.
 */
export function createRelaySession(o: RelaySessionOptions): ListenSession {
  const { limits, log, requestId, meter } = o
  let upstream: RelayStream | undefined
  let client: WebSocket | undefined
  let audioBytes = 0
  let reportedSeconds = 0
  let quotaSpent = false
  /** Earmark ended the stream through the far end's CloseStream flush (quota, shutdown). */
  let flushing = false
  let quotaSeconds = 0
  let gotAudio = false
  /** The client ended its audio (CloseStream, or the legacy empty binary frame); the far end is flushing. */
  let clientEnded = false
  let idleTimer: NodeJS.Timeout | undefined
  let audioTimer: NodeJS.Timeout | undefined
  /** How the stream ended, from whichever side closed first. */
  let outcome: { code: number; reason: string } | undefined
  let done = false
  let resolveEnded: () => void = () => {}
  const ended = new Promise<void>((resolve) => {
    resolveEnded = resolve
  })

  const audioSeconds = () =>
    meter.bytesPerSecond ? audioBytes / meter.bytesPerSecond : Math.min(reportedSeconds, quotaCap())
  /** A container stream's meter never passes what its quota granted. */
  const quotaCap = () => (o.allowAudio && quotaSpent ? quotaSeconds : Number.POSITIVE_INFINITY)

  const end = () => {
    if (done) return
    done = true
    clearTimeout(idleTimer)
    clearTimeout(audioTimer)
    const { code, reason } = outcome ?? { code: CLOSE.INTERNAL.code, reason: CLOSE.INTERNAL.reason }
    try {
      o.onEnd({ code, reason, audioSeconds: audioSeconds() })
    } catch (err) {
      log.error({ err, request_id: requestId }, 'relayed stream failed to end cleanly')
    } finally {
      resolveEnded()
    }
  }

  const settle = () => {
    const upDone = !upstream || upstream.socket.readyState === WebSocket.CLOSED
    const clientDone = !client || client.readyState === WebSocket.CLOSED
    if (upDone && clientDone) end()
  }

  const closeClient = (code: number, reason: string) => {
    outcome ??= { code, reason }
    const ws = client
    if (!ws || ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return
    if (ws.bufferedAmount > o.maxBufferedBytes) {
      // A client this far behind has stopped reading: it would not read a close frame either.
      ws.terminate()
      return
    }
    ws.close(code, reason)
    setTimeout(() => ws.terminate(), 1000).unref()
  }

  /** Ends the stream from Earmark's side: the far end first (so it can send its last results), then us. */
  const stop = (kind: 'NO_AUDIO' | 'QUOTA' | 'SHUTDOWN' | 'INTERNAL') => {
    outcome ??= CLOSE[kind]
    if ((kind === 'QUOTA' || kind === 'SHUTDOWN') && upstream?.socket.readyState === WebSocket.OPEN) {
      // Deepgram's own way to end a stream: the far end flushes its finals, sends Metadata and closes;
      // the client then gets Earmark's close (the far end's normal one is not the stream's outcome).
      flushing = true
      clientEnded = true
      upstream.socket.send(JSON.stringify({ type: 'CloseStream' }))
      // A far end that does not close after CloseStream is closed for it.
      setTimeout(() => {
        upstream?.close(CLOSE[kind].code, CLOSE[kind].reason)
        closeClient(CLOSE[kind].code, CLOSE[kind].reason)
      }, limits.idleTimeoutMs).unref()
      return
    }
    upstream?.close(CLOSE[kind].code, CLOSE[kind].reason)
    closeClient(CLOSE[kind].code, CLOSE[kind].reason)
  }

  const armIdle = () => {
    clearTimeout(idleTimer)
    idleTimer = setTimeout(() => stop('NO_AUDIO'), limits.idleTimeoutMs)
  }
  const armAudio = () => {
    clearTimeout(audioTimer)
    if (limits.keepAliveOnlyMs <= 0) return
    audioTimer = setTimeout(() => stop('NO_AUDIO'), limits.keepAliveOnlyMs)
  }

  /**
   * After the client's end of audio the far end decodes what it still holds, which can take longer than the
   * idle timeout when it is behind: from then on the idle clock runs on the far end's frames (it is still
   * answering), not the client's, and the audio-only cap no longer applies. It may be silent while it works
   * through a backlog (no interim results, long silences): only silent longer than its backlog bound plus
   * the idle timeout is it closed as an idle one would be.
   */
  const armDrain = () => {
    clearTimeout(idleTimer)
    idleTimer = setTimeout(() => stop('NO_AUDIO'), limits.maxBacklogMs + limits.idleTimeoutMs)
  }
  const clientEnds = () => {
    clientEnded = true
    clearTimeout(audioTimer)
    armDrain()
  }

  /** A frame from the client, on its way upstream: counted, cut at the quota, otherwise unchanged. */
  const fromClient = (data: Buffer, isBinary: boolean): Buffer | undefined => {
    if (quotaSpent) return undefined
    if (!isBinary) {
      if (
        !clientEnded &&
        data.includes('CloseStream') &&
        controlType(data.toString('utf8')) === 'CloseStream'
      )
        clientEnds()
      else if (gotAudio && !clientEnded) armIdle()
      return data
    }
    // The legacy end of stream (docs/deepgram-compat.md §7.2) is relayed as is; later audio is not taken,
    // as Earmark's own decoding takes none.
    if (clientEnded) return undefined
    if (data.length === 0) {
      clientEnds()
      return data
    }
    gotAudio = true
    armIdle()
    armAudio()
    let part = data
    if (o.allowAudio && meter.bytesPerSecond) {
      const asked = data.length / meter.bytesPerSecond
      const granted = o.allowAudio(asked)
      if (granted < asked) {
        // Cut at the allowance, on a whole sample frame, never past it (docs/quotas.md "Live streams").
        quotaSpent = true
        const bytes =
          Math.floor((granted * meter.bytesPerSecond) / meter.frameBytes + 1e-6) * meter.frameBytes
        part = data.subarray(0, Math.min(data.length, bytes))
        setImmediate(() => stop('QUOTA'))
      }
    }
    audioBytes += part.length
    return part.length > 0 ? part : undefined
  }

  /** A frame from the far end, on its way to the client: its request id mapped; containers metered by it. */
  const fromUpstream = (data: Buffer, isBinary: boolean): Buffer => {
    if (clientEnded) armDrain()
    if (!isBinary && !meter.bytesPerSecond) {
      const reached = reportedEnd(data)
      if (reached > reportedSeconds) {
        if (o.allowAudio && !quotaSpent) {
          const asked = reached - reportedSeconds
          const granted = o.allowAudio(asked)
          if (granted < asked) {
            quotaSpent = true
            quotaSeconds = reportedSeconds + granted
            setImmediate(() => stop('QUOTA'))
          }
        }
        reportedSeconds = reached
      }
    }
    return upstream ? upstream.mapFrame(data, isBinary) : data
  }

  return {
    async open() {
      upstream = await o.relay.openStream({ query: o.query, requestId })
      log.info(
        { request_id: requestId, upstream_request_id: upstream.upstreamRequestId },
        'relayed stream opened',
      )
    },
    attach(ws) {
      client = ws
      const up = upstream
      if (!up || done) {
        ws.terminate()
        return
      }
      armIdle()
      armAudio()
      pipeFrames(ws, up.socket, { maxBuffered: o.maxBufferedBytes, frame: AsyncResource.bind(fromClient) })
      pipeFrames(up.socket, ws, { maxBuffered: o.maxBufferedBytes, frame: AsyncResource.bind(fromUpstream) })
      up.socket.resume()
      up.socket.on(
        'close',
        AsyncResource.bind((code: number, reasonBuf: Buffer) => {
          const reason = reasonBuf.toString('utf8')
          // A quota stop is ours: the far end's normal close after CloseStream is reported as the quota's.
          if (outcome && flushing) closeClient(outcome.code, outcome.reason)
          else if (code === 1005) closeClient(CLOSE.NORMAL.code, CLOSE.NORMAL.reason)
          else if (sendableCloseCode(code)) closeClient(code, closeReasonText(reason))
          // The far end died (reset, killed): say so, never leave the client with a silent 1006.
          else closeClient(CLOSE.INTERNAL.code, CLOSE.INTERNAL.reason)
          settle()
        }),
      )
      ws.on(
        'close',
        AsyncResource.bind((code: number, reasonBuf: Buffer) => {
          // Closed from outside the session (a revocation, a session limit): that reason is the record's.
          const serverReason = serverCloseReason(ws)
          outcome ??= { code, reason: serverReason ?? (reasonBuf.toString('utf8') || 'client closed') }
          if (sendableCloseCode(code)) up.close(code, closeReasonText(reasonBuf.toString('utf8')))
          else up.close(1000, 'client gone')
          settle()
        }),
      )
      ws.on('error', (err) => log.info({ err, request_id: requestId }, 'socket error'))
      // The far end left between its 101 and ours.
      if (up.socket.readyState !== WebSocket.OPEN) closeClient(CLOSE.INTERNAL.code, CLOSE.INTERNAL.reason)
    },
    async abandon(code, reason) {
      outcome ??= { code, reason }
      if (!client) {
        upstream?.socket.terminate()
        if (upstream && upstream.socket.readyState !== WebSocket.CLOSED) {
          await new Promise<void>((resolve) => upstream?.socket.once('close', () => resolve()))
        }
        end()
        return ended
      }
      client.terminate()
      upstream?.socket.terminate()
      return ended
    },
    shutdown() {
      if (!client) return this.abandon(CLOSE.SHUTDOWN.code, CLOSE.SHUTDOWN.reason)
      stop('SHUTDOWN')
      return ended
    },
    ended,
  }
}
