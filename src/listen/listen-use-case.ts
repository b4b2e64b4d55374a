import type { AccessRequest } from '../access/index.js'
import { type AudioDecoderOptions, isAudioDecodeError, parseAudioOptions } from '../audio/index.js'
import type { Principal } from '../auth/index.js'
import {
  EngineBusyError,
  EngineOptionError,
  type EngineRegistry,
  isRelayEngine,
  type RelayEngine,
  RelayError,
  type SpeechEngine,
} from '../engines/index.js'
import { ApiError, ERRORS, type ErrorCode, invalidField, isApiError } from '../errors.js'
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
import type { ProjectEngines } from './project-engines.js'

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
  /** The engine serving the request's `model`: one that decodes, or a relay (docs/gateway.md). */
  engine: SpeechEngine
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
  plan(request: ListenRequest): Promise<ListenPlan>
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
  /** Projects' own upstream relays, which take precedence over `engines` (docs/gateway.md "Per project"). */
  projectEngines?: ProjectEngines
}

/** The `model` a query names (the last one, when repeated), before it is checked. */
function namedModel(query: Record<string, string | string[]>): string | null {
  const v = query.model
  const last = Array.isArray(v) ? v.at(-1) : v
  return typeof last === 'string' && last !== '' ? last : null
}

const CALLBACK_REFUSAL: Record<ListenTransport, string> = {
  prerecorded: 'callbacks are not supported by this server',
  live: 'callbacks are not supported on live streams',
}

/**
 * A relay's failure as the client's error: the far end's own code when Earmark's table knows it with that
 * status (an Earmark upstream says `BAD_AUDIO`, `MODEL_NOT_FOUND`), else the code of its status; its message
 * came scrubbed of the server-held key (docs/gateway.md "Errors").
 */
function relayApiError(err: RelayError): ApiError {
  const headers = err.retryAfter ? { headers: { 'retry-after': err.retryAfter } } : undefined
  const known = err.errCode as ErrorCode | undefined
  if (known && known in ERRORS && ERRORS[known].status === err.status)
    return new ApiError(known, err.message, headers)
  const byStatus: Record<number, ErrorCode> = {
    400: 'BAD_REQUEST',
    404: 'NOT_FOUND',
    408: 'REQUEST_TIMEOUT',
    413: 'PAYLOAD_TOO_LARGE',
    415: 'UNSUPPORTED_MEDIA_TYPE',
    429: 'TOO_MANY_REQUESTS',
    503: 'SERVICE_UNAVAILABLE',
    504: 'GATEWAY_TIMEOUT',
  }
  const code = byStatus[err.status] ?? (err.status < 500 ? 'BAD_REQUEST' : 'UPSTREAM_ERROR')
  return new ApiError(code, err.message, headers)
}

/**
 * What a `/v1/listen` query asks for, checked (options, the credential's `listen` constraints when a
 * principal is given, callbacks refused) with the engine serving its `model`: the transports' `plan`, and
 * the CLI's embedded engine, which acts for the operator and has no credential (docs/cli.md).
 */
export function planListen(
  query: Record<string, string | string[]>,
  engines: EngineRegistry,
  transport: ListenTransport,
  principal?: Principal,
  /** The project's own relay for this request (docs/gateway.md "Per project"), which comes first. */
  own?: RelayEngine,
): ListenPlan {
  // A model routed to a relay is the far end's to accept or refuse (docs/gateway.md).
  const relayed = (m: string) => own !== undefined || isRelayEngine(engines.forModel(m))
  const options = parseListenOptions(query, relayed)
  if (principal) checkListenConstraints(principal, options)
  if (options.callback) throw invalidField('callback', CALLBACK_REFUSAL[transport])
  const audio = parseAudioOptions(query)
  return { options, audio, engine: own ?? engines.forModel(options.model) }
}

/** Creates the listen use case both transports share. */
export function createListenUseCase(o: ListenUseCaseOptions): ListenUseCase {
  /** Tells the observer about a 429 `err` (a 503 of an outage is not a refusal), then returns it. */
  const refusing = (reason: 'capacity' | 'quota' | 'share', err: unknown) => {
    if (isApiError(err) && err.status === 429) o.observer?.refused(reason)
    return err
  }
  return {
    async plan(request) {
      const own = await o.projectEngines?.forRequest(request.principal.projectId, namedModel(request.query))
      return planListen(request.query, o.engines, request.transport, request.principal, own)
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
      if (err instanceof EngineBusyError) {
        return refusing('capacity', new ApiError('TOO_MANY_REQUESTS', err.message))
      }
      return toListenApiError(err, tooLong)
    },
  }
}

/**
 * What an engine or audio decoder threw, as the ApiError a client gets (`tooLong` words the `TOO_LONG`
 * refusal, else it is `BAD_AUDIO`); anything else as is.
 */
export function toListenApiError(err: unknown, tooLong?: () => ApiError): unknown {
  if (isAudioDecodeError(err)) {
    return err.code === 'TOO_LONG' && tooLong ? tooLong() : new ApiError('BAD_AUDIO')
  }
  if (err instanceof EngineBusyError) return new ApiError('TOO_MANY_REQUESTS', err.message)
  if (err instanceof EngineOptionError) return invalidField(err.field, err.message)
  if (err instanceof RelayError) return relayApiError(err)
  return err
}
