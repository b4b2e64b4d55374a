import { AudioDecodeError } from './audio-decode-error.js'
import {
  type AudioDecoderOptions,
  type AudioFormat,
  DEFAULT_MAX_PENDING_BYTES,
  PCM_SAMPLE_RATE,
} from './audio-format.js'
import { demuxerForHint, SNIFF_BYTES, sniffContainer } from './container-sniff.js'
import type { DecoderBackend } from './decoder-backend.js'
import { DecoderEvents, type DecoderState } from './decoder-events.js'
import { containerInputArgs, createFfmpegDecoder, ffmpegArgs, rawInputArgs } from './ffmpeg-decoder.js'
import { createPassthroughDecoder } from './passthrough-decoder.js'
import { MAX_WAV_HEADER_BYTES, type PcmLayout, parseWavHeader } from './wav-header.js'

/**
 * A streaming decoder for one client stream: encoded bytes in, signed 16-bit little-endian mono PCM out
 * (16 kHz unless `sampleRate` says otherwise).
 *
 * Listeners are called on a microtask, never from inside `write()`, `end()` or `kill()`, and in order: any
 * number of PCM chunks, then exactly one `end` or one `error`. After `kill()` nothing more is called.
 * Register listeners before the first `write()`; an `end` or `error` listener added later still hears
 * about an outcome that already happened.
 */
export interface AudioDecoder {
  /**
   * Queues encoded bytes of any size (odd byte counts and half samples included). The decoder may keep a
   * reference until the bytes are handed on, so do not reuse `chunk`. Ignored once `end()`, `kill()` or a
   * failure happened.
   * @returns false when the bytes waiting for ffmpeg passed its pipe's buffer: a producer that can wait
   * should `await waitForDrain()`. One that cannot (a socket) may keep writing: past `maxPendingBytes`
   * the decoder fails with `BACKLOG_FULL`.
   */
  write(chunk: Uint8Array): boolean
  /** Resolves once the bytes waiting for ffmpeg dropped below its pipe's buffer, or the decoder settled. */
  waitForDrain(): Promise<void>
  /** No more input: the decoder flushes, delivers its last PCM, then `end` (or `error`). */
  end(): void
  /**
   * Stops at once: ffmpeg gets SIGKILL and no listener is called after this. Resolves when the ffmpeg
   * process has exited (at once when there is none), so a caller can be sure nothing was left behind.
   */
  kill(): Promise<void>
  onPcm(listener: (pcm: Int16Array) => void): void
  onEnd(listener: () => void): void
  onError(listener: (err: AudioDecodeError) => void): void
  readonly state: DecoderState
  /** Bytes written but not yet taken by ffmpeg (or held while the container is being recognised). */
  readonly pendingBytes: number
  /** The ffmpeg process id while one runs (diagnostics, tests); undefined when none runs. */
  readonly pid: number | undefined
}

/** Options of one stream's decoder. */
export interface StreamDecoderOptions extends AudioDecoderOptions {
  /**
   * Fail with `UNDECODABLE` once more bytes than this were written and no PCM came out (a live stream of
   * bytes that only look like a container). Never applied to raw PCM (`encoding`). Default: no bound (an
   * upload may start with a large tag).
   */
  maxBytesBeforeAudio?: number
  /**
   * Fail with `UNDECODABLE` when bytes that name no container Earmark knows (and no `encoding` hint) yield
   * no PCM this long after ffmpeg started on them. ffmpeg may settle on a format that scores barely above
   * zero for random bytes and then wait for more input forever. Default: no bound.
   */
  unrecognisedTimeoutMs?: number
}

/**
 * Creates the decoder for one stream, taking the cheapest route: 16 kHz mono linear16 (raw, or in a WAV)
 * passes straight through with no process; other raw PCM goes through ffmpeg's raw demuxer, started at
 * once; containers go through ffmpeg too, one process per stream, started on the first bytes so that the
 * demuxer can be named from them (no process at all for a stream that never sends a byte).
 */
