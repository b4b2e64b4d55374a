import {
  type CapacityMeasurement,
  type Engine,
  EngineBusyError,
  type EngineCapacity,
  EngineOptionError,
  type EngineStream,
  type StreamOptions,
} from '../engine.js'
import { createDecoderPool } from './decoder-pool.js'
import { measurePocketsphinxCapacity } from './measure-real-time-factor.js'
import {
  createPocketsphinxDecoder,
  type PocketsphinxDecoder,
  type PocketsphinxDecoderOptions,
} from './pocketsphinx-decoder.js'
import { openPocketsphinxStream } from './pocketsphinx-stream.js'
import { transcribeWithDecoder } from './pocketsphinx-transcribe.js'

/** What Deepgram's metadata reports for this engine. The uuid is fixed so clients can key on it. */
export const POCKETSPHINX_MODEL = {
  name: 'pocketsphinx-en-us',
  version: '5prealpha',
  arch: 'pocketsphinx',
  uuid: '26d5c7e7-7d20-4508-81de-bf635a1dfaa5',
} as const

export interface PocketsphinxEngineOptions {
  /**
   * Decoders in the warm pool: streams plus one-shot decodes at once. Default 2. About 100 MB and 0.6 s of
   * load each. `auto`: measured at creation on the `warmup` speech (2 without it), see
   * `measurePocketsphinxCapacity`; `onCapacity` is told the figures.
   */
  capacity?: EngineCapacity
  /** Told how an `auto` capacity was settled (the real-time factor measured, or why it fell back). */
  onCapacity?: (measured: CapacityMeasurement) => void
  /** Model paths, search and VAD settings of every decoder (defaults: the tuned settings of the notes). */
  decoder?: PocketsphinxDecoderOptions
  /** Utterances are cut (final with speechFinal false) after this much speech, ms. Default 12000. */
  maxUtteranceMs?: number
  /** Audio is decoded in slices of this many ms; the VAD and interims are checked after each. Default 100. */
  sliceMs?: number
  /** How long `transcribe` waits for a free decoder when the caller gives no `waitMs`. Default 10000. */
  transcribeWaitMs?: number
  /**
   * Speech every new decoder decodes once before it joins the pool (results dropped), e.g.
   * pocketsphinx-testdata's goforward.raw: a decoder that cannot decode never joins, and `auto` capacity is
   * measured on it. It changes no transcript: every stream and one-shot decode starts from the same fixed
   * cepstral mean (`decoder.cmnInit`), whatever the decoder decoded before. Default: none.
   */
  warmup?: Int16Array
  /**
   * Told once, at the first decoder that cannot boost keywords (docs/speech.md, "Keywords"), why: requests
   * with keywords are then transcribed without them. The composition root logs it at warn.
   */
  onKeywordsUnavailable?: (reason: string) => void
  /** Told when a decoder that failed could not be replaced (the pool then runs one short). */
  onDecoderError?: (err: unknown) => void
}

const LANGUAGES = new Set(['en', 'en-us'])

