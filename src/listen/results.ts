import { randomUUID } from 'node:crypto'
import type { Engine, FinalHypothesis, Hypothesis, Word } from '../engines/engine.js'
import type { ListenOptions } from './listen-options.js'

/** The model fields Deepgram puts in metadata. */
function modelInfo(engine: Engine) {
  const { name, version, arch } = engine.model
  return { name, version, arch }
}

/**
 * Best-effort punctuation (`punctuate`, `smart_format`) for an engine that gives bare lower-case words
 * (`formatting.punctuation` false, PocketSphinx): an utterance becomes one sentence: capitalised first word,
 * full stop after the last, and `i` as `I`. No commas, question marks or numerals: such an engine gives
 * nothing to base them on.
 */
export function punctuatedWords(words: readonly Word[]): string[] {
  return words.map((w, i) => {
    let text = w.word === 'i' || w.word.startsWith("i'") ? `I${w.word.slice(1)}` : w.word
    if (i === 0) text = text.charAt(0).toUpperCase() + text.slice(1)
    if (i === words.length - 1) text = `${text}.`
    return text
  })
}

const round = (n: number) => Math.round(n * 1000) / 1000

/** The listen options that shape a result (docs/deepgram-compat.md §6.1). */
export type ResultOptions = Pick<
  ListenOptions,
  'punctuate' | 'diarize' | 'detectLanguage' | 'language' | 'utterances' | 'paragraphs' | 'tags'
>

/**
 * With `diarize`, the speaker of every word: 0, since the engine has no diarizer and so reports one voice.
 * `speaker_confidence` (pre-recorded only, as at Deepgram) is 0: the label is an assumption, not a
 * measurement, and a client that weighs labels by it should not trust it (docs/deepgram-compat.md §6.1).
 */
const SPEAKER = 0
const SPEAKER_CONFIDENCE = 0

/** The words as written: the engine's own when it punctuates, else the best effort above. */
function writtenWords(engine: Engine, words: readonly Word[]): string[] {
  return engine.formatting.punctuation ? words.map((w) => w.punctuatedWord ?? w.word) : punctuatedWords(words)
}

function alternative(h: Hypothesis, engine: Engine, options: ResultOptions, live: boolean) {
  const punctuated = options.punctuate ? writtenWords(engine, h.words) : undefined
  // Live, Deepgram names languages per alternative and per word (its multilingual shape, §7.3); a
  // pre-recorded answer names the detected one per channel instead (§6.1).
  const languageTagged = live && options.detectLanguage !== null
  return {
    transcript: punctuated ? punctuated.join(' ') : h.transcript,
    confidence: round(h.confidence),
    ...(languageTagged ? { languages: h.words.length > 0 ? [options.language] : [] } : {}),
    words: h.words.map((w, i) => ({
      word: w.word,
      start: round(w.start),
      end: round(w.end),
      confidence: round(w.confidence),
      ...(punctuated ? { punctuated_word: punctuated[i] } : {}),
      ...(options.diarize
        ? live
          ? { speaker: SPEAKER }
          : { speaker: SPEAKER, speaker_confidence: SPEAKER_CONFIDENCE }
        : {}),
      ...(languageTagged ? { language: options.language } : {}),
    })),
  }
}

export interface ResultsContext {
  requestId: string
  engine: Engine
  options: ResultOptions
}

/** A live `Results` message (docs/deepgram-compat.md §7.3). */
export function resultsMessage(
  h: Hypothesis | FinalHypothesis,
  ctx: ResultsContext,
  final: { isFinal: boolean; speechFinal: boolean; fromFinalize: boolean },
) {
  return {
    type: 'Results',
    channel_index: [0, 1],
    duration: round(Math.max(0, h.end - h.start)),
    start: round(h.start),
    is_final: final.isFinal,
    speech_final: final.speechFinal,
    from_finalize: final.fromFinalize,
    channel: { alternatives: [alternative(h, ctx.engine, ctx.options, true)] },
    metadata: {
      request_id: ctx.requestId,
      model_info: modelInfo(ctx.engine),
      model_uuid: ctx.engine.model.uuid,
    },
  }
}

