import { spawn } from 'node:child_process'
import { createReadStream } from 'node:fs'
import { mkdtemp, open, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { parseWavHeader } from '../audio/index.js'
import { ApiError } from '../errors.js'
import { resolveSpeechFormat, type SpeechFormat, type SpeechFormatRequest } from './speech-format.js'
import { getVoice, type Voice, type VoiceId } from './tts-voices.js'
import { WAVE_FORMAT, wavHeader } from './wav-writer.js'

/** The programs synthesis runs; each defaults to its name on PATH. */
export interface SpeechTools {
  flite?: string
  espeakNg?: string
  ffmpeg?: string
}

export interface SynthesizeOptions extends SpeechFormatRequest {
  /** An Earmark voice id (`flite-slt`, …) or a voice from `resolveVoice`. */
  voice: VoiceId | Voice
  tools?: SpeechTools
  /**
   * How long each program (the voice engine, then ffmpeg) may run, ms; past it, it is killed and reaped
   * and the call fails with `GATEWAY_TIMEOUT`. Default 60 000 (2000 characters take ~3 s with flite).
   */
  timeoutMs?: number
  /** ffmpeg's own limit, ms, when it should differ from `timeoutMs`. */
  encodeTimeoutMs?: number
  /** Where the per-request temporary directory goes. Default the OS temp directory. */
  tmpDir?: string
  /** Speaking-rate multiplier (Deepgram's `speed`, 0.7–1.5): 1.5 is one and a half times as fast. Default 1. */
  speed?: number
}

/** Synthesised speech, ready to stream. */
export interface Speech {
  /**
   * The encoded audio, read from a finished file: every program has exited by the time `synthesize`
   * resolves. Read it to the end or destroy it (as Fastify does when the client goes away); either way the
   * temporary files go.
   */
  stream: Readable
  format: SpeechFormat
  voice: Voice
  /** Seconds of audio. */
  seconds: number
  /** The exact byte count the stream delivers. */
  byteLength: number
}

const DEFAULT_TIMEOUT_MS = 60_000
/** Silence in each headerless encoding: zero for PCM, 0xFF for µ-law, 0xD5 for A-law. */
const SILENCE = { linear16: 0x00, mulaw: 0xff, alaw: 0xd5 } as const

/**
 * Renders `text` with a flite or espeak-ng voice and converts it with ffmpeg to the requested format.
 *
 * Safety: the text reaches the voice engine only through its stdin (`flite -f -`, `espeak-ng --stdin`),
 * never its command line and never a shell, so text such as `-o /etc/passwd` or `$(…)` is only ever
 * spoken. Control characters are replaced by spaces first.
 *
 * WAV and raw PCM are sample-exact: the length is known from the rendered voice before the first byte
 * is sent, so the RIFF sizes are the true ones.
 * @throws ApiError `INVALID_FIELD` for a format outside Deepgram's combinations; `SERVICE_UNAVAILABLE`
 * when a program is missing. Any other failure is a plain Error (an internal fault, to be logged).
 */
export async function synthesize(text: string, options: SynthesizeOptions): Promise<Speech> {
  const format = resolveSpeechFormat(options)
  const voice = typeof options.voice === 'string' ? getVoice(options.voice) : options.voice
  const tools = options.tools ?? {}
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'earmark-tts-'))
  const removeDir = () => rm(dir, { recursive: true, force: true })
  try {
    const wavPath = join(dir, 'voice.wav')
    await renderVoice(voice, text, wavPath, tools, timeoutMs, options.speed ?? 1)
    const rendered = await readRendered(wavPath)
    const outSamples = Math.round((rendered.samples * format.sampleRate) / rendered.sampleRate)
    const bytesPerSample =
      format.encoding === 'linear16' ? 2 : format.encoding === 'mulaw' || format.encoding === 'alaw' ? 1 : 0
    const exactBytes = bytesPerSample > 0 ? outSamples * bytesPerSample : null
    const header = format.container === 'wav' && exactBytes !== null ? wavHeaderFor(format, exactBytes) : null
    const speech = { format, voice, seconds: outSamples / format.sampleRate }
    if (exactBytes === 0) {
      await removeDir()
      return { ...speech, stream: Readable.from(header ? [header] : []), byteLength: header?.length ?? 0 }
    }
    const outPath = join(dir, 'speech.out')
    await runTool({
      program: tools.ffmpeg ?? 'ffmpeg',
      args: ffmpegArgs(wavPath, format, outPath),
      name: 'ffmpeg',
      timeoutMs: options.encodeTimeoutMs ?? timeoutMs,
    })
    const encoded = (await stat(outPath)).size
    const stream = encodedStream(outPath, encoded, exactBytes, header, format, removeDir)
    const body = exactBytes ?? encoded
    return { ...speech, stream, byteLength: body + (header?.length ?? 0) }
  } catch (err) {
    await removeDir()
    throw err
  }
}

