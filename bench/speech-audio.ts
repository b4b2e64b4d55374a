// The speech benchmark's test audio: flite sentences made at bench time (never committed), with pauses
// between them, as 16 kHz mono s16 PCM.
import {
  concatPcm,
  type FliteVoice,
  SAMPLE_RATE,
  silence,
  speech,
  speechBounds,
} from '../test/helpers/speech.js'

/** Sentences and voices (flite's slt and rms, which PocketSphinx recognises well: pocketsphinx-notes.md §4). */
export const SENTENCES: readonly { text: string; voice: FliteVoice }[] = [
  { text: 'the quick brown fox jumps over the lazy dog', voice: 'slt' },
  { text: 'we will meet at the station at half past nine tomorrow morning', voice: 'rms' },
  { text: 'the weather today is cold and windy with a chance of rain in the evening', voice: 'slt' },
  { text: 'she opened the window and looked out at the quiet street below', voice: 'rms' },
  { text: 'turn left at the next corner and go straight for two miles', voice: 'slt' },
  { text: 'he said that the report would be ready by the end of the week', voice: 'rms' },
]

/** The clients send audio in chunks of this many samples (100 ms); every segment is a whole number of them. */
export const CHUNK_SAMPLES = SAMPLE_RATE / 10

const LEAD_SECONDS = 0.2
const PAUSE_SECONDS = 0.5

/** One sentence in the corpus: its words and where its speech lies, seconds from the start of the audio. */
export interface Utterance {
  text: string
  voice: FliteVoice
  start: number
  end: number
}

/** Audio and the utterances in it. */
export interface SpeechAudio {
  pcm: Int16Array
  seconds: number
  utterances: Utterance[]
  /** All sentences in order: the reference for the word error rate. */
  reference: string
}

/** Silence, one sentence, a pause; padded with silence to a whole number of chunks. */
interface Segment {
  pcm: Int16Array
  utterance: Utterance
}

export interface Corpus extends SpeechAudio {
  segments: Segment[]
}

/** Synthesises the sentences (flite, then sox to 16 kHz; about 0.1 s each) and joins them with pauses. */
export async function buildCorpus(): Promise<Corpus> {
  const segments: Segment[] = []
  for (const { text, voice } of SENTENCES) {
    const spoken = await speech(text, voice)
    const bounds = speechBounds(spoken)
    const raw = concatPcm(silence(LEAD_SECONDS), spoken, silence(PAUSE_SECONDS))
    const padded = new Int16Array(Math.ceil(raw.length / CHUNK_SAMPLES) * CHUNK_SAMPLES)
    padded.set(raw)
    segments.push({
      pcm: padded,
      utterance: { text, voice, start: LEAD_SECONDS + bounds.start, end: LEAD_SECONDS + bounds.end },
    })
  }
  return { ...joinSegments(segments), segments }
}

function joinSegments(segments: readonly Segment[]): SpeechAudio {
  const utterances: Utterance[] = []
  let offset = 0
  for (const s of segments) {
    utterances.push({ ...s.utterance, start: s.utterance.start + offset, end: s.utterance.end + offset })
    offset += s.pcm.length / SAMPLE_RATE
  }
  const pcm = concatPcm(...segments.map((s) => s.pcm))
  return {
    pcm,
    seconds: pcm.length / SAMPLE_RATE,
    utterances,
    reference: segments.map((s) => s.utterance.text).join(' '),
  }
}

/**
 * The corpus starting at segment `first` and wrapping around: concurrent streams get different sentences at
 * any moment, not the same work in lock-step. With `maxSeconds`, only as many whole segments as fit (at
 * least one), so no sentence is cut and the word error rate stays meaningful.
 */
export function rotateCorpus(
  corpus: Corpus,
  first: number,
  maxSeconds = Number.POSITIVE_INFINITY,
): SpeechAudio {
  const n = corpus.segments.length
  const order: Segment[] = []
  let seconds = 0
  for (let i = 0; i < n; i++) {
    const segment = corpus.segments[(first + i) % n]
    if (!segment) continue
    const length = segment.pcm.length / SAMPLE_RATE
    if (order.length > 0 && seconds + length > maxSeconds) break
    order.push(segment)
    seconds += length
  }
  return joinSegments(order)
}

/**
 * Chunk indexes inside each utterance's speech, at the given fractions of it (default: a third and two
 * thirds of the way through): where a client sends Finalize in the middle of speech.
 */
export function midUtteranceChunks(
  audio: SpeechAudio,
  fractions: readonly number[] = [1 / 3, 2 / 3],
): number[] {
  const chunks = audio.utterances.flatMap((u) =>
    fractions.map((f) => Math.floor(((u.start + f * (u.end - u.start)) * SAMPLE_RATE) / CHUNK_SAMPLES)),
  )
  return [...new Set(chunks)].sort((a, b) => a - b)
}

/** `pcm` cut into chunks of CHUNK_SAMPLES (views, no copies). */
export function chunksOf(pcm: Int16Array): Int16Array[] {
  const out: Int16Array[] = []
  for (let i = 0; i < pcm.length; i += CHUNK_SAMPLES) out.push(pcm.subarray(i, i + CHUNK_SAMPLES))
  return out
}
