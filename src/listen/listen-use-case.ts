import type { AccessRequest } from '../access/index.js'
import { type AudioDecoderOptions, isAudioDecodeError, parseAudioOptions } from '../audio/index.js'
import type { Principal } from '../auth/index.js'
import { type Engine, EngineBusyError, EngineOptionError, type EngineRegistry } from '../engines/index.js'
import { ApiError, invalidField, isApiError } from '../errors.js'
import {
  finishStreamUsage,
  finishUsage,
  type Services,
  startUsage,
  type UsageEnd,
} from '../projects/index.js'
import type { QuotaEnforcer, QuotaLease } from '../quotas/index.js'
import type { UsageRecord } from '../store/index.js'
import type { CapacityShare } from './capacity-share.js'
import { checkListenConstraints } from './listen-constraints.js'
import { type ListenOptions, parseListenOptions } from './listen-options.js'

/** The two ways audio reaches `/v1/listen`: a pre-recorded request, or a live stream. */
export type ListenTransport = 'prerecorded' | 'live'

/** One `/v1/listen` request or upgrade, as its transport received it (credential and scope already checked). */
export interface ListenRequest {
  transport: ListenTransport
  principal: Principal
  /** The query: one string per name, or every value of a repeated name. */
  query: Record<string, string | string[]>
  /** The request as the access checks saw it (quotas record refusals with it). */
  access: AccessRequest | undefined
  requestId: string
  path: string
}

/** What a request asks for, checked: nothing is claimed yet. */
export interface ListenPlan {
  options: ListenOptions
  /** How the client's bytes are to be decoded (encoding, container); the PCM rate is the engine's. */
  audio: AudioDecoderOptions
  /** The engine serving the request's `model`. */
  engine: Engine
}

/**
 * What admission claimed for one request: its quota allowance and its share of the speech slots. Whoever
 * owns the request or socket gives them back, on every path: `releaseShare` as soon as the engine is let
 * go, `finish` once (it writes the usage record, if one was opened, then gives the allowance back).
 */
export interface ListenClaim {
  /** The quota allowance (docs/quotas.md), or undefined when no quota applies. */
  readonly quota: QuotaLease | undefined
  /** Opens the usage record: after the engine was claimed, so a refusal meters nothing. */
  startUsage(): Promise<UsageRecord>
  /** Gives the share slot back. Idempotent. */
  releaseShare(): void
  /**
   * Records how the request ended (a live stream's write is retried through a store outage) and then gives
   * the quota allowance back, whether or not the write succeeded. Rejects when the write failed.
   */
  finish(end: UsageEnd): Promise<void>
}

/** Admission hooks a transport adds (e.g. REST's bound on uploads received at once). */
export interface AdmitHooks {
  /** A refusal, or undefined; asked before and again after the share is claimed (which may wait on Redis). */
  refusal?: () => ApiError | undefined
}

/**
 * The listen use case: everything `/v1/listen` does that is not transport. REST and the live socket call it
 * in the same order: `plan` (options, credential constraints, engine by `model`), `admit` (capacity, quota,
 * share), then, once the engine is claimed, `claim.startUsage`; at the end `claim.finish`. `toApiError` maps
 * what engines and decoders throw to Deepgram-shaped errors.
 */
export interface ListenUseCase {
  /** Parses and checks the request; throws ApiError (400, 403) before anything is claimed. */
  plan(request: ListenRequest): ListenPlan
  /** Admits the request: throws 429 (capacity, quota, share) having given back whatever it took. */
  admit(request: ListenRequest, plan: ListenPlan, hooks?: AdmitHooks): Promise<ListenClaim>
  /** What an engine or audio decoder threw, as the ApiError the client gets; anything else as is. */
  toApiError(err: unknown, tooLong?: () => ApiError): unknown
}

/** Told what admission refused and what audio was decoded (the metrics, docs/metrics.md). */
export interface ListenObserver {
  /** A 429 of admission: no engine slot or decoder in time (`capacity`), a quota, or a share. */
  refused(reason: 'capacity' | 'quota' | 'share'): void
  /** A request or stream ended having decoded `seconds` of audio. */
  audio(transport: ListenTransport, seconds: number): void
}

