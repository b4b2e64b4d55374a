import { existsSync, readFileSync } from 'node:fs'

/** Real read speech from Debian's pocketsphinx-testdata: warms decoders up and measures capacity. */
export const WARMUP_SPEECH = '/usr/share/pocketsphinx/test/data/goforward.raw'

/** `WARMUP_SPEECH` as 16 kHz PCM, or undefined when the package is not installed. */
export function warmupSpeech(): Int16Array | undefined {
  if (!existsSync(WARMUP_SPEECH)) return undefined
  const bytes = readFileSync(WARMUP_SPEECH)
  // Copied: a Buffer may start at an odd offset of a shared pool, where an Int16Array view cannot.
  const pcm = new Int16Array(bytes.length >> 1)
  new Uint8Array(pcm.buffer).set(bytes.subarray(0, pcm.length * 2))
  return pcm
}
