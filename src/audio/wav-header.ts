/** How headerless PCM is laid out: ffmpeg's raw demuxer name, rate and interleaved channels. */
export interface PcmLayout {
  demuxer: 's16le' | 'u8' | 's24le' | 's32le' | 'f32le' | 'f64le' | 'mulaw' | 'alaw'
  sampleRate: number
  channels: number
}

export type WavHeader =
  | { kind: 'need-more' }
  | { kind: 'unsupported' }
  | {
      kind: 'pcm'
      layout: PcmLayout
      /** Where the samples start. */
      dataOffset: number
      /** Bytes of samples, or null when the size is a streaming placeholder (0, 0xFFFFFFFF, 0x7FFFF…). */
      dataBytes: number | null
    }

/** The largest header (all chunks before `data`) Earmark reads itself; bigger ones go to ffmpeg. */
export const MAX_WAV_HEADER_BYTES = 64 * 1024

const FORMAT_PCM = 1
const FORMAT_FLOAT = 3
const FORMAT_ALAW = 6
const FORMAT_MULAW = 7
const FORMAT_EXTENSIBLE = 0xfffe

/**
 * Reads a RIFF/WAVE header up to its `data` chunk. Earmark reads WAV itself because ffmpeg's WAV demuxer
 * first reads 64 KiB to look for S/PDIF inside the PCM, two seconds of 16 kHz audio before any output.
 * Once the header is known, the samples go on as raw PCM: straight through when they already are 16 kHz
 * mono s16le, otherwise through ffmpeg's raw demuxer, which starts at once.
 */
export function parseWavHeader(bytes: Uint8Array): WavHeader {
  if (bytes.length < 12) return { kind: 'need-more' }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4))
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return { kind: 'unsupported' }
  let layout: PcmLayout | null = null
  let at = 12
  while (at + 8 <= bytes.length) {
    const id = tag(at)
    const size = view.getUint32(at + 4, true)
    const body = at + 8
    if (id === 'data') {
      if (!layout) return { kind: 'unsupported' }
      const streaming = size === 0 || size >= 0x7fff0000
      return { kind: 'pcm', layout, dataOffset: body, dataBytes: streaming ? null : size }
    }
    if (id === 'fmt ') {
      if (size < 16) return { kind: 'unsupported' }
      if (body + size > bytes.length) return { kind: 'need-more' }
      layout = fmtLayout(view, body, size)
      if (!layout) return { kind: 'unsupported' }
    }
    at = body + size + (size % 2) // chunks are padded to an even length
  }
  return { kind: 'need-more' }
}

function fmtLayout(view: DataView, at: number, size: number): PcmLayout | null {
  let format = view.getUint16(at, true)
  const channels = view.getUint16(at + 2, true)
  const sampleRate = view.getUint32(at + 4, true)
  const bits = view.getUint16(at + 14, true)
  if (format === FORMAT_EXTENSIBLE) {
    // The sub-format GUID starts with the plain format tag.
    if (size < 26) return null
    format = view.getUint16(at + 24, true)
  }
  if (channels < 1 || channels > 8 || sampleRate < 1000 || sampleRate > 384000) return null
  const demuxer = demuxerFor(format, bits)
  return demuxer ? { demuxer, sampleRate, channels } : null
}

function demuxerFor(format: number, bits: number): PcmLayout['demuxer'] | null {
  if (format === FORMAT_PCM) {
    if (bits === 8) return 'u8'
    if (bits === 16) return 's16le'
    if (bits === 24) return 's24le'
    if (bits === 32) return 's32le'
  }
  if (format === FORMAT_FLOAT) {
    if (bits === 32) return 'f32le'
    if (bits === 64) return 'f64le'
  }
  if (format === FORMAT_ALAW && bits === 8) return 'alaw'
  if (format === FORMAT_MULAW && bits === 8) return 'mulaw'
  return null
}