export interface ListenUseCaseOptions {
  services: Services
  engines: EngineRegistry
  /** Each key's and end user's share of the slots, live and pre-recorded together; default none. */
  share?: CapacityShare
  /** Audio quotas (docs/quotas.md), live and pre-recorded together; default none. */
  quotas?: QuotaEnforcer
  observer?: ListenObserver
}

const CALLBACK_REFUSAL: Record<ListenTransport, string> = {
  prerecorded: 'callbacks are not supported by this server',
  live: 'callbacks are not supported on live streams',
}

/** Creates the listen use case both transports share. */
export function createListenUseCase(o: ListenUseCaseOptions): ListenUseCase {
  /** Tells the observer about a 429 `err` (a 503 of an outage is not a refusal), then returns it. */
  const refusing = (reason: 'capacity' | 'quota' | 'share', err: unknown) => {
    if (isApiError(err) && err.status === 429) o.observer?.refused(reason)
    return err
  }
  return {
    plan(request) {
      const options = parseListenOptions(request.query)
      checkListenConstraints(request.principal, options)
      if (options.callback) throw invalidField('callback', CALLBACK_REFUSAL[request.transport])
      const audio = parseAudioOptions(request.query)
      return { options, audio, engine: o.engines.forModel(options.model) }
    },

    async admit(request, { options, engine }, hooks = {}) {
      const { principal } = request
      // A stream that would push the engine past real time is refused here, so the streams already open
      // keep up; a pre-recorded request queues for a decoder instead (bounded by its own wait and queue).
      if (request.transport === 'live' && engine.inUse() >= engine.capacity) {
        throw refusing(
          'capacity',
          new ApiError(
            'TOO_MANY_REQUESTS',
            `Speech capacity is full (${engine.capacity} concurrent streams); try again later.`,
          ),
        )
      }
      // Nothing left of a quota: 429 with Retry-After before anything is claimed (docs/quotas.md).
      let quota: QuotaLease | undefined
      try {
        quota = await o.quotas?.open(principal, request.access)
      } catch (err) {
        throw refusing('quota', err)
      }
      const refuse = (giveBack?: () => void) => {
        const refusal = hooks.refusal?.()
        if (!refusal) return
        giveBack?.()
        quota?.release()
        throw refusing('capacity', refusal)
      }
      refuse()
      // One credential's share is claimed first and given back however the request ends, so a leaked or
      // idle credential cannot hold every slot (docs/speech.md "Idle and greedy credentials").
      let giveBack: (() => void) | undefined
      try {
        // Synchronous in memory (nothing else runs in between); a shared share (Redis) answers later.
        const claimed = o.share?.claim(principal)
        giveBack = claimed instanceof Promise ? await claimed : claimed
      } catch (err) {
        quota?.release()
        throw refusing('share', err)
      }
      // A shared share answers after a wait, in which the transport's own bound may have filled up.
      refuse(giveBack)
      let record: UsageRecord | undefined
      const live = request.transport === 'live'
      return {
        quota,
        async startUsage() {
          record = await startUsage(o.services, principal, {
            requestId: request.requestId,
            endpoint: 'listen',
            method: live ? 'streaming' : 'sync',
            path: request.path,
            model: options.model,
            tags: options.tags,
          })
          return record
        },
        releaseShare() {
          const g = giveBack
          giveBack = undefined
          g?.()
        },
        async finish(end) {
          o.observer?.audio(request.transport, end.audioSeconds ?? 0)
          try {
            // A request answers only once its record is written; a stream was served already, so its
            // write is retried while the store is away (docs/store.md).
            if (record) await (live ? finishStreamUsage : finishUsage)(o.services, record, end)
          } finally {
            // Only now is what it decoded in the store, so the reservation can go.
            quota?.release()
          }
        },
      }
    },

    toApiError(err, tooLong) {
      if (isAudioDecodeError(err)) {
        return err.code === 'TOO_LONG' && tooLong ? tooLong() : new ApiError('BAD_AUDIO')
      }
      if (err instanceof EngineBusyError) {
        return refusing('capacity', new ApiError('TOO_MANY_REQUESTS', err.message))
      }
      if (err instanceof EngineOptionError) return invalidField(err.field, err.message)
      return err
    },
  }
}
