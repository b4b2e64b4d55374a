import type { FinalHypothesis, KeywordBoost, Transcription } from '../engine.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'
import { createSegmenter } from './pocketsphinx-segmenter.js'

export interface TranscribeOptions {
  endpointingMs: number | false
  maxUtteranceMs: number
  sliceSamples: number
  /** Words and phrases to favour (Deepgram `keywords`, `keyterm`); none: the base search. */
  keywords?: readonly KeywordBoost[]
  /** Checked between slices: once aborted, decoding stops and the promise rejects with the reason. */
  signal?: AbortSignal
  /** Set to true when a native call failed: the decoder must not be reused. */
  health?: { broken: boolean }
}

/**
 * Decodes a whole recording on one decoder with the live segmentation (same VAD endpoints and cuts), as one
 * client stream. Utterances in which nothing was recognised are left out. `pcm` may be one buffer (read in
 * place) or chunks pulled one at a time (at most one slice is held here), so a long file streams through.
 * When the source throws or the signal aborts, the open utterance is closed so the decoder goes back to
 * the pool clean, and the source's error is rethrown; a native failure sets `options.health.broken`.
 */
export async function transcribeWithDecoder(
  decoder: PocketsphinxDecoder,
  pcm: Int16Array | AsyncIterable<Int16Array>,
  options: TranscribeOptions,
): Promise<Transcription> {
  const utterances: FinalHypothesis[] = []
  const segmenter = createSegmenter(
    decoder,
    {
      interimResults: false,
      endpointingMs: options.endpointingMs,
      maxUtteranceMs: options.maxUtteranceMs,
      ...(options.keywords ? { keywords: options.keywords } : {}),
    },
    {
      onInterim: () => {},
      onSpeechStarted: () => {},
      onFinal: (h) => {
        if (h.words.length > 0) utterances.push(h)
      },
    },
  )
  const native = async (step: () => Promise<void>) => {
    try {
      await step()
    } catch (err) {
      if (options.health) options.health.broken = true
      throw err
    }
  }
  await native(() => segmenter.begin())
  let samples = 0
  const feed = async (slice: Int16Array) => {
    options.signal?.throwIfAborted()
    samples += slice.length
    await native(() => segmenter.feed(slice))
  }
  try {
    for await (const slice of slices(pcm, options.sliceSamples)) await feed(slice)
  } catch (err) {
    if (options.health?.broken) throw err
    // The source failed (or the caller gave up): leave no utterance open on a decoder that is fine.
    await native(() => segmenter.flush())
    throw err
  }
  await native(() => segmenter.flush())
  return { utterances, duration: samples / decoder.settings.sampleRate }
}

/** `pcm` cut into slices of `size` samples (the last one shorter); a buffer is sliced in place. */
async function* slices(
  pcm: Int16Array | AsyncIterable<Int16Array>,
  size: number,
): AsyncGenerator<Int16Array> {
  if (pcm instanceof Int16Array) {
    for (let offset = 0; offset < pcm.length; offset += size) yield pcm.subarray(offset, offset + size)
    return
  }
  let slice = new Int16Array(size)
  let filled = 0
  for await (const chunk of pcm) {
    let at = 0
    while (at < chunk.length) {
      const take = Math.min(size - filled, chunk.length - at)
      slice.set(chunk.subarray(at, at + take), filled)
      filled += take
      at += take
      if (filled === size) {
        yield slice
        // A fresh buffer each time: the decoder reads a slice in place on the threadpool.
        slice = new Int16Array(size)
        filled = 0
      }
    }
  }
  if (filled > 0) yield slice.subarray(0, filled)
}