export function createAudioDecoder(options: StreamDecoderOptions): AudioDecoder {
  const sampleRate = options.sampleRate ?? PCM_SAMPLE_RATE
  const ffmpegPath = options.ffmpegPath ?? 'ffmpeg'
  const maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES
  const format: AudioFormat = options.format
  const events = new DecoderEvents()
  const maxBytesBeforeAudio = options.maxBytesBeforeAudio ?? Number.POSITIVE_INFINITY
  let sawPcm = false
  let probeTimer: NodeJS.Timeout | undefined
  events.onPcm(() => {
    sawPcm = true
    clearTimeout(probeTimer)
  })
  const undecodable = (reason: string) => {
    clearTimeout(probeTimer)
    events.fail(new AudioDecodeError('UNDECODABLE', reason))
    head = []
    void backend?.kill()
  }
  let backend: DecoderBackend | null = null
  let head: Uint8Array[] = []
  let headBytes = 0
  let inputBytes = 0
  /** Bytes still to pass on, when a WAV header gave the data size. */
  let remaining = Number.POSITIVE_INFINITY

  const ffmpeg = (input: string[]) =>
    createFfmpegDecoder({
      args: ffmpegArgs(input, sampleRate),
      ffmpegPath,
      maxPendingBytes,
      events,
      inputBytes: () => inputBytes,
    })
  const pcm = (layout: PcmLayout) =>
    layout.demuxer === 's16le' && layout.sampleRate === sampleRate && layout.channels === 1
      ? createPassthroughDecoder(events)
      : ffmpeg(rawInputArgs(layout))

  /** Picks the backend once enough of the stream is known; `final` when no more bytes will come. */
  function route(final: boolean): void {
    let bytes: Uint8Array = Buffer.concat(head)
    if (format.kind === 'raw') {
      const demuxer = format.encoding === 'linear16' ? 's16le' : format.encoding
      backend = pcm({ demuxer, sampleRate: format.sampleRate, channels: format.channels })
    } else {
      if (bytes.length < SNIFF_BYTES && !final) return
      if (sniffContainer(bytes) === 'wav') {
        const wav = parseWavHeader(bytes)
        if (wav.kind === 'need-more' && !final && bytes.length < MAX_WAV_HEADER_BYTES) return
        if (wav.kind === 'pcm') {
          backend = pcm(wav.layout)
          bytes = bytes.subarray(wav.dataOffset)
          if (wav.dataBytes !== null) remaining = wav.dataBytes
        }
      }
      clearTimeout(probeTimer)
      if (!backend) {
        backend = ffmpeg(containerInputArgs(bytes, format.hint))
        const timeout = options.unrecognisedTimeoutMs
        if (timeout !== undefined && !sniffContainer(bytes) && !demuxerForHint(format.hint)) {
          probeTimer = setTimeout(() => {
            if (!sawPcm && !events.settled) undecodable('unrecognised data')
          }, timeout)
          probeTimer.unref()
        }
      }
    }
    head = []
    headBytes = 0
    forward(bytes)
  }

  function forward(bytes: Uint8Array): boolean {
    if (!backend || bytes.length === 0 || remaining <= 0) return true
    const take = bytes.length <= remaining ? bytes : bytes.subarray(0, remaining)
    remaining -= take.length
    return backend.write(take)
  }

  // Raw PCM needs nothing from the stream to pick its route, so ffmpeg (when needed) starts now: its
  // ~100 ms start-up then overlaps the wait for the client's first audio instead of adding to it.
  if (format.kind === 'raw') route(false)

  return {
    write(chunk) {
      if (events.state !== 'open' || chunk.length === 0) return true
      inputBytes += chunk.length
      // Raw PCM (linear16, mulaw, alaw) is audio whatever its bytes: a client that sends it faster than
      // ffmpeg starts (a file replayed at 8 kHz) passes the limit before the first PCM comes out.
      if (!sawPcm && format.kind !== 'raw' && inputBytes > maxBytesBeforeAudio) {
        undecodable(`no audio in the first ${maxBytesBeforeAudio} bytes`)
        return true
      }
      if (backend) return forward(chunk)
      head.push(chunk)
      headBytes += chunk.length
      route(false)
      if (!backend && probeTimer === undefined && options.unrecognisedTimeoutMs !== undefined) {
        // Too few bytes yet to name a format: a stream that stops here would otherwise wait for the idle
        // timeout instead of being judged undecodable.
        probeTimer = setTimeout(() => {
          if (!backend && !events.settled) undecodable('too few bytes to recognise a format')
        }, options.unrecognisedTimeoutMs)
        probeTimer.unref()
      }
      return true
    },
    waitForDrain() {
      return backend && !events.settled ? backend.waitForDrain() : Promise.resolve()
    },
    end() {
      if (events.state !== 'open') return
      events.state = 'ending'
      if (!backend && inputBytes === 0) {
        // Nothing was ever sent: no process, no PCM, no error.
        events.end()
        return
      }
      if (!backend) route(true)
      backend?.end()
    },
    kill() {
      clearTimeout(probeTimer)
      events.kill()
      head = []
      return backend ? backend.kill() : Promise.resolve()
    },
    onPcm: (l) => events.onPcm(l),
    onEnd: (l) => events.onEnd(l),
    onError: (l) => events.onError(l),
    get state() {
      return events.state
    },
    get pendingBytes() {
      return headBytes + (backend?.pendingBytes ?? 0)
    },
    get pid() {
      return backend?.pid
    },
  }
}
