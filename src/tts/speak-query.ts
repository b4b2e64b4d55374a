import { invalidField } from '../errors.js'
import { resolveSpeechFormat, type SpeechFormat } from './speech-format.js'
import { DEFAULT_SPEAK_MODEL, resolveVoice, type Voice } from './tts-voices.js'

/** What `POST /v1/speak`'s query string asks for (docs/deepgram-compat.md §8.1). */
export interface SpeakQuery {
  /** The model as the client named it (echoed in `dg-model-name`). */
  model: string
  voice: Voice
  format: SpeechFormat
  /** Deepgram's `tag` values (repeatable), for the usage record. */
  tags: string[]
  /** `speed`: the speaking-rate multiplier, {@link MIN_SPEED}..{@link MAX_SPEED}, default 1. */
  speed: number
}

/** Deepgram's range for `speed` (docs/deepgram-compat.md §8.1); outside it, 400. */
export const MIN_SPEED = 0.7
export const MAX_SPEED = 1.5

/**
 * Reads `model`, `encoding`, `container`, `sample_rate`, `bit_rate`, `speed` and `tag`. `mip_opt_out` and the SDKs' other
 * flags are ignored; `callback` is refused, since Earmark does not call back.
 * @throws ApiError `INVALID_FIELD` naming the parameter at fault.
 */
export function parseSpeakQuery(query: Readonly<Record<string, unknown>>): SpeakQuery {
  if (single(query, 'callback') !== undefined) throw invalidField('callback', 'is not supported by Earmark')
  const voice = resolveVoice(single(query, 'model'))
  const format = resolveSpeechFormat({
    encoding: single(query, 'encoding'),
    container: single(query, 'container'),
    sampleRate: integer(query, 'sample_rate'),
    bitRate: integer(query, 'bit_rate'),
  })
  return {
    model: single(query, 'model') ?? DEFAULT_SPEAK_MODEL,
    voice,
    format,
    tags: list(query, 'tag'),
    speed: speed(query),
  }
}

function speed(query: Readonly<Record<string, unknown>>): number {
  const text = single(query, 'speed')
  if (text === undefined) return 1
  const value = /^\d{1,3}(\.\d{1,20})?$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= MIN_SPEED && value <= MAX_SPEED)) {
    throw invalidField('speed', `must be a number from ${MIN_SPEED} to ${MAX_SPEED}`)
  }
  return value
}

function single(query: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const value = query[name]
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value === 'string') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  throw invalidField(name, 'must be given once')
}

function integer(query: Readonly<Record<string, unknown>>, name: string): number | undefined {
  const text = single(query, name)
  if (text === undefined) return undefined
  if (!/^\d{1,7}$/.test(text)) throw invalidField(name, 'must be a whole number')
  return Number(text)
}

function list(query: Readonly<Record<string, unknown>>, name: string): string[] {
  const value = query[name]
  if (value === undefined) return []
  return (Array.isArray(value) ? value : [value]).map((v: unknown) => {
    if (typeof v !== 'string' || v.length > 128)
      throw invalidField(name, 'must be strings of at most 128 characters')
    return v
  })
}
