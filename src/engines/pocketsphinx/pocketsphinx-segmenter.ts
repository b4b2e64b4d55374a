import type { KeywordBoost, StreamSink } from '../engine.js'
import type { RawSegment } from './pocketsphinx-binding.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'
import { segmentsToWords, toHypothesis } from './pocketsphinx-words.js'

/** How a stream (or a file) is cut into utterances. */
export interface SegmenterOptions {
  interimResults: boolean
  /**
   * Silence that ends an utterance, ms. The VAD only notices the end of speech after
   * `vadPostspeechFrames` (500 ms by default), so the effective value is max(endpointingMs, that).
   * false: no endpoints; utterances end on finalize, at a VAD pause once they are longer than half of
   * `maxUtteranceMs`, or at `maxUtteranceMs`.
   */
  endpointingMs: number | false
  /** Longer utterances are cut (a final with speechFinal false): the final pass grows with length. */
  maxUtteranceMs: number
  /** Words and phrases to favour in this stream (Deepgram `keywords`, `keyterm`); none: the base search. */
  keywords?: readonly KeywordBoost[]
}

/** Drives one decoder through a client stream: VAD edges become SpeechStarted, interims and finals. */
export interface Segmenter {
  /** Starts a client stream: word times restart at 0. */
  begin(): Promise<void>
  /** Decodes one slice (about 100 ms) and delivers what it causes. */
  feed(pcm: Int16Array): Promise<void>
  /** Ends the current utterance (if any audio came since the last final) and always delivers one final with fromFinalize. */
  finalize(): Promise<void>
  /** End of stream: delivers a final if speech is pending, and leaves no utterance open. */
  flush(): Promise<void>
  /** Samples decoded since `begin`. */
  readonly position: number
}

/** The best path currently ends in silence of at least 50 ms: a safe place to cut. */
function endsInPause(segments: readonly RawSegment[]): boolean {
  const last = segments.at(-1)
  return last !== undefined && /^<\/?s(il)?>$/.test(last.word) && last.endFrame - last.startFrame >= 4
}

export type SegmenterEvents = Pick<StreamSink, 'onInterim' | 'onFinal' | 'onSpeechStarted'>

export function createSegmenter(
  decoder: PocketsphinxDecoder,
  options: SegmenterOptions,
  events: SegmenterEvents,
): Segmenter {
  const { sampleRate, frameRate, vadPostspeechFrames, vadPrespeechFrames } = decoder.settings
  const samplesPerFrame = sampleRate / frameRate
  const maxSamples = (options.maxUtteranceMs / 1000) * sampleRate
  const softCutSamples = maxSamples * 0.75
  const endpointSamples =
    options.endpointingMs === false ? Number.POSITIVE_INFINITY : (options.endpointingMs / 1000) * sampleRate
  const seconds = (samples: number) => samples / sampleRate

  let position = 0
  let utteranceOpen = false
  let utteranceStart = 0
  /** The VAD rose at least once since the last final. */
  let utteranceHasSpeech = false
  let firstSpeech = 0
  let inSpeech = false
  /** Where the current silence began (estimated), while the utterance waits for its endpoint. */
  let silenceStart: number | null = null
  /** After a cut in the middle of speech the VAD restarts; its next rise is not a new onset. */
  let cutInSpeech = false
  let lastInterim = ''

  const endUtterance = async (speechFinal: boolean, fromFinalize: boolean) => {
    const segments = await decoder.endUtterance()
    utteranceOpen = false
    const words = segmentsToWords(segments, frameRate, true)
    const hypothesis = toHypothesis(words, seconds(utteranceStart), seconds(position))
    cutInSpeech = inSpeech
    inSpeech = false
    utteranceStart = position
    utteranceHasSpeech = false
    silenceStart = null
    lastInterim = ''
    events.onFinal({ ...hypothesis, speechFinal, fromFinalize })
  }

  const emitInterim = (segments: readonly RawSegment[]) => {
    // Mid-utterance the segment iterator walks the backpointer table: word times are usable, but there is
    // no posterior yet, so interim words carry confidence 0 ("not computed"), not PocketSphinx's placeholder 1.
    const words = segmentsToWords(segments, frameRate, false)
    const hypothesis = toHypothesis(words, seconds(utteranceStart), seconds(position))
    if (hypothesis.transcript === '' || hypothesis.transcript === lastInterim) return
    lastInterim = hypothesis.transcript
    events.onInterim(hypothesis)
  }

  return {
    get position() {
      return position
    },
    async begin() {
      await decoder.startStream(options.keywords)
    },
    async feed(pcm) {
      if (pcm.length === 0) return
      if (!utteranceOpen) {
        await decoder.startUtterance()
        utteranceOpen = true
      }
      const sliceStart = position
      const speech = await decoder.process(pcm)
      position += pcm.length

      if (speech && !inSpeech) {
        if (!utteranceHasSpeech) firstSpeech = sliceStart
        utteranceHasSpeech = true
        silenceStart = null
        // The VAD rose somewhere in this slice and hands the search the vad_prespeech frames before that
        // point, so no word can start before sliceStart - prespeech: an early estimate of the onset (by
        // 0.1-0.3 s with 100 ms slices) that never comes after the first word.
        const onset = Math.max(utteranceStart, sliceStart - vadPrespeechFrames * samplesPerFrame)
        // ps_start_utt resets the VAD, so after a cut in the middle of speech it rises again within a few
        // frames: that is the same speech going on, not a new onset.
        const resumed = cutInSpeech && sliceStart - utteranceStart < sampleRate
        if (!resumed) events.onSpeechStarted(seconds(onset))
        cutInSpeech = false
      } else if (!speech && inSpeech) {
        // The VAD falls after vad_postspeech frames of silence.
        silenceStart = Math.max(utteranceStart, position - vadPostspeechFrames * samplesPerFrame)
      }
      inSpeech = speech
      if (!utteranceHasSpeech) return

      const age = position - firstSpeech
      if (!speech && silenceStart !== null && position - silenceStart >= endpointSamples) {
        await endUtterance(true, false)
      } else if (age >= maxSamples || (options.endpointingMs === false && !speech && age >= maxSamples / 2)) {
        await endUtterance(false, false)
      } else if (speech && age >= softCutSamples) {
        // Close to the cap: cut at the first pause the best path shows (even one too short for the VAD),
        // rather than in the middle of a word at the cap.
        const segments = await decoder.partial()
        if (endsInPause(segments)) await endUtterance(false, false)
        else if (options.interimResults) emitInterim(segments)
      } else if (options.interimResults && speech) {
        emitInterim(await decoder.partial())
      }
    },
    async finalize() {
      if (utteranceOpen && position > utteranceStart) {
        await endUtterance(false, true)
        return
      }
      // Nothing since the last final: Deepgram still answers a Finalize with (empty) Results.
      const at = seconds(position)
      events.onFinal({ ...toHypothesis([], at, at), speechFinal: false, fromFinalize: true })
    },
    async flush() {
      if (!utteranceOpen) return
      if (utteranceHasSpeech) {
        await endUtterance(false, false)
        return
      }
      await decoder.endUtterance()
      utteranceOpen = false
      utteranceStart = position
    },
  }
}
