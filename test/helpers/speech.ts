import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/**
 * Debian flite's voices (`flite -lv`; espeak-ng voices PocketSphinx does not recognise: pocketsphinx-notes.md
 * §4). Most tests use `slt` and `rms`; the held-apart WER set (test/fixtures/wer-set.ts) uses all of them.
 * `kal` speaks at 8 kHz, the others at 16 kHz.
 */
export type FliteVoice = 'slt' | 'rms' | 'awb' | 'kal' | 'kal16'

export const SAMPLE_RATE = 16_000

const cache = new Map<string, Promise<Int16Array>>()

async function synthesize(text: string, voice: FliteVoice, sampleRate: number): Promise<Int16Array> {
  const dir = await mkdtemp(join(tmpdir(), 'earmark-speech-'))
  try {
    const wav = join(dir, 'speech.wav')
    const raw = join(dir, 'speech.raw')
    await run('flite', ['-voice', voice, '-t', text, '-o', wav])
    await run('sox', [wav, '-t', 'raw', '-r', String(sampleRate), '-c', '1', '-b', '16', '-e', 'signed', raw])
    const bytes = await readFile(raw)
    // Copy into an aligned buffer of our own (the file buffer may start at an odd offset in a pool).
    const pcm = new Int16Array(bytes.length >> 1)
    new Uint8Array(pcm.buffer).set(bytes.subarray(0, pcm.length * 2))
    return pcm
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/**
 * Speech for `text` made at test time with Debian's flite, as mono s16 PCM at `sampleRate` (default 16 kHz;
 * sox resamples when the voice speaks at another rate). Cached per process. Never commit generated audio.
 */
export function speech(
  text: string,
  voice: FliteVoice = 'slt',
  sampleRate = SAMPLE_RATE,
): Promise<Int16Array> {
  const key = `${voice}\u0000${sampleRate}\u0000${text}`
  let pcm = cache.get(key)
  if (!pcm) {
    pcm = synthesize(text, voice, sampleRate)
    cache.set(key, pcm)
    pcm.catch(() => cache.delete(key))
  }
  return pcm
}

/** Digital silence. */
export function silence(seconds: number): Int16Array {
  return new Int16Array(Math.round(seconds * SAMPLE_RATE))
}

/** Joins PCM pieces end to end. */
export function concatPcm(...parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0))
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** Seconds from the start of `pcm` to its first and past its last sample louder than `threshold`. */
export function speechBounds(pcm: Int16Array, threshold = 500): { start: number; end: number } {
  let first = -1
  let last = -1
  for (let i = 0; i < pcm.length; i++) {
    if (Math.abs(pcm[i] ?? 0) > threshold) {
      if (first < 0) first = i
      last = i
    }
  }
  if (first < 0) return { start: 0, end: 0 }
  return { start: first / SAMPLE_RATE, end: (last + 1) / SAMPLE_RATE }
}

/** Splits PCM into chunks of `ms` milliseconds (the last one may be shorter). */
export function chunks(pcm: Int16Array, ms: number): Int16Array[] {
  const size = Math.round((ms / 1000) * SAMPLE_RATE)
  const out: Int16Array[] = []
  for (let i = 0; i < pcm.length; i += size) out.push(pcm.subarray(i, i + size))
  return out
}

/** Lower-case words with punctuation removed (apostrophes inside words kept: "i'm"). */
export function normalizeWords(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9'\s]+/g, ' ')
    .replace(/(^|\s)'+|'+(?=\s|$)/g, ' ')
    .split(/\s+/)
    .filter((w) => w !== '')
}

/** Word-level Levenshtein distance (substitutions + deletions + insertions) and the reference length. */
export function wordErrors(reference: string, hypothesis: string): { errors: number; words: number } {
  const ref = normalizeWords(reference)
  const hyp = normalizeWords(hypothesis)
  let previous = Array.from({ length: hyp.length + 1 }, (_, j) => j)
  for (let i = 1; i <= ref.length; i++) {
    const current = [i]
    for (let j = 1; j <= hyp.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (ref[i - 1] === hyp[j - 1] ? 0 : 1)
      current.push(Math.min(substitution, (previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1))
    }
    previous = current
  }
  return { errors: previous[hyp.length] ?? 0, words: ref.length }
}

/** Word error rate: word-level Levenshtein distance / reference words (lower-case, no punctuation). */
export function wordErrorRate(reference: string, hypothesis: string): number {
  const { errors, words } = wordErrors(reference, hypothesis)
  if (words === 0) return errors === 0 ? 0 : 1
  return errors / words
}
