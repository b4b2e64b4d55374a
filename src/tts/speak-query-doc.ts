import { MAX_SPEED, MIN_SPEED } from './speak-query.js'
import { SPEECH_CONTAINERS, SPEECH_ENCODINGS } from './speech-format.js'
import { DEFAULT_SPEAK_MODEL } from './tts-voices.js'

type JsonSchema = Record<string, unknown>

/**
 * The query options of `/v1/speak`, REST and live, for the OpenAPI document (docs/openapi.md); the parser is
 * `parseSpeakQuery` (speak-query.ts): a parameter added there belongs here too.
 */
export function speakQueryDoc(transport: 'rest' | 'live'): JsonSchema {
  const live = transport === 'live'
  return {
    type: 'object',
    properties: {
      model: {
        type: 'string',
        default: DEFAULT_SPEAK_MODEL,
        description: 'An Aura voice (docs/speech.md, "Models").',
      },
      encoding: {
        type: 'string',
        enum: live ? ['linear16', 'mulaw', 'alaw'] : [...SPEECH_ENCODINGS],
        default: live ? 'linear16' : 'mp3',
      },
      container: {
        type: 'string',
        enum: live ? ['none'] : [...SPEECH_CONTAINERS],
        description: 'Each encoding allows its own (docs/deepgram-compat.md §8.1).',
      },
      sample_rate: { type: 'integer', ...(live ? { default: 24_000 } : {}) },
      ...(live ? {} : { bit_rate: { type: 'integer' } }),
      speed: {
        type: 'number',
        minimum: MIN_SPEED,
        maximum: MAX_SPEED,
        default: 1,
        description: 'Speaking rate, pitch kept.',
      },
      tag: { type: 'array', items: { type: 'string' }, description: 'Free tags recorded with the usage.' },
      ...(live
        ? {}
        : { callback: { type: 'string', description: 'Refused with 400: Earmark answers in the request.' } }),
    },
  }
}
