import type { KeywordBoost } from '../engines/engine.js'
import { ApiError, invalidField } from '../errors.js'
import { isListenModel } from './listen-models.js'

/**
 * Query options of `/v1/listen` that Earmark acts on (docs/deepgram-compat.md §6, §7.1). Others are accepted
 * and ignored.
 */
export interface ListenOptions {
  model: string | null
  /**
   * The language to transcribe: `language`, or with `detect_language` the one detection settles on (Deepgram
   * lets detection override `language`; see {@link detectionLanguage}).
   */
  language: string
  /**
   * `detect_language`: null when off; else the languages detection may choose from, lower-case (empty: any).
   * Results then name `language` as the detected one (docs/deepgram-compat.md §6.1).
   */
  detectLanguage: string[] | null
  /** `diarize`: every word is labelled speaker 0 (one voice; docs/deepgram-compat.md §6.1). */
  diarize: boolean
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
  /** `keywords` (`word:intensifier`) and `keyterm` (phrases), in the order given (docs/speech.md "Keywords"). */
  keywords: KeywordBoost[]
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

/** Keywords and keyterms one request may give, together, and the longest one (characters). */
export const KEYWORD_LIMITS = { count: 100, length: 100, maxBoost: 100 } as const

/** The intensifier a keyword gets when it names none, and every keyterm (Deepgram boosts them by default). */
const DEFAULT_BOOST = 1

/**
 * `keywords=word[:intensifier]` and `keyterm=phrase`, repeated keys (docs/deepgram-compat.md §6.2). The
 * intensifier follows the last colon and may be negative or fractional (`kubernetes:2`, `um:-5`, `ok:0.5`).
 */
function keywordOptions(query: Query): KeywordBoost[] {
  const keywords = list(query, 'keywords').filter((v) => v.trim() !== '')
  const keyterms = list(query, 'keyterm').filter((v) => v.trim() !== '')
  if (keywords.length + keyterms.length > KEYWORD_LIMITS.count)
    throw invalidField('keywords', `at most ${KEYWORD_LIMITS.count} keywords and keyterms together`)
  const phrase = (field: string, value: string) => {
    const text = value.trim()
    const control = [...text].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)
    if (text.length > KEYWORD_LIMITS.length || control)
      throw invalidField(field, `must be printable and at most ${KEYWORD_LIMITS.length} characters`)
    return text
  }
  const out: KeywordBoost[] = []
  for (const value of keywords) {
    const colon = value.lastIndexOf(':')
    if (colon < 0) {
      out.push({ phrase: phrase('keywords', value), boost: DEFAULT_BOOST })
      continue
    }
    const raw = value.slice(colon + 1).trim()
    const boost = Number(raw)
    if (raw === '' || !Number.isFinite(boost) || Math.abs(boost) > KEYWORD_LIMITS.maxBoost)
      throw invalidField(
        'keywords',
        `the intensifier after ':' must be a number from -${KEYWORD_LIMITS.maxBoost} to ${KEYWORD_LIMITS.maxBoost}`,
      )
    const text = phrase('keywords', value.slice(0, colon))
    if (text === '') throw invalidField('keywords', 'must name a word before the intensifier')
    out.push({ phrase: text, boost })
  }
  for (const value of keyterms) out.push({ phrase: phrase('keyterm', value), boost: DEFAULT_BOOST })
  return out
}

/** What Earmark transcribes when a request names no language: its engines speak English. */
const DEFAULT_LANGUAGE = 'en'

/** A BCP-47-shaped tag (`en`, `en-US`, `zh-Hant-TW`), the only thing `detect_language` may list. */
const LANGUAGE_TAG = /^[a-z]{2,3}(-[a-z0-9]{2,8}){0,3}$/i

/**
 * `detect_language`: `true` lets detection choose any language, `false` (or nothing) turns it off, and
 * repeated language codes (`detect_language=en&detect_language=es`) restrict the choice to them
 * (docs/deepgram-compat.md §6.1).
 */
function detectLanguageOption(query: Query): string[] | null {
  const raw = query.detect_language
  if (raw === undefined) return null
  const values = (Array.isArray(raw) ? raw : [raw]).filter((v) => v !== '')
  if (values.length === 0) return null
  if (values.length > 16) throw invalidField('detect_language', 'may list at most 16 languages')
  const languages: string[] = []
  let on = false
  for (const v of values) {
    if (typeof v !== 'string')
      throw invalidField('detect_language', "must be 'true', 'false' or language codes")
    if (v === 'true') on = true
    else if (v !== 'false') {
      if (!LANGUAGE_TAG.test(v))
        throw invalidField('detect_language', "must be 'true', 'false' or language codes")
      languages.push(v.toLowerCase())
    }
  }
  return on || languages.length > 0 ? languages : null
}

/**
 * The language detection settles on. Earmark's engines hear English only, so detection finds English
 * whenever it may choose it; a restriction that leaves English out names its first language, which the
 * engine then transcribes or refuses (400, as for `language`).
 */
export function detectionLanguage(candidates: readonly string[]): string {
  if (candidates.length === 0) return DEFAULT_LANGUAGE
  if (candidates.some((c) => c === DEFAULT_LANGUAGE || c.startsWith(`${DEFAULT_LANGUAGE}-`)))
    return DEFAULT_LANGUAGE
  return candidates[0] ?? DEFAULT_LANGUAGE
}

/**
 * Validates the query of a `/v1/listen` request or upgrade; a bad value is a 400 naming the field, a model
 * Earmark does not serve a 400 `MODEL_NOT_FOUND` (both before anything is metered).
 */
export function parseListenOptions(
  query: Query,
  /** Models served beyond Earmark's own list (a relay's, by its configured patterns). */
  acceptModel?: (model: string) => boolean,
): ListenOptions {
  const model = single(query, 'model') || null
  if (model !== null && !isListenModel(model) && !(model.length <= 128 && acceptModel?.(model)))
    throw new ApiError('MODEL_NOT_FOUND')
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
  const detectLanguage = detectLanguageOption(query)
  // Deepgram: with detection on, the detected language overrides `language` (docs/deepgram-compat.md §6.1).
  const language = detectLanguage
    ? detectionLanguage(detectLanguage)
    : single(query, 'language') || DEFAULT_LANGUAGE
  return {
    model,
    language,
    detectLanguage,
    diarize: bool(query, 'diarize', false),
    interimResults,
    endpointing,
    utteranceEndMs,
    vadEvents: bool(query, 'vad_events', false),
    punctuate: punctuate || smartFormat,
    smartFormat,
    utterances: bool(query, 'utterances', false),
    paragraphs: bool(query, 'paragraphs', false),
    tags: list(query, 'tag'),
    keywords: keywordOptions(query),
    encoding: single(query, 'encoding') || null,
    sampleRate: int(query, 'sample_rate', 1000, 192_000) ?? null,
    channels: int(query, 'channels', 1, 8) ?? 1,
    callback: single(query, 'callback') || null,
  }
}
