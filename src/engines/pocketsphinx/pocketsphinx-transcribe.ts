import type { FinalHypothesis, Transcription } from '../engine.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'
import { createSegmenter } from './pocketsphinx-segmenter.js'

export interface TranscribeOptions {
  endpointingMs: number | false
  maxUtteranceMs: number
  sliceSamples: number
}

/**
 * Decodes a whole buffer on one decoder with the live segmentation (same VAD endpoints and cuts), as one
 * client stream. Utterances in which nothing was recognised are left out.
 */
export async function transcribeWithDecoder(
  decoder: PocketsphinxDecoder,
  pcm: Int16Array,
  options: TranscribeOptions,
): Promise<Transcription> {
  const utterances: FinalHypothesis[] = []
  const segmenter = createSegmenter(
    decoder,
    { interimResults: false, endpointingMs: options.endpointingMs, maxUtteranceMs: options.maxUtteranceMs },
    {
      onInterim: () => {},
      onSpeechStarted: () => {},
      onFinal: (h) => {
        if (h.words.length > 0) utterances.push(h)
      },
    },
  )
  await segmenter.begin()
  for (let offset = 0; offset < pcm.length; offset += options.sliceSamples) {
    await segmenter.feed(pcm.subarray(offset, offset + options.sliceSamples))
  }
  await segmenter.flush()
  return { utterances, duration: pcm.length / decoder.settings.sampleRate }
}
