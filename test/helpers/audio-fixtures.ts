import { execFile } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** Runs a tool (never through a shell) and returns its stdout as bytes. */
export async function runTool(cmd: string, args: readonly string[]): Promise<Buffer> {
  const { stdout } = await execFileAsync(cmd, args, { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 })
  return stdout
}

/** ffmpeg's own one-shot conversion of `input` (its input options first) to 16 kHz mono s16le. */
export async function referencePcm(inputArgs: readonly string[], rate = 16000): Promise<Int16Array> {
  const out = await runTool('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    ...inputArgs,
    '-ac',
    '1',
    '-ar',
    String(rate),
    '-f',
    's16le',
    'pipe:1',
  ])
  return bytesToPcm(out)
}

export function bytesToPcm(bytes: Uint8Array): Int16Array {
  const copy = new Uint8Array(bytes.length - (bytes.length % 2))
  copy.set(bytes.subarray(0, copy.length))
  return new Int16Array(copy.buffer)
}

/** Audio made at test time (never committed): one flite sentence, encoded every way the decoder takes. */
export interface AudioFixtures {
  dir: string
  /** Absolute path of a fixture file. */
  path(name: FixtureName): string
  read(name: FixtureName): Promise<Buffer>
  /** The sentence at 16 kHz mono, as samples. */
  source: Int16Array
  /** Its duration, seconds. */
  seconds: number
  cleanup(): Promise<void>
}

export type FixtureName =
  | 'speech.wav'
  | 'speech-48k-stereo.wav'
  | 'speech.webm'
  | 'speech-live.webm'
  | 'speech.ogg'
  | 'speech.mp3'
  | 'speech.flac'
  | 'speech-16k.raw'
  | 'speech-48k-stereo.raw'
  | 'speech-8k.mulaw'

/** ffmpeg output options for what a browser's MediaRecorder sends: clusters of unknown size, no cues or duration. */
export const LIVE_WEBM_ARGS = [
  '-c:a',
  'libopus',
  '-live',
  '1',
  '-cluster_time_limit',
  '100',
  '-f',
  'webm',
] as const

const SENTENCE =
  'The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs, said the decoder.'

export async function makeAudioFixtures(): Promise<AudioFixtures> {
  const dir = await mkdtemp(join(tmpdir(), 'earmark-audio-'))
  const path = (name: string) => join(dir, name)
  const ff = (args: string[]) => runTool('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args])
  // flite's slt voice speaks at 16 kHz mono.
  await runTool('flite', ['-voice', 'slt', '-t', SENTENCE, '-o', path('speech.wav')])
  const src = path('speech.wav')
  await Promise.all([
    ff(['-i', src, '-ar', '48000', '-ac', '2', path('speech-48k-stereo.wav')]),
    ff(['-i', src, '-c:a', 'libopus', path('speech.webm')]),
    ff(['-i', src, ...LIVE_WEBM_ARGS, path('speech-live.webm')]),
    // Short Ogg pages, as a streaming encoder writes them (ffmpeg's default page is a second long).
    ff(['-i', src, '-c:a', 'libopus', '-page_duration', '20000', path('speech.ogg')]),
    ff(['-i', src, '-c:a', 'libmp3lame', '-b:a', '64k', path('speech.mp3')]),
    ff(['-i', src, path('speech.flac')]),
    ff(['-i', src, '-f', 's16le', path('speech-16k.raw')]),
    ff(['-i', src, '-ar', '48000', '-ac', '2', '-f', 's16le', path('speech-48k-stereo.raw')]),
    ff(['-i', src, '-ar', '8000', '-f', 'mulaw', path('speech-8k.mulaw')]),
  ])
  const source = bytesToPcm(await readFile(path('speech-16k.raw')))
  return {
    dir,
    path,
    read: (name) => readFile(path(name)),
    source,
    seconds: source.length / 16000,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  }
}

/** RMS energy per `window` samples. */
export function energyEnvelope(pcm: Int16Array, window = 320): number[] {
  const out: number[] = []
  for (let at = 0; at + window <= pcm.length; at += window) {
    let sum = 0
    for (let i = at; i < at + window; i++) sum += (pcm[i] ?? 0) ** 2
    out.push(Math.sqrt(sum / window))
  }
  return out
}

/** Pearson correlation of two envelopes, at the best shift within ±`maxShift` windows. */
export function envelopeCorrelation(a: number[], b: number[], maxShift = 5): number {
  let best = -1
  for (let shift = -maxShift; shift <= maxShift; shift++) {
    const xs: number[] = []
    const ys: number[] = []
    for (let i = 0; i < a.length; i++) {
      const j = i + shift
      const x = a[i]
      const y = b[j]
      if (x !== undefined && y !== undefined) {
        xs.push(x)
        ys.push(y)
      }
    }
    best = Math.max(best, pearson(xs, ys))
  }
  return best
}

function pearson(xs: number[], ys: number[]): number {
  const n = xs.length
  if (n === 0) return 0
  const mx = xs.reduce((s, v) => s + v, 0) / n
  const my = ys.reduce((s, v) => s + v, 0) / n
  let sxy = 0
  let sxx = 0
  let syy = 0
  for (let i = 0; i < n; i++) {
    const dx = (xs[i] ?? 0) - mx
    const dy = (ys[i] ?? 0) - my
    sxy += dx * dy
    sxx += dx * dx
    syy += dy * dy
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy)
}

/** Cuts `bytes` into chunks of the given sizes, cycling through them. */
export function chunked(bytes: Uint8Array, sizes: readonly number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let i = 0
  for (let at = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length] ?? 1
    out.push(bytes.subarray(at, at + size))
    at += size
  }
  return out
}

/** ffmpeg processes this test process started and that still run (zombies included: they are not reaped). */
export async function ffmpegChildren(): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    // pid (comm) state ppid ...
    const m = /^\d+ \((.*)\) \S+ (\d+)/.exec(stat)
    if (m && m[1] === 'ffmpeg' && Number(m[2]) === process.pid) pids.push(Number(entry))
  }
  return pids
}
