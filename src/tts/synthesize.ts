import { type ChildProcessByStdio, spawn } from 'node:child_process'
import { mkdtemp, open, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable, Transform, type Writable } from 'node:stream'
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
  /** How long the voice engine may take, ms. Default 60 000 (2000 characters take ~3 s with flite). */
  timeoutMs?: number
  /** Where the per-request temporary directory goes. Default the OS temp directory. */
  tmpDir?: string
}

/** Synthesised speech, ready to stream. */
export interface Speech {
  /**
   * The encoded audio. Read it to the end or destroy it: destroying it (as Fastify does when the client
   * goes away) kills ffmpeg; the temporary files go when ffmpeg has exited.
   */
  stream: Readable
  format: SpeechFormat
  voice: Voice
  /** Seconds of audio. */
  seconds: number
  /** The exact byte count the stream delivers for WAV and raw PCM; null for the codecs. */
  byteLength: number | null
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
  const dir = await mkdtemp(join(options.tmpDir ?? tmpdir(), 'earmark-tts-'))
  try {
    const wavPath = join(dir, 'voice.wav')
    await renderVoice(voice, text, wavPath, tools, options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
    const rendered = await readRendered(wavPath)
    const outSamples = Math.round((rendered.samples * format.sampleRate) / rendered.sampleRate)
    const bytesPerSample =
      format.encoding === 'linear16' ? 2 : format.encoding === 'mulaw' || format.encoding === 'alaw' ? 1 : 0
    const byteLength = bytesPerSample > 0 ? outSamples * bytesPerSample : null
    const header = format.container === 'wav' && byteLength !== null ? wavHeaderFor(format, byteLength) : null
    const speech = { format, voice, seconds: outSamples / format.sampleRate }
    if (byteLength === 0) {
      await rm(dir, { recursive: true, force: true })
      return { ...speech, stream: Readable.from(header ? [header] : []), byteLength: header?.length ?? 0 }
    }
    const stream = await convert(wavPath, format, tools.ffmpeg ?? 'ffmpeg', byteLength, header, () =>
      rm(dir, { recursive: true, force: true }),
    )
    return { ...speech, stream, byteLength: byteLength === null ? null : byteLength + (header?.length ?? 0) }
  } catch (err) {
    await rm(dir, { recursive: true, force: true })
    throw err
  }
}

function unavailable(program: string): ApiError {
  return new ApiError('SERVICE_UNAVAILABLE', `Text-to-speech is unavailable: ${program} is not installed.`)
}

async function renderVoice(
  voice: Voice,
  text: string,
  wavPath: string,
  tools: SpeechTools,
  timeoutMs: number,
): Promise<void> {
  const [program, args] =
    voice.engine === 'flite'
      ? [tools.flite ?? 'flite', ['-voice', voice.name, '-f', '-', '-o', wavPath]]
      : [tools.espeakNg ?? 'espeak-ng', ['-v', voice.name, '--stdin', '-w', wavPath]]
  const proc = spawn(program, args, { stdio: ['pipe', 'ignore', 'ignore'] })
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  try {
    await new Promise<void>((resolve, reject) => {
      proc.on('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? unavailable(voice.engine) : err),
      )
      proc.on('close', (code, signal) =>
        code === 0 ? resolve() : reject(new Error(`${voice.engine} failed (${signal ?? `exit ${code}`})`)),
      )
      proc.stdin.on('error', () => {}) // EPIPE if it died early; 'close' reports why
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it removes
      proc.stdin.end(`${text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, ' ')}\n`)
    })
  } finally {
    clearTimeout(timer)
  }
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

type Converter = ChildProcessByStdio<Writable | null, Readable, Readable | null>

/**
 * Runs ffmpeg on the rendered voice and returns its output once the first bytes came out (so a failure
 * at start is an error, not a truncated 200). Headerless PCM is cut or padded to exactly `exactBytes`
 * and preceded by `header`.
 */
async function convert(
  wavPath: string,
  format: SpeechFormat,
  ffmpegPath: string,
  exactBytes: number | null,
  header: Buffer | null,
  cleanup: () => Promise<void>,
): Promise<Readable> {
  const args = [
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
    'pipe:1',
  ]
  const proc: Converter = spawn(ffmpegPath, args, { stdio: ['ignore', 'pipe', 'ignore'] })
  let exited = false
  const exit = new Promise<number | null>((resolve, reject) => {
    proc.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? unavailable('ffmpeg') : err),
    )
    proc.on('close', (code) => resolve(code))
  })
  const removeFiles = () => {
    exited = true
    return cleanup()
  }
  exit.then(removeFiles, removeFiles).catch(() => {})

  let started = false
  let markStarted: () => void = () => {}
  let failStart: (err: Error) => void = () => {}
  const start = new Promise<void>((resolve, reject) => {
    markStarted = resolve
    failStart = reject
  })
  const begin = (stream: Transform) => {
    if (started) return
    started = true
    if (header) stream.push(header)
    markStarted()
  }
  let written = 0
  const silence = format.encoding in SILENCE ? SILENCE[format.encoding as keyof typeof SILENCE] : 0
  const finish = async (stream: Transform) => {
    const code = await exit
    if (code !== 0) throw new Error(`ffmpeg failed to encode ${format.encoding} (exit ${code})`)
    begin(stream)
    if (exactBytes !== null && written < exactBytes) stream.push(Buffer.alloc(exactBytes - written, silence))
  }
  const out = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      begin(this)
      if (exactBytes === null) return callback(null, chunk)
      const take = Math.min(chunk.length, exactBytes - written)
      written += Math.max(take, 0)
      callback(null, take > 0 ? chunk.subarray(0, take) : undefined)
    },
    flush(callback) {
      finish(this).then(
        () => callback(),
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err))
          failStart(error)
          callback(error)
        },
      )
    },
  })
  // The client went away (or the stream was read to its end): ffmpeg must not outlive it.
  out.on('close', () => {
    if (!exited) proc.kill('SIGKILL')
  })
  proc.stdout.pipe(out)
  try {
    await start
  } catch (err) {
    out.destroy()
    throw err
  }
  return out
}
