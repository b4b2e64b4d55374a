/**
 * The speech-engine seam. Earmark's HTTP and WebSocket layers speak only to these interfaces, so engines
 * plug in by name. An `Engine` (the embedded PocketSphinx) decodes: all audio crossing its interface is
 * 16-bit signed little-endian mono PCM at `engine.sampleRate`. A `RelayEngine` (an upstream
 * Deepgram-compatible service) takes the client's bytes and messages as they came and answers with the far
 * end's own results.
 */

import type { WebSocket } from 'ws'

/** One recognised word; times are seconds from the start of the stream (or file). */
export interface Word {
  word: string
  start: number
  end: number
  /** 0..1 */
  confidence: number
  /**
   * The word as written (cased, with the punctuation that follows it), from an engine whose
   * `formatting.punctuation` is true; absent otherwise, and the listen layer writes it.
   */
  punctuatedWord?: string
}

/** A hypothesis for a stretch of audio. */
export interface Hypothesis {
  /** The words joined by single spaces (lower case unless `formatting.casing`); empty when nothing was recognised. */
  transcript: string
  words: Word[]
  /** 0..1; the mean word confidence, or 0 when there are no words. */
  confidence: number
  /** Seconds from the start of the stream: the stretch this hypothesis covers. */
  start: number
  end: number
}

/** A final hypothesis: why it was emitted. */
export interface FinalHypothesis extends Hypothesis {
  /** True when the engine detected the end of speech (an endpoint), not a forced cut. */
  speechFinal: boolean
  /** True when emitted because the client asked to finalize. */
  fromFinalize: boolean
}

/** A word or phrase to favour: Deepgram `keywords` (`word:intensifier`) and `keyterm` (docs/speech.md "Keywords"). */
export interface KeywordBoost {
  /** One or more words, as the client wrote them. */
  phrase: string
  /** Deepgram's intensifier: above 0 favours the phrase (more favours it more); 0 or below is ignored. */
  boost: number
}

export interface StreamOptions {
  /** BCP-47-ish language tag, e.g. `en`, `en-US`. Engines refuse what they cannot do. */
  language: string
  /** Emit interim hypotheses while speech goes on. */
  interimResults: boolean
  /** Milliseconds of silence that end an utterance, or false to end utterances only on finalize/cuts. */
  endpointingMs: number | false
  /** Words and phrases to favour; an engine that cannot bias its search ignores them. */
  keywords?: readonly KeywordBoost[]
}

/** Where a stream delivers what it recognises. Callbacks are called in audio order, never concurrently. */
export interface StreamSink {
  onInterim(h: Hypothesis): void
  onFinal(h: FinalHypothesis): void
  /** Speech began at `timestamp` seconds into the stream. */
  onSpeechStarted(timestamp: number): void
  onError(err: Error): void
}

/** A live recognition stream bound to one decoder. Calls are serialised internally. */
export interface EngineStream {
  /** Queues audio; returns at once. Decoding never runs on the event loop. */
  push(pcm: Int16Array): void
  /** Flushes everything pushed so far; resolves after the resulting final (fromFinalize) was delivered. */
  finalize(): Promise<void>
  /** Seconds of audio pushed so far. */
  readonly audioSeconds: number
  /** Milliseconds of audio waiting to be decoded (the backlog). */
  readonly backlogMs: number
  /** Flushes (delivering a last final if speech was pending, with fromFinalize false) and releases the decoder. */
  close(): Promise<void>
}

/** The outcome of decoding a whole file at once. */
export interface Transcription {
  /** One final per utterance, in order. */
  utterances: FinalHypothesis[]
  /** Seconds of audio decoded. */
  duration: number
}

/** How a one-shot decode waits for a free decoder (the same capacity live streams take). */
export interface Admission {
  /** How long to wait for a free decoder, ms; 0 refuses at once. Default: the engine's own. */
  waitMs?: number
  /** Refuse at once with EngineBusyError when this many one-shot decodes already wait. Default: no bound. */
  maxQueue?: number
  /** Aborting gives up the place in the queue, or stops the decode; the promise rejects with the reason. */
  signal?: AbortSignal
}

