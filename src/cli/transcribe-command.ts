import { type Command, InvalidArgumentError } from 'commander'
import { parseAudioOptions } from '../audio/index.js'
import { ApiError } from '../errors.js'
import { parseListenOptions } from '../listen/index.js'
import { type CliContext, CliExit, list, nonNegativeInt, positiveInt } from './cli-context.js'
import { openEmbeddedEngine } from './embedded-engine.js'
import { EXIT } from './exit-codes.js'
import { createBarProgress, createLineProgress, type FileOutcome } from './progress.js'
import { createServerClient } from './server-client.js'
import { planJobs, runBatch, type TranscriptSource } from './transcribe.js'
import { isTranscriptFormat, TRANSCRIPT_FORMATS, type TranscriptFormat } from './transcript-formats.js'

/** Files at once through a server when `--concurrency` is not given. */
export const DEFAULT_SERVER_CONCURRENCY = 4
/** Tries again of a file a server refused with 429 or 503. */
export const DEFAULT_RETRIES = 20

function formats(value: string): TranscriptFormat[] {
  const names = list(value)
  const bad = names.find((n) => !isTranscriptFormat(n))
  if (names.length === 0 || bad !== undefined) {
    throw new InvalidArgumentError(
      `must be ${Object.keys(TRANSCRIPT_FORMATS).join(', ')} or a comma-separated list of them`,
    )
  }
  return [...new Set(names as TranscriptFormat[])]
}

function queryParam(value: string, previous: [string, string][]): [string, string][] {
  const at = value.indexOf('=')
  if (at < 1) throw new InvalidArgumentError('must be name=value')
  return [...previous, [value.slice(0, at), value.slice(at + 1)]]
}

interface TranscribeFlags {
  format: TranscriptFormat[]
  out?: string
  url?: string
  key?: string
  concurrency?: number
  retries: number
  model?: string
  language?: string
  smartFormat?: boolean
  punctuate?: boolean
  query: [string, string][]
}

/** The `/v1/listen` query: utterances on (captions and text lines follow them), the options, then `--query`. */
function listenQuery(f: TranscribeFlags): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = { utterances: 'true' }
  if (f.model) query.model = f.model
  if (f.language) query.language = f.language
  if (f.smartFormat) query.smart_format = 'true'
  if (f.punctuate) query.punctuate = 'true'
  const given = new Map<string, string[]>()
  for (const [name, value] of f.query) given.set(name, [...(given.get(name) ?? []), value])
  for (const [name, values] of given) query[name] = values.length === 1 ? (values[0] ?? '') : values
  return query
}

function outcomeJson(o: FileOutcome) {
  return {
    input: o.input,
    status: o.status,
    audio_seconds: Math.round(o.audioSeconds * 1000) / 1000,
    elapsed_seconds: Math.round(o.elapsedSeconds * 1000) / 1000,
    outputs: o.outputs,
    ...(o.error ? { error: o.error } : {}),
  }
}

