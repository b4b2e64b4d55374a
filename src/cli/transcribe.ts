import { mkdir, readdir, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, extname, join, resolve } from 'node:path'
import { ApiError, isApiError } from '../errors.js'
import { EXIT, exitCodeOf } from './exit-codes.js'
import type { FileOutcome, Progress } from './progress.js'
import {
  answerDuration,
  renderTranscript,
  TRANSCRIPT_FORMATS,
  type TranscriptFormat,
} from './transcript-formats.js'

/** Extensions a directory's files are transcribed by (any container ffmpeg reads; a file named on its own may have any). */
export const AUDIO_EXTENSIONS = new Set([
  '.wav',
  '.mp3',
  '.flac',
  '.ogg',
  '.oga',
  '.opus',
  '.webm',
  '.m4a',
  '.mp4',
  '.aac',
  '.amr',
  '.aif',
  '.aiff',
  '.wma',
  '.mka',
  '.mkv',
  '.mov',
  '.3gp',
  '.caf',
])

/** Where one recording's transcripts go. */
export interface TranscribeJob {
  input: string
  outputs: { format: TranscriptFormat; path: string }[]
}

/**
 * The files to transcribe: each FILE as named, each DIR's audio files (by extension, not recursing), in
 * order; and where each transcript goes: next to its input, or in `outDir`, named after the input with the
 * format's extension. Refused (exit 2) before any work: a missing path, a directory without audio, two
 * inputs writing the same transcript, a transcript that would overwrite an input.
 */
export async function planJobs(
  inputs: readonly string[],
  formats: readonly TranscriptFormat[],
  outDir: string | undefined,
): Promise<TranscribeJob[]> {
  const files: string[] = []
  for (const input of inputs) {
    const info = await stat(input).catch(() => undefined)
    if (!info) throw new ApiError('NOT_FOUND', `No such file or directory: ${input}`)
    if (info.isDirectory()) {
      const entries = await readdir(input, { withFileTypes: true })
      const audio = entries
        .filter((e) => e.isFile() && AUDIO_EXTENSIONS.has(extname(e.name).toLowerCase()))
        .map((e) => join(input, e.name))
        .sort()
      if (audio.length === 0) throw new ApiError('NOT_FOUND', `No audio files in ${input}`)
      files.push(...audio)
    } else if (info.isFile()) {
      files.push(input)
    } else {
      throw new ApiError('INVALID_FIELD', `Not a file or directory: ${input}`)
    }
  }
  const sources = new Set(files.map((f) => resolve(f)))
  const taken = new Map<string, string>()
  return [...new Set(files)].map((input) => {
    const stem = basename(input, extname(input))
    const outputs = formats.map((format) => {
      const path = join(outDir ?? dirname(input), `${stem}.${TRANSCRIPT_FORMATS[format]}`)
      const key = resolve(path)
      const other = taken.get(key)
      if (other !== undefined) {
        throw new ApiError(
          'CONFLICT',
          `${other} and ${input} would both write ${path}: use separate runs or --out.`,
        )
      }
      if (sources.has(key))
        throw new ApiError('CONFLICT', `The transcript of ${input} would overwrite the input ${path}.`)
      taken.set(key, input)
      return { format, path }
    })
    return { input, outputs }
  })
}

/** Where transcripts come from: a server, or the embedded engine. */
export interface TranscriptSource {
  transcribe(file: string, signal: AbortSignal): Promise<unknown>
}

export interface BatchOptions {
  jobs: readonly TranscribeJob[]
  source: TranscriptSource
  /** Files in progress at once (at least 1). */
  concurrency: number
  progress: Progress
  now?: () => number
}

export interface BatchResult {
  outcomes: FileOutcome[]
  /** Set when the batch stopped early: a refusal every other file would get too (credentials, an unreachable server). */
  fatal?: ApiError
}

/** Failures every file would share: the query's options, a server that cannot answer. */
const FATAL_CODES: ReadonlySet<string> = new Set(['INVALID_FIELD', 'MODEL_NOT_FOUND', 'SERVICE_UNAVAILABLE'])

/** Whether a failure would be every file's: the credential, the query, or no server (able) to answer. */
function isFatal(err: ApiError): boolean {
  return exitCodeOf(err) === EXIT.AUTH || FATAL_CODES.has(err.code)
}

/**
 * Transcribes every job, `concurrency` at a time, writing each transcript as soon as its answer is in. A
 * file's own failure (bad audio, too long, still busy after the retries) is recorded and the rest go on; a
 * failure every file would share stops the batch: nothing new starts and the files in progress are aborted.
 */
export async function runBatch(o: BatchOptions): Promise<BatchResult> {
  const now = o.now ?? (() => performance.now())
  const outcomes: FileOutcome[] = []
  const abort = new AbortController()
  let fatal: ApiError | undefined
  let next = 0
  o.progress.start(o.jobs.length)
  const worker = async () => {
    for (;;) {
      if (fatal) return
      const job = o.jobs[next++]
      if (!job) return
      const started = now()
      try {
        const answer = await o.source.transcribe(job.input, abort.signal)
        const dirs = new Set(job.outputs.map((out) => dirname(out.path)))
        for (const dir of dirs) await mkdir(dir, { recursive: true })
        for (const out of job.outputs) await writeFile(out.path, renderTranscript(answer, out.format))
        const outcome: FileOutcome = {
          input: job.input,
          status: 'ok',
          audioSeconds: answerDuration(answer),
          elapsedSeconds: (now() - started) / 1000,
          outputs: job.outputs.map((out) => out.path),
        }
        outcomes.push(outcome)
        o.progress.done(outcome)
      } catch (err) {
        if (fatal) return
        const apiError = isApiError(err) ? err : undefined
        if (apiError && isFatal(apiError)) {
          fatal = apiError
          abort.abort(apiError)
          return
        }
        const outcome: FileOutcome = {
          input: job.input,
          status: 'failed',
          audioSeconds: 0,
          elapsedSeconds: (now() - started) / 1000,
          outputs: [],
          error: apiError
            ? { code: apiError.code, message: apiError.message }
            : { code: 'INTERNAL_ERROR', message: (err as Error)?.message ?? String(err) },
        }
        outcomes.push(outcome)
        o.progress.done(outcome)
      }
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, o.jobs.length)) }, worker))
  } finally {
    o.progress.stop()
  }
  return fatal ? { outcomes, fatal } : { outcomes }
}