/**
 * What an engine writes itself. Deepgram's `punctuate` and `smart_format` want cased, punctuated words; an
 * engine that gives bare lower-case words (PocketSphinx) leaves that to the listen layer's best-effort
 * punctuation, one that writes them (a neural model, an upstream service) must not get it added twice.
 */
export interface EngineFormatting {
  /** True when every word carries `punctuatedWord`; false: the listen layer punctuates when asked. */
  punctuation: boolean
  /** True when words come cased as written; false: lower case. */
  casing: boolean
}

export interface Engine {
  readonly name: string
  /**
   * The PCM sample rate this engine takes, Hz: the audio decoders resample every client's audio to it
   * (live and pre-recorded), and quotas and usage count samples at it.
   */
  readonly sampleRate: number
  /** What the engine writes itself: the listen layer punctuates only where the engine does not. */
  readonly formatting: EngineFormatting
  /** Model description for Deepgram's metadata. */
  readonly model: { name: string; version: string; arch: string; uuid: string }
  /**
   * How many streams may decode at once in real time (admission control uses it): configured, or measured
   * by the engine itself when it was created with `capacity: 'auto'` (see `EngineCapacity`).
   */
  readonly capacity: number
  /** Streams and one-shot decodes running now. */
  inUse(): number
  /** Opens a stream, or throws `EngineBusyError` when all capacity is taken. */
  openStream(options: StreamOptions, sink: StreamSink): Promise<EngineStream>
  /**
   * Decodes a whole recording (pre-recorded audio) on one decoder taken from the same capacity as streams.
   * `pcm` is one buffer, or PCM chunks of any size pulled one at a time once a decoder is free: a source
   * that decodes a file lazily (starting ffmpeg on its first `next()`) then holds nothing while the
   * request waits, and neither the encoded bytes nor the PCM are ever whole in memory. The engine stops
   * pulling (calling the iterator's `return()`) as soon as it fails or `admission.signal` aborts.
   * `admission` is the wait for capacity (a number is `waitMs`, kept for older callers).
   * @throws EngineBusyError when no decoder frees within the wait, or the queue is full; an error the
   * source throws, or the signal's reason, as is. The decoder is back in the pool before it rejects.
   */
  transcribe(
    pcm: Int16Array | AsyncIterable<Int16Array>,
    options: Omit<StreamOptions, 'interimResults'>,
    admission?: number | Admission,
  ): Promise<Transcription>
  /** Frees every decoder. */
  close(): Promise<void>
  /**
   * What the engine is doing, for `/metrics` (docs/metrics.md); absent when the engine cannot tell (an
   * upstream service, say). Cheap: read at every scrape.
   */
  stats?(): EngineStats
}

/** An engine's work so far and now, as counters and gauges (docs/metrics.md, "Engine"). */
export interface EngineStats {
  /** Wall-clock seconds spent decoding since the engine started (warm-up and capacity probe excluded). */
  decodeSeconds: number
  /** Seconds of audio decoded since the engine started: `decodeSeconds / audioSeconds` is the real-time factor. */
  audioSeconds: number
  /** Seconds of audio live streams pushed that wait to be decoded, all streams together. */
  backlogSeconds: number
  /** One-shot decodes waiting for a free decoder. */
  waiting: number
  /** The real-time factor the `auto` capacity probe measured at start, when one ran. */
  probeRealTimeFactor?: number
}

/**
 * An engine's capacity as its factory takes it: a number of concurrent real-time streams, or `auto`, for the
 * engine to measure what this machine sustains (each engine knows how: PocketSphinx decodes real speech once
 * and divides the cores by its real-time factor).
 */
export type EngineCapacity = number | 'auto'

/** How an engine settled an `auto` capacity, for the composition root to log. */
export interface CapacityMeasurement {
  capacity: number
  /** Decode time over audio time of the probe, when one ran. */
  realTimeFactor?: number
  /** Why nothing was measured (the figure is then a fallback). */
  fallback?: string
}

/** Thrown when an engine has no free capacity. */
export class EngineBusyError extends Error {
  constructor(message = 'All speech capacity is in use.') {
    super(message)
    this.name = 'EngineBusyError'
  }
}

