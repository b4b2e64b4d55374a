import { type AudioDecoder, createAudioDecoder, parseAudioOptions } from '../audio/index.js'
import { USAGE_WRITE } from '../auth/index.js'
import { type Engine, EngineBusyError, EngineOptionError } from '../engines/index.js'
import { ApiError, invalidField } from '../errors.js'
import { checkListenConstraints, parseListenOptions } from '../listen/index.js'
import { finishStreamUsage, type Services, startUsage } from '../projects/index.js'
import { MIN_QUOTA_SECONDS, type QuotaEnforcer } from '../quotas/index.js'
import { type CapacityShare, createCapacityShare } from './capacity-share.js'
import { CLOSE } from './close-codes.js'
import { createListenSession, DEFAULT_SESSION_LIMITS, type SessionLimits } from './listen-session.js'
import { type SocketRoute, UPGRADE_GONE } from './upgrade.js'

export interface ListenSocketOptions {
  services: Services
  engine: Engine
  limits?: Partial<SessionLimits>
  /** The ffmpeg binary for containers and resampling. Default `ffmpeg` (found on PATH). */
  ffmpegPath?: string
  /** Each key's and end user's share of the slots, shared with pre-recorded requests; default: no cap. */
  share?: CapacityShare
  /** Audio quotas (docs/quotas.md); default: none. */
  quotas?: QuotaEnforcer
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

/**
 * The live `GET /v1/listen` route: options are checked and capacity is looked at before anything is
 * claimed; then the engine stream, the decoder and the usage record are claimed in that order and handed to
 * the socket, whose close releases them all (see `attachSocketRoutes`).
 */
export function createListenRoute(o: ListenSocketOptions): SocketRoute {
  const limits = { ...DEFAULT_SESSION_LIMITS, ...o.limits }
  const share = o.share ?? createCapacityShare({ perCredential: 0, perKey: 0, perEndUser: 0 })
  return {
    path: '/v1/listen',
    scope: USAGE_WRITE,
    async prepare({ query, principal, requestId, log, url, access }) {
      const options = parseListenOptions(query)
      checkListenConstraints(principal, options)
      if (options.callback) throw invalidField('callback', 'callbacks are not supported on live streams')
      const audio = parseAudioOptions(query)
      // Admission control: a stream that would push the engine past real time is refused here, so the
      // streams already open keep up.
      if (o.engine.inUse() >= o.engine.capacity) {
        throw new ApiError(
          'TOO_MANY_REQUESTS',
          `Speech capacity is full (${o.engine.capacity} concurrent streams); try again later.`,
        )
      }
      // Nothing left of a quota: 429 with Retry-After before anything is claimed (docs/quotas.md). The
      // allowance is given back (in onEnd) only once the usage record holds what the stream took.
      const quota = await o.quotas?.open(principal, access)
      // One credential's share is claimed first and given back however the stream ends, so a leaked or idle
      // credential cannot hold every slot (docs/speech.md "Idle and greedy credentials").
      let giveBack: () => void
      try {
        // Synchronous in memory (nothing else runs in between); a shared share (Redis) answers later.
        const claimed = share.claim(principal)
        giveBack = claimed instanceof Promise ? await claimed : claimed
      } catch (err) {
        quota?.release()
        throw err
      }
      let usage: Awaited<ReturnType<typeof startUsage>> | undefined
      let usageDone: Promise<void> = Promise.resolve()
      const session = createListenSession({
        requestId,
        engine: o.engine,
        options,
        limits,
        log,
        createDecoder: (): AudioDecoder =>
          createAudioDecoder({
            ...audio,
            ...(o.ffmpegPath ? { ffmpegPath: o.ffmpegPath } : {}),
            maxBytesBeforeAudio: LIVE_MAX_BYTES_BEFORE_AUDIO,
            unrecognisedTimeoutMs: LIVE_UNRECOGNISED_TIMEOUT_MS,
          }),
        ...(quota ? { allowAudio: (seconds: number) => quota.take(seconds) } : {}),
        onEnd: ({ code, reason, audioSeconds }) => {
          // The session closed it at the allowance (a client's own close reason is not taken for it).
          if (reason === CLOSE.QUOTA.reason && quota && quota.remaining() < MIN_QUOTA_SECONDS) {
            quota.exhausted(audioSeconds)
          }
          if (usage) {
            usageDone = finishStreamUsage(o.services, usage, {
              audioSeconds,
              status: code,
              detail: reason || null,
            }).catch((err) => log.error({ err, request_id: requestId }, 'could not record usage'))
          }
          void usageDone.then(() => quota?.release())
          log.info(
            { request_id: requestId, code, audio_seconds: Math.round(audioSeconds * 100) / 100 },
            'stream closed',
          )
        },
      })
      try {
        await session.open()
        usage = await startUsage(o.services, principal, {
          requestId,
          endpoint: 'listen',
          method: 'streaming',
          path: url.pathname,
          model: options.model,
          tags: options.tags,
        })
      } catch (err) {
        await session.abandon(CLOSE.INTERNAL.code, 'upgrade refused')
        giveBack()
        if (err instanceof EngineBusyError) throw new ApiError('TOO_MANY_REQUESTS', err.message)
        if (err instanceof EngineOptionError) throw invalidField(err.field, err.message)
        throw err
      }
      const released = session.ended.then(() => {
        giveBack()
        return usageDone
      })
      return {
        attach: (ws) => session.attach(ws),
        release: async () => {
          await session.abandon(UPGRADE_GONE.code, UPGRADE_GONE.reason)
          await released
        },
        released,
      }
    },
  }
}
