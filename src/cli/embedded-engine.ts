import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { pino } from 'pino'
import type { Config } from '../config/index.js'
import { isRelayEngine } from '../engines/index.js'
import { ApiError } from '../errors.js'
import {
  audioTooLong,
  planListen,
  prerecordedResponse,
  toListenApiError,
  transcribeRecording,
} from '../listen/index.js'
import { createLogger, createSpeechEngines } from '../main.js'

/** The configured speech engines in this process: `earmark transcribe` without `--url`. */
export interface EmbeddedEngine {
  /** Recordings that may decode at once: the default engine's capacity. */
  readonly capacity: number
  /** Transcribes one file to Deepgram's pre-recorded answer, as `POST /v1/listen?query` would. */
  transcribe(file: string, query: Record<string, string | string[]>, signal?: AbortSignal): Promise<unknown>
  close(): Promise<void>
}

/**
 * Opens the engines the data directory's configuration names (`EARMARK_ENGINE`, `EARMARK_CAPACITY`, measured
 * as `serve` measures them) and transcribes through the same pipeline as `POST /v1/listen`: the same query
 * options, decoder, engine and answer. No credential is involved (the operator runs it on the machine), so
 * nothing is metered and no quota or rate limit applies (docs/cli.md). Logs go to stderr, `warn` and up
 * unless `EARMARK_LOG_LEVEL` says otherwise.
 */
export async function openEmbeddedEngine(
  config: Pick<Config, 'engines' | 'capacity' | 'upstream' | 'maxAudioSeconds' | 'capacityWaitMs'>,
  logLevel: Config['logLevel'],
): Promise<EmbeddedEngine> {
  const log = createLogger({ logLevel }, pino.destination({ fd: 2, sync: true }))
  const engines = await createSpeechEngines(config, log)
  const tooLong = () => audioTooLong(config.maxAudioSeconds)
  return {
    capacity: engines.default.capacity,
    async transcribe(file, query, signal) {
      const plan = planListen(query, engines, 'prerecorded')
      const { engine } = plan
      if (isRelayEngine(engine)) {
        throw new ApiError(
          'INVALID_FIELD',
          'This model is relayed to another service (EARMARK_ENGINE upstream): transcribe it through a server with --url.',
        )
      }
      const sha = createHash('sha256')
      // Opened only when a decoder pulls the first bytes; hashed on the way (Deepgram's `metadata.sha256`).
      async function* chunks() {
        for await (const chunk of createReadStream(file)) {
          sha.update(chunk as Buffer)
          yield chunk as Buffer
        }
      }
      const created = new Date().toISOString()
      try {
        const result = await transcribeRecording({
          options: plan.options,
          audio: plan.audio,
          engine,
          chunks: chunks(),
          maxAudioSeconds: config.maxAudioSeconds,
          admission: { waitMs: config.capacityWaitMs, ...(signal ? { signal } : {}) },
        })
        return prerecordedResponse(result.utterances, {
          requestId: randomUUID(),
          engine,
          sha256: sha.digest('hex'),
          created,
          duration: result.duration,
          options: plan.options,
        })
      } catch (err) {
        throw toListenApiError(err, tooLong)
      }
    },
    close: () => engines.close(),
  }
}