/** Thrown when an engine cannot serve the requested options (e.g. an unsupported language). */
export class EngineOptionError extends Error {
  readonly field: string
  constructor(field: string, message: string) {
    super(message)
    this.name = 'EngineOptionError'
    this.field = field
  }
}

/**
 * A pre-recorded request relayed as it came: the client's query string and bytes go to the engine unchanged
 * (no decode, no re-encode).
 */
export interface RelayRequest {
  /** The client's query string, without the `?`, exactly as sent. */
  query: string
  /** The client's `Content-Type` (audio, or what Earmark fetched for a `{"url"}` body). */
  contentType: string
  /** The audio bytes, pulled once the relay is under way. */
  body: AsyncIterable<Uint8Array>
  /** Length of `body`, bytes. */
  bytes: number
  /** Earmark's request id: it replaces the engine's own in what comes back. */
  requestId: string
  /** Aborting stops the relay; the promise rejects with the reason. */
  signal: AbortSignal
}

/** What a relayed pre-recorded request got back: the engine's status and body, its request id mapped. */
export interface RelayResponse {
  status: number
  /** The body as the engine sent it, but for its request id, which is Earmark's. */
  body: Buffer
  contentType: string
  /** The engine's request id (for logs: it names the request in the engine's own records). */
  upstreamRequestId: string | undefined
  /** `metadata.duration` of a 200, seconds, when the body states it. */
  reportedSeconds: number | undefined
  /** `Retry-After` of a 429 or 503, passed on to the client. */
  retryAfter: string | undefined
}

/** A live stream relayed as it came: the client's query; every frame goes through `send`. */
export interface RelayStreamRequest {
  query: string
  requestId: string
}

/** One relayed live stream: the engine's socket, opened and ready. */
export interface RelayStream {
  /** The engine's request id for the stream. */
  readonly upstreamRequestId: string | undefined
  /** The engine's socket, for the relay to pipe frames to and from (see `pipeFrames`). */
  readonly socket: WebSocket
  /** Rewrites a text frame from the engine: its request id becomes Earmark's; other frames as they are. */
  mapFrame(data: Buffer, isBinary: boolean): Buffer
  /** Closes the engine's socket (a code and reason to pass on, or a plain close); cut if it does not answer. */
  close(code?: number, reason?: string): void
}

/**
 * An engine that transcribes nothing itself: it relays the client's bytes and control messages to another
 * Deepgram-compatible service and its answers back (Earmark as a credential gateway, docs/gateway.md). The
 * listen routes hand it the request as it came, after Earmark's own authentication, limits and admission.
 */
export interface RelayEngine {
  readonly kind: 'relay'
  readonly name: string
  /** Relayed streams and requests that may run at once (admission control uses it). */
  readonly capacity: number
  /** Relayed streams and requests running now. */
  inUse(): number
  /**
   * Relays a pre-recorded request. Resolves with whatever the far end answered (errors included); rejects
   * with `RelayError` when it could not be reached or answered nothing usable.
   */
  transcribe(request: RelayRequest): Promise<RelayResponse>
  /**
   * Opens the far end's socket for a live stream; rejects with `RelayError` (its status and body, when the
   * far end refused the upgrade, for the client's own refusal).
   */
  openStream(request: RelayStreamRequest): Promise<RelayStream>
  /** Cuts every relayed stream and request still running, and releases the engine's connections. */
  close(): Promise<void>
}

/** Either kind of engine the registry holds: one that decodes PCM, or a relay. */
export type SpeechEngine = Engine | RelayEngine

/** True when `engine` relays instead of decoding. */
export function isRelayEngine(engine: SpeechEngine): engine is RelayEngine {
  return (engine as RelayEngine).kind === 'relay'
}

/**
 * A relay that could not be completed: the far end refused (its status, error code and message, with
 * secrets and its request id removed) or could not be reached (`status` 502, or 504 on a timeout).
 */
export class RelayError extends Error {
  readonly status: number
  /** The far end's `err_code`, when it sent one and it is the client's to see. */
  readonly errCode: string | undefined
  readonly retryAfter: string | undefined
  constructor(status: number, message: string, options: { errCode?: string; retryAfter?: string } = {}) {
    super(message)
    this.name = 'RelayError'
    this.status = status
    this.errCode = options.errCode
    this.retryAfter = options.retryAfter
  }
}
