import { AudioDecodeError } from './audio-decode-error.js'
import { createAudioDecoder } from './audio-decoder.js'
import type { AudioDecoderOptions } from './audio-format.js'
import { concatPcm } from './pcm.js'

/** Options of `decodeAll` and `decodeStream`. */
export interface DecodeAllOptions extends AudioDecoderOptions {
  /** Fail with `TOO_LONG` once more samples than this were decoded. Default: no cap. */
  maxSamples?: number
}

type EncodedInput = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>

/** Bytes handed to the decoder at a time when the input is one buffer. */
const SLICE_BYTES = 64 * 1024

/**
 * Decodes a recording to PCM as a pull stream: encoded bytes are read from `input` only when every PCM
 * chunk decoded so far has been taken, so a slow consumer (a speech decoder) paces the reading and the
 * decoding, and memory holds at most what one input chunk decodes to plus ffmpeg's pipe buffers, whatever
 * the length of the recording. Nothing runs (no ffmpeg process) before the first `next()`.
 * @throws AudioDecodeError when the audio cannot be decoded or passes `maxSamples`; an error thrown by
 * `input` itself (an aborted upload) is rethrown as is. However the generator ends (done, thrown, or
 * closed early by its consumer), the ffmpeg process is gone and `input` was closed first.
 */
export async function* decodeStream(
  input: EncodedInput,
  options: DecodeAllOptions,
): AsyncGenerator<Int16Array> {
  const decoder = createAudioDecoder(options)
  const ready: Int16Array[] = []
  let samples = 0
  let ended = false
  let failure: AudioDecodeError | undefined
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  decoder.onPcm((pcm) => {
    samples += pcm.length
    if (options.maxSamples !== undefined && samples > options.maxSamples) {
      failure ??= new AudioDecodeError('TOO_LONG')
      void decoder.kill()
    } else {
      ready.push(pcm)
    }
    notify()
  })
  decoder.onEnd(() => {
    ended = true
    notify()
  })
  decoder.onError((err) => {
    failure ??= err
    notify()
  })
  const source = slices(input)[Symbol.asyncIterator]()
  let inputDone = false
  try {
    for (;;) {
      if (failure) throw failure
      const pcm = ready.shift()
      if (pcm) {
        yield pcm
        continue
      }
      if (ended) return
      if (!inputDone && decoder.state === 'open') {
        const next = await source.next()
        if (next.done) {
          inputDone = true
          decoder.end()
        } else if (!decoder.write(next.value)) {
          await decoder.waitForDrain()
        }
        continue
      }
      await new Promise<void>((resolve) => {
        wake = resolve
      })
    }
  } finally {
    if (!inputDone) {
      inputDone = true
      await source.return?.(undefined)
    }
    if (!ended) await decoder.kill()
  }
}

/**
 * Decodes a whole recording to one PCM buffer: `decodeStream` collected. Only for audio known to be short
 * (tests, synthesised speech): pre-recorded requests stream instead.
 * @throws as `decodeStream`.
 */
export async function decodeAll(input: EncodedInput, options: DecodeAllOptions): Promise<Int16Array> {
  const parts: Int16Array[] = []
  for await (const pcm of decodeStream(input, options)) parts.push(pcm)
  return concatPcm(parts)
}

async function* slices(input: EncodedInput): AsyncGenerator<Uint8Array> {
  if (input instanceof Uint8Array) {
    for (let at = 0; at < input.length; at += SLICE_BYTES) yield input.subarray(at, at + SLICE_BYTES)
    return
  }
  for await (const chunk of input) yield chunk
}