function unavailable(program: string): ApiError {
  return new ApiError('SERVICE_UNAVAILABLE', `Text-to-speech is unavailable: ${program} is not installed.`)
}

interface ToolRun {
  program: string
  args: string[]
  /** The program's name for messages (`flite`, `ffmpeg`). */
  name: string
  timeoutMs: number
  /** Written to stdin, which is then closed; without it stdin is not opened. */
  stdin?: string
}

/**
 * Runs one program to its end. Past `timeoutMs` it is SIGKILLed, and the call settles only once the
 * process has exited (so no zombie and no half-written file outlives it).
 * @throws ApiError `GATEWAY_TIMEOUT` when it was killed for time; `SERVICE_UNAVAILABLE` when it is missing.
 */
function runTool(run: ToolRun): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const proc = spawn(run.program, run.args, {
      stdio: [run.stdin === undefined ? 'ignore' : 'pipe', 'ignore', 'ignore'],
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      proc.kill('SIGKILL')
    }, run.timeoutMs)
    proc.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(err.code === 'ENOENT' ? unavailable(run.name) : err)
    })
    proc.on('close', (code, signal) => {
      clearTimeout(timer)
      if (timedOut) {
        reject(new ApiError('GATEWAY_TIMEOUT', `Speech synthesis took too long (${run.name}).`))
      } else if (code === 0) {
        resolve()
      } else {
        reject(new Error(`${run.name} failed (${signal ?? `exit ${code}`})`))
      }
    })
    if (run.stdin !== undefined && proc.stdin) {
      proc.stdin.on('error', () => {}) // EPIPE if it died early; 'close' reports why
      proc.stdin.end(run.stdin)
    }
  })
}

function renderVoice(
  voice: Voice,
  text: string,
  wavPath: string,
  tools: SpeechTools,
  timeoutMs: number,
  speed: number,
): Promise<void> {
  const [program, args] =
    voice.engine === 'flite'
      ? [tools.flite ?? 'flite', ['-voice', voice.name, ...fliteRate(speed), '-f', '-', '-o', wavPath]]
      : [tools.espeakNg ?? 'espeak-ng', ['-v', voice.name, ...espeakRate(speed), '--stdin', '-w', wavPath]]
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
  const stdin = `${text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, ' ')}\n`
  return runTool({ program, args, name: voice.engine, timeoutMs, stdin })
}

/**
 * flite's rate: `duration_stretch` scales every segment's duration, so 1/speed makes the speech `speed` times
 * as fast with the voice's pitch unchanged (docs/deepgram-compat.md §8.1: 1.5 renders in 0.67 of the time).
 */
function fliteRate(speed: number): string[] {
  return speed === 1 ? [] : ['--setf', `duration_stretch=${(1 / speed).toFixed(4)}`]
}

/** espeak-ng's rate is words per minute, 175 by default. */
function espeakRate(speed: number): string[] {
  return speed === 1 ? [] : ['-s', String(Math.round(175 * speed))]
}

