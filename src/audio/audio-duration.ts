import type { AudioFormat } from './audio-format.js'
import { type PcmLayout, parseWavHeader } from './wav-header.js'

const BYTES_PER_SAMPLE: Record<PcmLayout['demuxer'], number> = {
  u8: 1,
  s16le: 2,
  s24le: 3,
  s32le: 4,
  f32le: 4,
  f64le: 8,
  mulaw: 1,
  alaw: 1,
}

/**
 * Seconds of audio in a whole recording of `totalBytes` bytes starting with `head`, when its layout tells
 * without decoding: headerless PCM described by the query, or a PCM WAV (the smaller of the header's data
 * size and the bytes actually there). Undefined for compressed containers, which must be decoded to know.
 */
export function knownDuration(head: Uint8Array, totalBytes: number, format: AudioFormat): number | undefined {
  if (format.kind === 'raw') {
    const demuxer = format.encoding === 'linear16' ? 's16le' : format.encoding
    return seconds({ demuxer, sampleRate: format.sampleRate, channels: format.channels }, totalBytes)
  }
  const wav = parseWavHeader(head)
  if (wav.kind !== 'pcm') return undefined
  const present = Math.max(0, totalBytes - wav.dataOffset)
  return seconds(wav.layout, Math.min(present, wav.dataBytes ?? present))
}

function seconds(layout: PcmLayout, bytes: number): number {
  return bytes / (BYTES_PER_SAMPLE[layout.demuxer] * layout.channels * layout.sampleRate)
}
