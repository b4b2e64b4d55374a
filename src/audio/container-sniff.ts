import type { ContainerEncoding } from './audio-format.js'

/** Bytes needed to recognise every container below. */
export const SNIFF_BYTES = 12

/** ffmpeg demuxer names (`-f`) Earmark picks itself. */
export type Demuxer = 'wav' | 'matroska' | 'ogg' | 'flac' | 'mp3' | 'mov'

/**
 * Names the container from its magic bytes. Naming it spares ffmpeg its format probe, which waits for
 * 2 KiB of input before it decodes anything: with a browser's Opus at ~32 kbit/s that is half a second.
 * Returns null for anything else; ffmpeg then probes by itself.
 */
export function sniffContainer(head: Uint8Array): Demuxer | null {
  const ascii = (from: number, to: number) => String.fromCharCode(...head.subarray(from, to))
  const b0 = head[0] ?? 0
  const b1 = head[1] ?? 0
  if ((ascii(0, 4) === 'RIFF' || ascii(0, 4) === 'RF64') && ascii(8, 12) === 'WAVE') return 'wav'
  if (b0 === 0x1a && b1 === 0x45 && head[2] === 0xdf && head[3] === 0xa3) return 'matroska' // WebM too
  if (ascii(0, 4) === 'OggS') return 'ogg'
  if (ascii(0, 4) === 'fLaC') return 'flac'
  if (ascii(0, 3) === 'ID3') return 'mp3'
  // An MPEG audio frame sync with a layer set (layer 0 would be AAC's ADTS).
  if (b0 === 0xff && (b1 & 0xe0) === 0xe0 && (b1 & 0x06) !== 0) return 'mp3'
  if (ascii(4, 8) === 'ftyp') return 'mov' // MP4/M4A, e.g. Safari's MediaRecorder
  return null
}

/** The demuxer a client's `encoding` implies, for bytes that did not name their container. */
export function demuxerForHint(hint: ContainerEncoding | null): Demuxer | null {
  switch (hint) {
    case 'opus':
    case 'ogg-opus':
      return 'ogg'
    case 'flac':
      return 'flac'
    case 'mp3':
      return 'mp3'
    default:
      return null
  }
}