/** The rendered voice's sample count and rate, from its WAV header. */
async function readRendered(wavPath: string): Promise<{ samples: number; sampleRate: number }> {
  const file = await open(wavPath, 'r')
  try {
    const { size } = await file.stat()
    const head = Buffer.alloc(Math.min(size, 4096))
    await file.read(head, 0, head.length, 0)
    const wav = parseWavHeader(head)
    if (wav.kind !== 'pcm' || wav.layout.demuxer !== 's16le' || wav.layout.channels !== 1) {
      throw new Error('the voice engine wrote an unexpected WAV')
    }
    const dataBytes = Math.min(wav.dataBytes ?? Number.POSITIVE_INFINITY, size - wav.dataOffset)
    return { samples: Math.floor(dataBytes / 2), sampleRate: wav.layout.sampleRate }
  } finally {
    await file.close()
  }
}

function wavHeaderFor(format: SpeechFormat, dataBytes: number): Buffer {
  const pcm = format.encoding === 'linear16'
  return wavHeader({
    format: pcm ? WAVE_FORMAT.pcm : format.encoding === 'alaw' ? WAVE_FORMAT.alaw : WAVE_FORMAT.mulaw,
    sampleRate: format.sampleRate,
    channels: 1,
    bitsPerSample: pcm ? 16 : 8,
    dataBytes,
  })
}

/** ffmpeg's output options for `format`. Metadata and encoder tags are left out (`bitexact`). */
export function encoderArgs(format: SpeechFormat): string[] {
  const rate = ['-ac', '1', '-ar', String(format.sampleRate)]
  const bitRate = ['-b:a', String(format.bitRate ?? 48000)]
  switch (format.encoding) {
    case 'linear16':
      return [...rate, '-f', 's16le']
    case 'mulaw':
    case 'alaw':
      return [...rate, '-f', format.encoding]
    case 'mp3':
      return [...rate, '-c:a', 'libmp3lame', ...bitRate, '-id3v2_version', '0', '-f', 'mp3']
    case 'flac':
      return [...rate, '-c:a', 'flac', '-f', 'flac']
    case 'opus':
      return [...rate, '-c:a', 'libopus', ...bitRate, '-f', 'ogg']
    case 'aac':
      return [...rate, '-c:a', 'aac', ...bitRate, '-f', 'adts']
  }
}

/** ffmpeg's command line: the rendered voice in, `format` out to `outPath`, no metadata (`bitexact`). */
function ffmpegArgs(wavPath: string, format: SpeechFormat, outPath: string): string[] {
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'error',
    '-i',
    wavPath,
    '-map_metadata',
    '-1',
    '-fflags',
    '+bitexact',
    '-flags:a',
    '+bitexact',
    ...encoderArgs(format),
    '-y',
    outPath,
  ]
}

/**
 * The encoded file as a stream, after `header`. Headerless PCM is cut or padded with silence to exactly
 * `exactBytes` (ffmpeg's resampler may be a few samples off the count the header announced). `cleanup`
 * runs once the stream is closed, read to its end or destroyed.
 */
function encodedStream(
  path: string,
  size: number,
  exactBytes: number | null,
  header: Buffer | null,
  format: SpeechFormat,
  cleanup: () => Promise<void>,
): Readable {
  const take = exactBytes === null ? size : Math.min(size, exactBytes)
  const silence = format.encoding in SILENCE ? SILENCE[format.encoding as keyof typeof SILENCE] : 0
  const pad = exactBytes === null ? 0 : exactBytes - take
  const file = take > 0 ? createReadStream(path, { start: 0, end: take - 1 }) : null
  async function* parts() {
    if (header) yield header
    if (file) for await (const chunk of file) yield chunk as Buffer
    if (pad > 0) yield Buffer.alloc(pad, silence)
  }
  const stream = Readable.from(parts(), { objectMode: false })
  stream.once('close', () => {
    file?.destroy()
    cleanup().catch(() => {})
  })
  return stream
}
