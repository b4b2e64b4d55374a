import { type AudioDecoderOptions, decodeStream } from '../audio/index.js'
import type { Admission, Engine, Transcription } from '../engines/index.js'
import { ApiError } from '../errors.js'
import type { ListenOptions } from './listen-options.js'

/** One recording in hand, to transcribe as `POST /v1/listen` does. */
export interface Recording {
  /** What the request asked for (`planListen`, or the use case's `plan`). */
  options: ListenOptions
  /** How its bytes are to be decoded. */
  audio: AudioDecoderOptions
  /** The engine that decodes it (a relay forwards the bytes instead: docs/gateway.md). */
  engine: Engine
  /**
   * The encoded bytes (any container, or the raw encoding the plan names), pulled only once a decoder is
   * free: a source that opens its file on the first `next()` holds nothing while the recording waits.
   */
  chunks: AsyncIterable<Uint8Array>
  /** Longest audio, seconds: decoding stops with `TOO_LONG` past it. */
  maxAudioSeconds: number
  /** The wait for a decoder, shared with live streams. */
  admission: Admission
  /** Between the audio decoder and the engine (e.g. the quotas' cut-off, docs/quotas.md). */
  through?: (pcm: AsyncIterable<Int16Array>) => AsyncIterable<Int16Array>
  /** Samples as the engine takes them, for metering a decode that stopped half-way. */
  onSamples?: (samples: number) => void
}

/** `pcm` passed through, its samples counted. */
async function* counted(pcm: AsyncIterable<Int16Array>, count: (samples: number) => void) {
  for await (const chunk of pcm) {
    count(chunk.length)
    yield chunk
  }
}

/**
 * Decodes a recording to the PCM of the engine that serves its model and transcribes it on one of that
 * engine's decoders: the pre-recorded pipeline, shared by `POST /v1/listen` and `earmark transcribe`'s
 * embedded engine (docs/cli.md). The encoded bytes, the PCM and ffmpeg are pulled lazily, so neither is ever
 * whole in memory (docs/speech.md, "Pre-recorded limits").
 * @throws what the decoder (AudioDecodeError) or the engine (EngineBusyError, EngineOptionError) throws;
 * the listen use case's `toApiError` maps them.
 */
export function transcribeRecording(r: Recording): Promise<Transcription> {
  const { options, audio, engine } = r
  const pcm = decodeStream(r.chunks, {
    ...audio,
    sampleRate: engine.sampleRate,
    maxSamples: r.maxAudioSeconds * engine.sampleRate,
  })
  const fed = r.through ? r.through(pcm) : pcm
  return engine.transcribe(
    r.onSamples ? counted(fed, r.onSamples) : fed,
    { language: options.language, endpointingMs: options.endpointing, keywords: options.keywords },
    r.admission,
  )
}

/** The 413 for audio longer than `maxAudioSeconds` (docs/speech.md, "Pre-recorded limits"). */
export function audioTooLong(maxAudioSeconds: number): ApiError {
  return new ApiError('PAYLOAD_TOO_LARGE', `Audio is longer than the limit of ${maxAudioSeconds} s.`)
}
