import { invalidField } from '../errors.js'

/** The PCM every decoder produces: signed 16-bit little-endian mono, at this rate unless told otherwise. */
export const PCM_SAMPLE_RATE = 16000

/** Bytes a decoder may hold for ffmpeg before it fails with `BACKLOG_FULL`. */
export const DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024

/**
 * Headerless encodings: the client must say the rate and channel count (docs/deepgram-compat.md §6, §7.1).
 */
export const RAW_ENCODINGS = ['linear16', 'mulaw', 'alaw'] as const
export type RawEncoding = (typeof RAW_ENCODINGS)[number]

/** Encodings that arrive in a container; the container itself is recognised from the bytes. */
export const CONTAINER_ENCODINGS = ['opus', 'ogg-opus', 'flac', 'mp3'] as const
export type ContainerEncoding = (typeof CONTAINER_ENCODINGS)[number]

/** What the client sends. */
export type AudioFormat =
  | {
      kind: 'raw'
      encoding: RawEncoding
      /** Hz */
      sampleRate: number
      /** Interleaved channels; more than one is mixed down to mono. */
      channels: number
    }
  | {
      kind: 'container'
      /** The client's `encoding`, used only when the bytes do not name their container. */
      hint: ContainerEncoding | null
    }

/** Options of `createAudioDecoder` and `decodeAll`. */
export interface AudioDecoderOptions {
  format: AudioFormat
  /** The PCM rate to produce, Hz. Default `PCM_SAMPLE_RATE` (16000). */
  sampleRate?: number
  /** The ffmpeg binary. Default `ffmpeg` (found on PATH). */
  ffmpegPath?: string
  /** Bytes queued for ffmpeg beyond which the decoder fails with `BACKLOG_FULL`. Default 8 MiB. */
  maxPendingBytes?: number
}

/** Audio any container format ffmpeg recognises, sniffed from the first bytes. */
export const AUTODETECT: AudioFormat = { kind: 'container', hint: null }

const MIN_RATE = 1000
const MAX_RATE = 384000
const MAX_CHANNELS = 8

type Query = Readonly<Record<string, unknown>> | URLSearchParams

/**
 * Reads Deepgram's `encoding`, `sample_rate` and `channels` query parameters (docs/deepgram-compat.md §6,
 * §7.1) into decoder options. Raw encodings need `sample_rate`; containerised audio ignores `sample_rate` and
 * `channels` (they are still checked, so a typo is reported rather than silently dropped).
 * @throws ApiError `INVALID_FIELD` naming the parameter at fault.
 */
export function parseAudioOptions(query: Query): AudioDecoderOptions {
  const encoding = single(query, 'encoding')?.toLowerCase()
  const sampleRate = integer(query, 'sample_rate', MIN_RATE, MAX_RATE)
  const channels = integer(query, 'channels', 1, MAX_CHANNELS)
  if (encoding === undefined || encoding === '') return { format: AUTODETECT }
  if (isOneOf(RAW_ENCODINGS, encoding)) {
    if (sampleRate === undefined) {
      throw invalidField('sample_rate', `is required with encoding=${encoding}`)
    }
    return { format: { kind: 'raw', encoding, sampleRate, channels: channels ?? 1 } }
  }
  if (isOneOf(CONTAINER_ENCODINGS, encoding)) return { format: { kind: 'container', hint: encoding } }
  throw invalidField(
    'encoding',
    `must be one of ${[...RAW_ENCODINGS, ...CONTAINER_ENCODINGS].join(', ')}, or left out for containerised audio`,
  )
}

function isOneOf<T extends string>(list: readonly T[], value: string): value is T {
  return (list as readonly string[]).includes(value)
}

function single(query: Query, name: string): string | undefined {
  if (query instanceof URLSearchParams) {
    const all = query.getAll(name)
    if (all.length > 1) throw invalidField(name, 'must be given once')
    return all[0]
  }
  const value = query[name]
  if (value === undefined || value === null) return undefined
  if (Array.isArray(value)) throw invalidField(name, 'must be given once')
  if (typeof value === 'string') return value
  if (typeof value === 'number' && Number.isFinite(value)) return String(value)
  throw invalidField(name, 'must be a string')
}

function integer(query: Query, name: string, min: number, max: number): number | undefined {
  const text = single(query, name)
  if (text === undefined || text === '') return undefined
  const value = /^\d{1,7}$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= min && value <= max)) throw invalidField(name, `must be an integer from ${min} to ${max}`)
  return value
}
