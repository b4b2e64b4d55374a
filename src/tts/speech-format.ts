import { invalidField } from '../errors.js'

/** Output encodings of `POST /v1/speak` (docs/deepgram-compat.md §8.1). */
export const SPEECH_ENCODINGS = ['linear16', 'mulaw', 'alaw', 'mp3', 'flac', 'opus', 'aac'] as const
export type SpeechEncoding = (typeof SPEECH_ENCODINGS)[number]

/** `none` is headerless (raw) audio for the PCM encodings, and "the codec's own stream" for the others. */
export const SPEECH_CONTAINERS = ['wav', 'none', 'ogg'] as const
export type SpeechContainer = (typeof SPEECH_CONTAINERS)[number]

/** A fully resolved output format. */
export interface SpeechFormat {
  encoding: SpeechEncoding
  container: SpeechContainer
  /** Hz */
  sampleRate: number
  /** bit/s, for the lossy codecs; null for the others. */
  bitRate: number | null
  /** The response's `content-type`. */
  contentType: string
}

/** What a request may ask for; anything left out takes the encoding's default. */
export interface SpeechFormatRequest {
  encoding?: string
  container?: string
  sampleRate?: number
  bitRate?: number
}

interface Rule {
  /** The first is the default. */
  containers: readonly SpeechContainer[]
  /** The first is the default. */
  sampleRates: readonly number[]
  bitRate: { default: number; min: number; max: number; only?: readonly number[] } | null
}

/**
 * Deepgram's format combinations: which container, rate and bit rate go with each encoding. A request
 * outside them is a 400, as at Deepgram.
 */
const RULES: Record<SpeechEncoding, Rule> = {
  linear16: { containers: ['wav', 'none'], sampleRates: [24000, 8000, 16000, 32000, 48000], bitRate: null },
  mulaw: { containers: ['wav', 'none'], sampleRates: [8000, 16000], bitRate: null },
  alaw: { containers: ['wav', 'none'], sampleRates: [8000, 16000], bitRate: null },
  mp3: {
    containers: ['none'],
    sampleRates: [22050],
    bitRate: { default: 48000, min: 32000, max: 48000, only: [32000, 48000] },
  },
  flac: { containers: ['none'], sampleRates: [48000, 8000, 16000, 22050, 32000], bitRate: null },
  opus: { containers: ['ogg'], sampleRates: [48000], bitRate: { default: 12000, min: 4000, max: 650000 } },
  aac: { containers: ['none'], sampleRates: [22050], bitRate: { default: 48000, min: 4000, max: 192000 } },
}

/**
 * The encoding when the request names none. Deepgram's REST API answers MP3 (`audio/mpeg`) by default
 * (docs/deepgram-compat.md §8.1); note its newer docs say linear16/wav/24000 instead.
 */
export const DEFAULT_SPEECH_ENCODING: SpeechEncoding = 'mp3'

function isEncoding(value: string): value is SpeechEncoding {
  return (SPEECH_ENCODINGS as readonly string[]).includes(value)
}

function isContainer(value: string): value is SpeechContainer {
  return (SPEECH_CONTAINERS as readonly string[]).includes(value)
}

/**
 * Checks a requested output format against Deepgram's combinations and fills in the defaults.
 * @throws ApiError `INVALID_FIELD` naming `encoding`, `container`, `sample_rate` or `bit_rate`.
 */
export function resolveSpeechFormat(request: SpeechFormatRequest): SpeechFormat {
  const encoding = request.encoding?.toLowerCase() ?? DEFAULT_SPEECH_ENCODING
  if (!isEncoding(encoding)) throw invalidField('encoding', `must be one of ${SPEECH_ENCODINGS.join(', ')}`)
  const rule = RULES[encoding]
  const container = request.container?.toLowerCase() ?? rule.containers[0] ?? 'none'
  if (!isContainer(container) || !rule.containers.includes(container)) {
    throw invalidField('container', `must be ${rule.containers.join(' or ')} with encoding=${encoding}`)
  }
  const sampleRate = request.sampleRate ?? rule.sampleRates[0] ?? 24000
  if (!rule.sampleRates.includes(sampleRate)) {
    throw invalidField(
      'sample_rate',
      `must be one of ${rule.sampleRates.join(', ')} with encoding=${encoding}`,
    )
  }
  let bitRate: number | null = null
  if (rule.bitRate) {
    const { only, min, max } = rule.bitRate
    bitRate = request.bitRate ?? rule.bitRate.default
    if (only ? !only.includes(bitRate) : bitRate < min || bitRate > max) {
      const allowed = only ? only.join(' or ') : `from ${min} to ${max}`
      throw invalidField('bit_rate', `must be ${allowed} with encoding=${encoding}`)
    }
  } else if (request.bitRate !== undefined) {
    throw invalidField('bit_rate', `does not apply to encoding=${encoding}`)
  }
  return {
    encoding,
    container,
    sampleRate,
    bitRate,
    contentType: contentType(encoding, container, sampleRate),
  }
}

function contentType(encoding: SpeechEncoding, container: SpeechContainer, rate: number): string {
  switch (encoding) {
    case 'linear16':
      return container === 'wav' ? 'audio/wav' : `audio/l16;rate=${rate}`
    case 'mulaw':
    case 'alaw':
      return container === 'wav' ? 'audio/wav' : `audio/${encoding};rate=${rate}`
    case 'mp3':
      return 'audio/mpeg'
    case 'flac':
      return 'audio/flac'
    case 'opus':
      return 'audio/ogg;codecs=opus'
    case 'aac':
      return 'audio/aac'
  }
}
