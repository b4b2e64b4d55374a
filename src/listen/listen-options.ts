import { ApiError, invalidField } from '../errors.js'
import { isListenModel } from './listen-models.js'

/**
 * Query options of `/v1/listen` that Earmark acts on (docs/deepgram-compat.md §6, §7.1). Others are accepted
 * and ignored.
 */
export interface ListenOptions {
  model: string | null
  language: string
  interimResults: boolean
  /** Milliseconds of silence that end an utterance, or false. */
  endpointing: number | false
  /** Send UtteranceEnd after this many ms without a word (needs interim results), or null. */
  utteranceEndMs: number | null
  vadEvents: boolean
  punctuate: boolean
  smartFormat: boolean
  utterances: boolean
  paragraphs: boolean
  tags: string[]
  /** Raw audio description, or null for containerised audio (detected from the bytes). */
  encoding: string | null
  sampleRate: number | null
  channels: number
  callback: string | null
}

type Query = Record<string, unknown>

function single(query: Query, field: string): string | undefined {
  const v = query[field]
  if (v === undefined) return undefined
  if (Array.isArray(v)) return single({ [field]: v.at(-1) }, field)
  if (typeof v !== 'string') throw invalidField(field, 'must be a string')
  return v
}

function bool(query: Query, field: string, fallback: boolean): boolean {
  const v = single(query, field)
  if (v === undefined || v === '') return fallback
  if (v === 'true') return true
  if (v === 'false') return false
  throw invalidField(field, "must be 'true' or 'false'")
}

function int(query: Query, field: string, min: number, max: number): number | undefined {
  const v = single(query, field)
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max)
    throw invalidField(field, `must be an integer from ${min} to ${max}`)
  return n
}

function list(query: Query, field: string): string[] {
  const v = query[field]
  if (v === undefined) return []
  const values = Array.isArray(v) ? v : [v]
  return values.map((x) => {
    if (typeof x !== 'string' || x.length > 128)
      throw invalidField(field, 'must be strings of at most 128 characters')
    return x
  })
}

/**
 * Validates the query of a `/v1/listen` request or upgrade; a bad value is a 400 naming the field, a model
 * Earmark does not serve a 400 `MODEL_NOT_FOUND` (both before anything is metered).
 */
export function parseListenOptions(query: Query): ListenOptions {
  const model = single(query, 'model') || null
  if (model !== null && !isListenModel(model)) throw new ApiError('MODEL_NOT_FOUND')
  const endpointingRaw = single(query, 'endpointing')
  let endpointing: number | false = 10
  if (endpointingRaw === 'false') endpointing = false
  else if (endpointingRaw !== undefined && endpointingRaw !== '' && endpointingRaw !== 'true') {
    endpointing = int(query, 'endpointing', 0, 60_000) ?? 10
  }
  const interimResults = bool(query, 'interim_results', false)
  const utteranceEndMs = int(query, 'utterance_end_ms', 1, 60_000) ?? null
  const punctuate = bool(query, 'punctuate', false)
  const smartFormat = bool(query, 'smart_format', false)
  return {
    model,
    language: single(query, 'language') || 'en',
    interimResults,
    endpointing,
    utteranceEndMs,
    vadEvents: bool(query, 'vad_events', false),
    punctuate: punctuate || smartFormat,
    smartFormat,
    utterances: bool(query, 'utterances', false),
    paragraphs: bool(query, 'paragraphs', false),
    tags: list(query, 'tag'),
    encoding: single(query, 'encoding') || null,
    sampleRate: int(query, 'sample_rate', 1000, 192_000) ?? null,
    channels: int(query, 'channels', 1, 8) ?? 1,
    callback: single(query, 'callback') || null,
  }
}