function checkOptions(options: Omit<StreamOptions, 'interimResults'>): void {
  const { language, endpointingMs } = options as { language?: unknown; endpointingMs?: unknown }
  if (language !== undefined && language !== '') {
    if (typeof language !== 'string' || !LANGUAGES.has(language.toLowerCase())) {
      throw new EngineOptionError(
        'language',
        `The pocketsphinx engine speaks only US English (en, en-US), not ${JSON.stringify(language)}.`,
      )
    }
  }
  if (endpointingMs !== false && !(typeof endpointingMs === 'number' && endpointingMs >= 0)) {
    throw new EngineOptionError('endpointing', 'Endpointing must be a number of milliseconds or false.')
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer.`)
  return value
}

/**
 * The embedded engine: Debian's PocketSphinx 5prealpha through koffi, a warm pool of `capacity` decoders
 * loaded in parallel at start. Resolves once every decoder is loaded; rejects with
 * `PocketsphinxUnavailableError` when the library or model is missing.
 *
 * What the stream layer should know:
 * - SpeechStarted comes at the VAD's rising edge, about 0.1 s (vad_startspeech) after the onset; its
 *   timestamp is an early estimate of the onset (at most one slice early).
 * - Interims come after a slice (100 ms) in speech whenever the best partial path changed; their words have
 *   real times but confidence 0 (PocketSphinx computes posteriors only when an utterance ends).
 * - Endpoints: the VAD notices silence after `vadPostspeechFrames` (500 ms), so a final with speechFinal
 *   comes max(endpointingMs, 500 ms) after speech stops, plus the final pass (about 0.1–0.4 s).
 * - Finals tile the stream: each starts where the previous ended. Forced cuts (maxUtteranceMs, and VAD
 *   pauses after half of it when endpointing is false) have speechFinal false; so do finals from finalize
 *   and close. A Finalize with nothing new since the last final still yields an empty final.
 * - `transcribe` reads the caller's buffer in place on the threadpool: do not change it until it resolves.
 *   It returns only utterances with words. Given an async iterable, it pulls the next chunk only once the
 *   slice before was decoded: the decoder's pace is the back-pressure on the source. One-shot decodes
 *   queue for the same decoders as streams (streams never queue: they are refused at once when all are
 *   lent out); `admission.maxQueue` bounds that queue.
 * - Decoding runs on the libuv threadpool (4 threads unless UV_THREADPOOL_SIZE is set before first use):
 *   give it at least capacity + 4 so decoders never starve fs, dns and crypto work.
 */
export async function createPocketsphinxEngine(options: PocketsphinxEngineOptions = {}): Promise<Engine> {
  let configured = options.capacity ?? 2
  let probeRealTimeFactor: number | undefined
  if (configured === 'auto') {
    const measured = await measurePocketsphinxCapacity(options.warmup, () =>
      createPocketsphinxDecoder(options.decoder),
    )
    options.onCapacity?.(measured)
    configured = measured.capacity
    probeRealTimeFactor = measured.realTimeFactor
  }
  const capacity = positiveInteger('capacity', configured)
  const maxUtteranceMs = positiveInteger('maxUtteranceMs', options.maxUtteranceMs ?? 12_000)
  const sliceMs = positiveInteger('sliceMs', options.sliceMs ?? 100)
  const transcribeWaitMs = options.transcribeWaitMs ?? 10_000
  const sampleRate = 16_000
  const sliceSamples = Math.round((sliceMs / 1000) * sampleRate)
  const { warmup } = options
  /** Decoding work since start, for `stats()`: every slice any decoder processed after its warm-up. */
  const work = { decodeSeconds: 0, samples: 0 }
  /** Times `decoder.process` (the call that decodes a slice on the threadpool) from here on. */
  const timed = (decoder: PocketsphinxDecoder) => {
    const process = decoder.process
    decoder.process = async (pcm) => {
      const started = performance.now()
      try {
        return await process(pcm)
      } finally {
        work.decodeSeconds += (performance.now() - started) / 1000
        work.samples += pcm.length
      }
    }
    return decoder
  }
  let keywordsReported = false
  const create = async () => {
    const decoder = await createPocketsphinxDecoder(options.decoder)
    if (decoder.keywordsUnavailable !== undefined && !keywordsReported) {
      keywordsReported = true
      options.onKeywordsUnavailable?.(decoder.keywordsUnavailable)
    }
    if (warmup && warmup.length > 0) {
      try {
        await transcribeWithDecoder(decoder, warmup, { endpointingMs: 10, maxUtteranceMs, sliceSamples })
      } catch (err) {
        await decoder.close()
        throw err
      }
    }
    return timed(decoder)
  }
  const pool = await createDecoderPool({ size: capacity, create, onReplaceError: options.onDecoderError })

  const streams = new Set<EngineStream>()
  const transcriptions = new Set<Promise<unknown>>()
  let closing: Promise<void> | undefined
  /** Stops streamed one-shot decodes at close: a long file would otherwise hold the shutdown. */
  const shutdown = new AbortController()

  const transcribeOn = async (
    decoder: PocketsphinxDecoder,
    pcm: Int16Array | AsyncIterable<Int16Array>,
    endpointingMs: number | false,
    keywords: StreamOptions['keywords'],
    signal: AbortSignal | undefined,
  ) => {
    const health = { broken: false }
    try {
      return await transcribeWithDecoder(decoder, pcm, {
        endpointingMs,
        keywords,
        maxUtteranceMs,
        sliceSamples,
        health,
        ...(signal ? { signal } : {}),
      })
    } finally {
      pool.release(decoder, health)
    }
  }

  return {
    name: 'pocketsphinx',
    sampleRate,
    // Bare lower-case words: `punctuate` is the listen layer's best effort (src/listen/results.ts).
    formatting: { punctuation: false, casing: false },
    model: { ...POCKETSPHINX_MODEL },
    capacity,
    inUse: () => pool.inUse(),

    async openStream(streamOptions, sink) {
      checkOptions(streamOptions)
      if (closing) throw new EngineBusyError('The speech engine is shutting down.')
      const decoder = pool.tryAcquire()
      if (!decoder) throw new EngineBusyError()
      let stream: EngineStream | undefined
      stream = await openPocketsphinxStream(
        decoder,
        {
          interimResults: streamOptions.interimResults,
          endpointingMs: streamOptions.endpointingMs,
          keywords: streamOptions.keywords,
          maxUtteranceMs,
          sliceSamples,
        },
        sink,
        (broken) => {
          if (stream) streams.delete(stream)
          pool.release(decoder, { broken })
        },
      )
      streams.add(stream)
      return stream
    },

    async transcribe(pcm, transcribeOptions, admission = {}) {
      checkOptions(transcribeOptions)
      if (closing) throw new EngineBusyError('The speech engine is shutting down.')
      const {
        waitMs = transcribeWaitMs,
        maxQueue,
        signal,
      } = typeof admission === 'number' ? { waitMs: admission } : admission
      const decoder = await pool.acquire(waitMs, {
        ...(maxQueue !== undefined ? { maxWaiters: maxQueue } : {}),
        ...(signal ? { signal } : {}),
      })
      const stop =
        pcm instanceof Int16Array
          ? signal
          : signal
            ? AbortSignal.any([signal, shutdown.signal])
            : shutdown.signal
      const job = transcribeOn(
        decoder,
        pcm,
        transcribeOptions.endpointingMs,
        transcribeOptions.keywords,
        stop,
      )
      transcriptions.add(job)
      try {
        return await job
      } finally {
        transcriptions.delete(job)
      }
    },

    stats() {
      let backlogMs = 0
      for (const s of streams) backlogMs += s.backlogMs
      return {
        decodeSeconds: work.decodeSeconds,
        audioSeconds: work.samples / sampleRate,
        backlogSeconds: backlogMs / 1000,
        waiting: pool.waiting(),
        ...(probeRealTimeFactor !== undefined ? { probeRealTimeFactor } : {}),
      }
    },

    close() {
      closing ??= (async () => {
        shutdown.abort(new EngineBusyError('The speech engine is shutting down.'))
        await Promise.allSettled([...streams].map((s) => s.close()))
        await Promise.allSettled([...transcriptions])
        await pool.close()
      })()
      return closing
    },
  }
}