interface MetadataContext {
  requestId: string
  engine: Engine
  sha256: string
  created: string
  duration: number
}

/** The metadata fields a live `Metadata` message and a pre-recorded response share. */
function metadataFields(ctx: MetadataContext) {
  return {
    transaction_key: 'deprecated',
    request_id: ctx.requestId,
    sha256: ctx.sha256,
    created: ctx.created,
    duration: round(ctx.duration),
    channels: 1,
    models: [ctx.engine.model.uuid],
    model_info: { [ctx.engine.model.uuid]: modelInfo(ctx.engine) },
  }
}

/** The `Metadata` message sent before a stream closes. */
export function metadataMessage(ctx: MetadataContext) {
  return { type: 'Metadata', ...metadataFields(ctx) }
}

/**
 * With `detect_language`, the channel's detected language and Earmark's `language_confidence`: the mean word
 * confidence of the transcript (0 without words). The engine cannot tell languages apart; what it can say is
 * how well its one language's models explain the audio, which is low for speech in another language (and
 * for noise), so a client's threshold on it still rejects what was not understood (docs/deepgram-compat.md
 * §6.1).
 */
function detectedLanguage(options: ResultOptions, confidence: number) {
  if (options.detectLanguage === null) return {}
  return { detected_language: options.language, language_confidence: confidence }
}

/** The pre-recorded response body (docs/deepgram-compat.md §6). */
export function prerecordedResponse(
  utterances: readonly FinalHypothesis[],
  ctx: {
    requestId: string
    engine: Engine
    sha256: string
    created: string
    duration: number
    options: ResultOptions
  },
) {
  const { options, engine } = ctx
  const spoken = utterances.filter((u) => u.words.length > 0)
  const alternatives = spoken.map((u) => alternative(u, engine, options, false))
  const words = alternatives.flatMap((a) => a.words)
  const transcript = alternatives.map((a) => a.transcript).join(' ')
  const confidence = words.length ? round(words.reduce((a, w) => a + w.confidence, 0) / words.length) : 0
  const alt: Record<string, unknown> = { transcript, confidence, words }
  if (options.paragraphs && spoken.length > 0) {
    const first = spoken[0]
    const last = spoken.at(-1)
    // Deepgram prefixes each diarized paragraph with its speaker (`Speaker 0: …`) and labels it.
    alt.paragraphs = {
      transcript: `\n${options.diarize ? `Speaker ${SPEAKER}: ` : ''}${transcript}`,
      paragraphs: [
        {
          sentences: spoken.map((u) => ({
            text: alternative(u, engine, { ...options, punctuate: true }, false).transcript,
            start: round(u.start),
            end: round(u.end),
          })),
          start: round(first?.words[0]?.start ?? 0),
          end: round(last?.words.at(-1)?.end ?? 0),
          num_words: words.length,
          ...(options.diarize ? { speaker: SPEAKER } : {}),
        },
      ],
    }
  }
  return {
    metadata: {
      ...metadataFields(ctx),
      ...(options.tags.length ? { tags: options.tags } : {}),
    },
    results: {
      channels: [{ alternatives: [alt], ...detectedLanguage(options, confidence) }],
      ...(options.utterances
        ? {
            utterances: spoken.map((u, i) => {
              const a = alternatives[i] ?? alternative(u, engine, options, false)
              return {
                start: round(u.words[0]?.start ?? u.start),
                end: round(u.words.at(-1)?.end ?? u.end),
                confidence: a.confidence,
                channel: 0,
                transcript: a.transcript,
                words: a.words,
                ...(options.diarize ? { speaker: SPEAKER } : {}),
                id: randomUUID(),
              }
            }),
          }
        : {}),
    },
  }
}
