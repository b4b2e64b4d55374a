import { AudioDecodeError } from './audio-decode-error.js'
import { createAudioDecoder } from './audio-decoder.js'
import type { AudioDecoderOptions } from './audio-format.js'
import { concatPcm } from './pcm.js'

/** Options of `decodeAll`. */
export interface DecodeAllOptions extends AudioDecoderOptions {
  /** Fail with `TOO_LONG` once more samples than this were decoded. Default: no cap. */
  maxSamples?: number
}

/** Bytes handed to the decoder at a time when the input is one buffer. */
const SLICE_BYTES = 64 * 1024

/**
 * Decodes a whole upload (pre-recorded `POST /v1/listen`) to PCM: one buffer, or any (async) iterable of
 * chunks such as a request stream, read with back-pressure so a fast upload never piles up in memory
 * ahead of ffmpeg.
 * @throws AudioDecodeError when the audio cannot be decoded or passes `maxSamples`; an error thrown by
 * `input` itself (an aborted upload) is rethrown as is. Either way the ffmpeg process is gone first.
 */
export async function decodeAll(
  input: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  options: DecodeAllOptions,
): Promise<Int16Array> {
  const decoder = createAudioDecoder(options)
  const parts: Int16Array[] = []
  let samples = 0
  let rejectOutcome: (err: AudioDecodeError) => void = () => {}
  const outcome = new Promise<void>((resolve, reject) => {
    rejectOutcome = reject
    decoder.onEnd(resolve)
    decoder.onError(reject)
  })
  outcome.catch(() => {}) // awaited below; this only keeps an early failure from counting as unhandled
  decoder.onPcm((pcm) => {
    samples += pcm.length
    if (options.maxSamples !== undefined && samples > options.maxSamples) {
      void decoder.kill()
      rejectOutcome(new AudioDecodeError('TOO_LONG'))
      return
    }
    parts.push(pcm)
  })
  try {
    for await (const chunk of slices(input)) {
      if (decoder.state !== 'open') break
      if (!decoder.write(chunk)) await decoder.waitForDrain()
    }
    decoder.end()
    await outcome
  } catch (err) {
    await decoder.kill()
    throw err
  }
  return concatPcm(parts)
}

async function* slices(
  input: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  if (input instanceof Uint8Array) {
    for (let at = 0; at < input.length; at += SLICE_BYTES) yield input.subarray(at, at + SLICE_BYTES)
    return
  }
  for await (const chunk of input) yield chunk
}
