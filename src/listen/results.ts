import { randomUUID } from 'node:crypto'
import type { Engine, FinalHypothesis, Hypothesis, Word } from '../engines/engine.js'

/** The model fields Deepgram puts in metadata. */
function modelInfo(engine: Engine) {
  const { name, version, arch } = engine.model
  return { name, version, arch }
}

/**
 * Best-effort punctuation (`punctuate`, `smart_format`): the engine gives bare lower-case words, so an
 * utterance becomes one sentence: capitalised first word, full stop after the last, and `i` as `I`.
 * No commas, question marks or numerals: PocketSphinx gives nothing to base them on.
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

function alternative(h: Hypothesis, punctuate: boolean) {
  const punctuated = punctuate ? punctuatedWords(h.words) : undefined
  return {
    transcript: punctuated ? punctuated.join(' ') : h.transcript,
    confidence: round(h.confidence),
    words: h.words.map((w, i) => ({
      word: w.word,
      start: round(w.start),
      end: round(w.end),
      confidence: round(w.confidence),
      ...(punctuated ? { punctuated_word: punctuated[i] } : {}),
    })),
  }
}

export interface ResultsContext {
  requestId: string
  engine: Engine
  punctuate: boolean
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
    channel: { alternatives: [alternative(h, ctx.punctuate)] },
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

/** The pre-recorded response body (docs/deepgram-compat.md §6). */
export function prerecordedResponse(
  utterances: readonly FinalHypothesis[],
  ctx: {
    requestId: string
    engine: Engine
    sha256: string
    created: string
    duration: number
    punctuate: boolean
    utterances: boolean
    paragraphs: boolean
    tags: string[]
  },
) {
  const spoken = utterances.filter((u) => u.words.length > 0)
  const words = spoken.flatMap((u) => alternative(u, ctx.punctuate).words)
  const transcript = spoken.map((u) => alternative(u, ctx.punctuate).transcript).join(' ')
  const confidence = words.length ? round(words.reduce((a, w) => a + w.confidence, 0) / words.length) : 0
  const alt: Record<string, unknown> = { transcript, confidence, words }
  if (ctx.paragraphs && spoken.length > 0) {
    const first = spoken[0]
    const last = spoken.at(-1)
    alt.paragraphs = {
      transcript: `\n${transcript}`,
      paragraphs: [
        {
          sentences: spoken.map((u) => ({
            text: alternative(u, true).transcript,
            start: round(u.start),
            end: round(u.end),
          })),
          start: round(first?.words[0]?.start ?? 0),
          end: round(last?.words.at(-1)?.end ?? 0),
          num_words: words.length,
        },
      ],
    }
  }
  return {
    metadata: {
      ...metadataFields(ctx),
      ...(ctx.tags.length ? { tags: ctx.tags } : {}),
    },
    results: {
      channels: [{ alternatives: [alt] }],
      ...(ctx.utterances
        ? {
            utterances: spoken.map((u) => {
              const a = alternative(u, ctx.punctuate)
              return {
                start: round(u.words[0]?.start ?? u.start),
                end: round(u.words.at(-1)?.end ?? u.end),
                confidence: a.confidence,
                channel: 0,
                transcript: a.transcript,
                words: a.words,
                id: randomUUID(),
              }
            }),
          }
        : {}),
    },
  }
}
