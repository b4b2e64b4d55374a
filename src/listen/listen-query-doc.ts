import { KEYWORD_LIMITS } from './listen-options.js'

type JsonSchema = Record<string, unknown>

const bool = (description: string): JsonSchema => ({ type: 'string', enum: ['true', 'false'], description })
const repeated = (description: string): JsonSchema => ({
  type: 'array',
  items: { type: 'string' },
  description,
})

/**
 * The query options of `/v1/listen`, pre-recorded and live, for the OpenAPI document (docs/openapi.md); the
 * parser is `parseListenOptions` (listen-options.ts): a parameter added there belongs here too. Options
 * Deepgram has and Earmark does not act on are accepted and ignored (docs/speech.md), so they are not listed.
 */
export function listenQueryDoc(transport: 'prerecorded' | 'live'): JsonSchema {
  const common: Record<string, JsonSchema> = {
    model: {
      type: 'string',
      description: 'A Deepgram model name (`nova-3`, …); picks the engine that serves it.',
    },
    language: { type: 'string', default: 'en', description: 'BCP-47; the engine hears English.' },
    punctuate: bool('Punctuation and capitals, approximated (docs/speech.md).'),
    smart_format: bool('Formatting, as `punctuate`.'),
    diarize: bool('Every word is speaker 0: there is no diarizer (docs/deepgram-compat.md §6.1).'),
    keywords: repeated(
      `\`word\` or \`word:intensifier\` (-100 to 100), repeated; up to ${KEYWORD_LIMITS.count} with \`keyterm\`.`,
    ),
    keyterm: repeated('A phrase to favour, repeated.'),
    tag: repeated('Free tags recorded with the usage.'),
    encoding: { type: 'string', description: 'For headerless audio: `linear16`, `mulaw`, `alaw`, …' },
    sample_rate: { type: 'integer', minimum: 1000, maximum: 192_000, description: 'For headerless audio.' },
    channels: { type: 'integer', minimum: 1, maximum: 8, default: 1 },
  }
  if (transport === 'prerecorded') {
    return {
      type: 'object',
      properties: {
        ...common,
        detect_language: {
          type: 'array',
          items: { type: 'string' },
          description:
            '`true`, `false` or language codes, repeated; settles on `en` (docs/deepgram-compat.md §6.1).',
        },
        utterances: bool('Adds `results.utterances`.'),
        paragraphs: bool('Adds paragraphs to each alternative.'),
        callback: { type: 'string', description: 'Refused with 400: Earmark answers in the request.' },
      },
    }
  }
  return {
    type: 'object',
    properties: {
      ...common,
      interim_results: bool('Sends interim `Results` before the final ones.'),
      endpointing: {
        type: 'string',
        description: 'Milliseconds of silence that end an utterance, or `false`.',
      },
      utterance_end_ms: {
        type: 'integer',
        minimum: 1,
        maximum: 60_000,
        description: 'Sends `UtteranceEnd`.',
      },
      vad_events: bool('Sends `SpeechStarted`.'),
      detect_language: {
        type: 'array',
        items: { type: 'string' },
        description:
          'Deepgram detects languages on pre-recorded audio only; here every word gets `language: "en"`.',
        'x-earmark': true,
      },
    },
  }
}
