import { type AudioDecoder, createAudioDecoder } from '../audio/index.js'
import { USAGE_WRITE } from '../auth/index.js'
import {
  createEngineRegistry,
  type EngineRegistry,
  isRelayEngine,
  type SpeechEngine,
} from '../engines/index.js'
import {
  type CapacityShare,
  createListenUseCase,
  type ListenObserver,
  type ListenOptions,
  type ListenRequest,
  type ProjectEngines,
} from '../listen/index.js'
import type { Services } from '../projects/index.js'
import { MIN_QUOTA_SECONDS, type QuotaEnforcer } from '../quotas/index.js'
import { CLOSE } from './close-codes.js'
import {
  createListenSession,
  DEFAULT_SESSION_LIMITS,
  type SessionLimits,
  type SessionOutcome,
} from './listen-session.js'
import { createRelaySession, type RelayMeter } from './relay-session.js'
import { LISTEN_SOCKET_DOC } from './socket-docs.js'
import { type SocketRoute, UPGRADE_GONE } from './upgrade.js'

export interface ListenSocketOptions {
  services: Services
  /** The speech engine, when it is the only one. */
  engine: SpeechEngine
  /** Every speech engine, chosen per stream by `model`; default: `engine` alone. */
  engines?: EngineRegistry
  limits?: Partial<SessionLimits>
  /** The ffmpeg binary for containers and resampling. Default `ffmpeg` (found on PATH). */
  ffmpegPath?: string
  /** Each key's and end user's share of the slots, shared with pre-recorded requests; default: no cap. */
  share?: CapacityShare
  /** Audio quotas (docs/quotas.md); default: none. */
  quotas?: QuotaEnforcer
  /** Projects' own upstream relays (docs/gateway.md "Per project"); default none. */
  projectEngines?: ProjectEngines
  /** Told about refusals and audio decoded (the metrics); default: nobody. */
  observer?: ListenObserver
}

/**
 * Bytes a live stream may send before its audio yields any PCM. Real containers (a browser's WebM/Opus,
 * Ogg, MP3, FLAC, WAV) decode within a few kilobytes; random bytes that happen to look like one would
 * otherwise hold the stream until the idle timeout instead of closing it 1008 `DATA-0000`.
 */
export const LIVE_MAX_BYTES_BEFORE_AUDIO = 512 * 1024

/**
 * How long bytes that name no known container may go without yielding PCM on a live stream. The formats
 * ffmpeg recognises from 2 KiB (see `FORMAT_PROBE_BYTES`) give PCM within half a second at 4 KiB/s.
 */
export const LIVE_UNRECOGNISED_TIMEOUT_MS = 2000

/** Per direction of a relayed stream: bytes queued for one side before the other is no longer read. */
export const RELAY_MAX_BUFFERED_BYTES = 4 * 1024 * 1024

/** Bytes per sample of the raw encodings whose length the bytes tell (docs/gateway.md "Metering"). */
const RAW_SAMPLE_BYTES: Record<string, number> = { linear16: 2, linear32: 4, mulaw: 1, alaw: 1 }

/** How a relayed stream is metered: from its bytes when the query describes raw audio of known layout. */
function relayMeter(options: ListenOptions): RelayMeter {
  const sampleBytes = options.encoding ? RAW_SAMPLE_BYTES[options.encoding.toLowerCase()] : undefined
  if (!sampleBytes || !options.sampleRate) return { bytesPerSecond: undefined, frameBytes: 1 }
  const frameBytes = sampleBytes * options.channels
  return { bytesPerSecond: frameBytes * options.sampleRate, frameBytes }
}

/**
 * The live `GET /v1/listen` route: the transport around the listen use case (src/listen/listen-use-case.ts),
 * which checks the options and admits the stream before anything is claimed; then the engine stream, the
 * decoder and the usage record are claimed in that order and handed to the socket, whose close releases
 * them all (see `attachSocketRoutes`).
 */
export function createListenRoute(o: ListenSocketOptions): SocketRoute {
  const limits = { ...DEFAULT_SESSION_LIMITS, ...o.limits }
  const listen = createListenUseCase({
    services: o.services,
    engines: o.engines ?? createEngineRegistry([{ engine: o.engine }]),
    ...(o.share ? { share: o.share } : {}),
    ...(o.quotas ? { quotas: o.quotas } : {}),
    ...(o.projectEngines ? { projectEngines: o.projectEngines } : {}),
    ...(o.observer ? { observer: o.observer } : {}),
  })
  return {
    path: '/v1/listen',
    doc: LISTEN_SOCKET_DOC,
    scope: USAGE_WRITE,
    async prepare({ query, principal, requestId, log, url, access }) {
      const request: ListenRequest = {
        transport: 'live',
        principal,
        query,
        access,
        requestId,
        path: url.pathname,
      }
      const plan = await listen.plan(request)
      const { options, audio, engine } = plan
      // Capacity, quota and the credential's share, in that order; all given back if one refuses. The quota
      // allowance is given back (in onEnd) only once the usage record holds what the stream took.
      const claim = await listen.admit(request, plan)
      const { quota } = claim
      let usageDone: Promise<void> = Promise.resolve()
      const onEnd = ({ code, reason, audioSeconds }: SessionOutcome) => {
        // The session closed it at the allowance (a client's own close reason is not taken for it).
        if (reason === CLOSE.QUOTA.reason && quota && quota.remaining() < MIN_QUOTA_SECONDS) {
          quota.exhausted(audioSeconds)
        }
        usageDone = claim
          .finish({ audioSeconds, status: code, detail: reason || null })
          .catch((err) => log.error({ err, request_id: requestId }, 'could not record usage'))
        log.info(
          { request_id: requestId, code, audio_seconds: Math.round(audioSeconds * 100) / 100 },
          'stream closed',
        )
      }
      const allowAudio = quota ? { allowAudio: (seconds: number) => quota.take(seconds) } : {}
      const session = isRelayEngine(engine)
        ? // A gateway relays the stream as it came, under its own key (docs/gateway.md).
          createRelaySession({
            requestId,
            relay: engine,
            query: url.search.slice(1),
            meter: relayMeter(options),
            limits,
            log,
            maxBufferedBytes: RELAY_MAX_BUFFERED_BYTES,
            ...allowAudio,
            onEnd,
          })
        : createListenSession({
            requestId,
            engine,
            options,
            limits,
            log,
            createDecoder: (): AudioDecoder =>
              createAudioDecoder({
                ...audio,
                // Resampled to the rate of the engine that serves this stream's model.
                sampleRate: engine.sampleRate,
                ...(o.ffmpegPath ? { ffmpegPath: o.ffmpegPath } : {}),
                maxBytesBeforeAudio: LIVE_MAX_BYTES_BEFORE_AUDIO,
                unrecognisedTimeoutMs: LIVE_UNRECOGNISED_TIMEOUT_MS,
              }),
            ...allowAudio,
            onEnd,
          })
      try {
        await session.open()
        await claim.startUsage()
      } catch (err) {
        await session.abandon(CLOSE.INTERNAL.code, 'upgrade refused')
        claim.releaseShare()
        throw listen.toApiError(err)
      }
      const released = session.ended.then(() => {
        claim.releaseShare()
        return usageDone
      })
      return {
        attach: (ws) => session.attach(ws),
        release: async () => {
          await session.abandon(UPGRADE_GONE.code, UPGRADE_GONE.reason)
          await released
        },
        released,
        shutdown: async () => {
          await session.shutdown()
          await released
        },
      }
    },
  }
}