/** `earmark transcribe FILE…|DIR` (docs/cli.md). */
export function registerTranscribe(program: Command, ctx: CliContext): void {
  program
    .command('transcribe')
    .description(
      'transcribe audio files, or every audio file of a directory, through a server (--url) or the embedded engine',
    )
    .argument('<paths...>', 'audio files and directories')
    .option('-f, --format <formats>', 'json, text, srt or vtt; several comma-separated', formats, [
      'text' as const,
    ])
    .option('-o, --out <dir>', 'write the transcripts here (default: next to each input)')
    .option(
      '-u, --url <url>',
      "a running server's base URL (default $EARMARK_URL; none: the embedded engine)",
    )
    .option(
      '-k, --key <key>',
      'API key or grant token for --url (default $EARMARK_API_KEY, which ps does not show)',
    )
    .option(
      '-c, --concurrency <n>',
      `files at once (a server: default ${DEFAULT_SERVER_CONCURRENCY}; embedded: the engine's capacity, at most)`,
      positiveInt,
    )
    .option(
      '--retries <n>',
      'tries again of a file the server refused with 429 or 503, after its Retry-After',
      nonNegativeInt,
      DEFAULT_RETRIES,
    )
    .option('--model <model>', 'the model to ask for')
    .option('--language <language>', 'the language, e.g. en-US')
    .option('--smart-format', 'smart_format=true')
    .option('--punctuate', 'punctuate=true')
    .option('-q, --query <name=value>', 'any other /v1/listen query parameter (repeatable)', queryParam, [])
    .action(async (paths: string[], flags: TranscribeFlags) => {
      const { io } = ctx
      const json = ctx.jsonMode()
      const query = listenQuery(flags)
      // Refused here, before a server is called or an engine measured: the same parsers the server runs.
      parseListenOptions(query)
      parseAudioOptions(query)
      const jobs = await planJobs(paths, flags.format, flags.out)
      const url = flags.url ?? io.env.EARMARK_URL
      const progress = io.tty ? createBarProgress(io.tty) : createLineProgress(json ? io.err : io.out)
      let source: TranscriptSource
      let concurrency: number
      let close = async () => {}
      if (url) {
        const key = flags.key ?? io.env.EARMARK_API_KEY
        if (!key) throw new ApiError('INVALID_AUTH', 'No API key: pass --key or set EARMARK_API_KEY.')
        const client = createServerClient({
          url,
          key,
          retries: flags.retries,
          onRetry: (file, waitMs, err) => progress.retry(file, waitMs, `${err.code}: ${err.message}`),
        })
        const params = new URLSearchParams()
        for (const [name, value] of Object.entries(query)) {
          for (const v of Array.isArray(value) ? value : [value]) params.append(name, v)
        }
        // The credential is checked once before any upload: a refused one stops the batch as its one clear
        // error (exit 3), which an upload the server refuses mid-write could not always say (EPIPE).
        const verified = client.verify()
        verified.catch(() => {}) // awaited by every file below
        source = {
          transcribe: async (file, signal) => {
            await verified
            return client.listen(file, params, signal)
          },
        }
        concurrency = flags.concurrency ?? DEFAULT_SERVER_CONCURRENCY
      } else {
        const c = ctx.config()
        const engine = await openEmbeddedEngine(c, io.env.EARMARK_LOG_LEVEL ? c.logLevel : 'warn')
        close = () => engine.close()
        source = { transcribe: (file, signal) => engine.transcribe(file, query, signal) }
        concurrency = Math.min(flags.concurrency ?? engine.capacity, engine.capacity)
      }
      const started = performance.now()
      let result: Awaited<ReturnType<typeof runBatch>>
      try {
        result = await runBatch({ jobs, source, concurrency, progress })
      } finally {
        await close()
      }
      const { outcomes, fatal } = result
      const failed = outcomes.filter((o) => o.status === 'failed').length
      const audio = outcomes.reduce((s, o) => s + o.audioSeconds, 0)
      const elapsed = (performance.now() - started) / 1000
      if (json) {
        ctx.json({
          files: outcomes.map(outcomeJson),
          succeeded: outcomes.length - failed,
          failed,
          not_started: jobs.length - outcomes.length,
          audio_seconds: Math.round(audio * 1000) / 1000,
          elapsed_seconds: Math.round(elapsed * 1000) / 1000,
          ...(fatal ? { error: { code: fatal.code, message: fatal.message } } : {}),
        })
      } else if (outcomes.length > 0) {
        io.err(
          `earmark: ${outcomes.length - failed} of ${jobs.length} files transcribed, ${failed} failed ` +
            `(${audio.toFixed(1)} s of audio in ${elapsed.toFixed(1)} s, ${concurrency} at once)\n`,
        )
      }
      if (fatal) throw fatal
      if (failed > 0)
        throw new CliExit(EXIT.PARTIAL, `${failed} of ${jobs.length} files failed; the others were written.`)
    })
}
