/** WAVE format tags Earmark writes. */
export const WAVE_FORMAT = { pcm: 1, alaw: 6, mulaw: 7 } as const

export interface WavHeaderSpec {
  format: (typeof WAVE_FORMAT)[keyof typeof WAVE_FORMAT]
  sampleRate: number
  channels: number
  bitsPerSample: number
  /** Bytes of samples that follow the header. */
  dataBytes: number
}

/**
 * A complete RIFF/WAVE header with the true sizes. Earmark knows the sample count before the first byte
 * is sent, so it never sends the placeholder sizes (0xFFFFFFFF, 0x7FFFF…) that streaming tools write and
 * strict readers reject. PCM gets the canonical 44-byte header; A-law and µ-law add `cbSize` and the
 * `fact` chunk the WAVE spec asks of non-PCM formats.
 */
export function wavHeader(spec: WavHeaderSpec): Buffer {
  const pcm = spec.format === WAVE_FORMAT.pcm
  const fmtBytes = pcm ? 16 : 18
  const factBytes = pcm ? 0 : 12
  const header = Buffer.alloc(12 + 8 + fmtBytes + factBytes + 8)
  const blockAlign = (spec.channels * spec.bitsPerSample) / 8
  let at = 0
  const tag = (s: string) => {
    header.write(s, at, 'ascii')
    at += 4
  }
  const u32 = (v: number) => {
    header.writeUInt32LE(v, at)
    at += 4
  }
  const u16 = (v: number) => {
    header.writeUInt16LE(v, at)
    at += 2
  }
  tag('RIFF')
  u32(header.length - 8 + spec.dataBytes)
  tag('WAVE')
  tag('fmt ')
  u32(fmtBytes)
  u16(spec.format)
  u16(spec.channels)
  u32(spec.sampleRate)
  u32(spec.sampleRate * blockAlign)
  u16(blockAlign)
  u16(spec.bitsPerSample)
  if (!pcm) {
    u16(0) // cbSize
    tag('fact')
    u32(4)
    u32(spec.dataBytes / blockAlign)
  }
  tag('data')
  u32(spec.dataBytes)
  return header
}
