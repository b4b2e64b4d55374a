import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  LogController,
  type RouteOptions,
} from 'fastify'
import { type AccessGate, OPEN_GATE } from '../access/index.js'
import type { Authenticator } from '../auth/index.js'
import { createEngineRegistry, type EngineRegistry, type SpeechEngine } from '../engines/index.js'
import type { FetchAudioOptions } from '../listen/index.js'
import {
  drainingRefusal,
  type Lifecycle,
  type Metrics,
  type MetricsAccess,
  type Readiness,
} from '../ops/index.js'
import type { Services } from '../projects/index.js'
import { createLiveStreams, type LiveStreams } from '../revocation/index.js'
import { createSpeaker, type Speaker, type SpeakLimits } from '../tts/index.js'
import { createCorsHook } from './hooks/cors.js'
import { handleClientError, handleError, handleNotFound } from './hooks/errors.js'
import { registerJsonParser } from './hooks/json-body.js'
import { genRequestId, setRequestIdHeader } from './hooks/request-id.js'
import { registerApiDocs } from './openapi/index.js'
import { redactPath } from './redact-secrets.js'
import { lazyChildLogger } from './request-logger.js'
import { auditRoutes } from './routes/audit.js'
import { authGrantRoutes } from './routes/auth-grant.js'
import { authTokenRoutes } from './routes/auth-token.js'
import { consoleRoutes } from './routes/console.js'
import { grantRoutes } from './routes/grants.js'
import { healthRoutes } from './routes/health.js'
import { keyStateRoutes } from './routes/key-state.js'
import { keyRoutes } from './routes/keys.js'
import { DEFAULT_PRERECORDED_LIMITS, listenRoutes, type PrerecordedLimits } from './routes/listen.js'
import { memberRoutes } from './routes/members.js'
import { metricsRoutes } from './routes/metrics.js'
import { projectSettingsRoutes } from './routes/project-settings.js'
import { projectRoutes } from './routes/projects.js'
import { signingKeyRoutes } from './routes/signing-keys.js'
import { speakRoutes } from './routes/speak.js'
import { streamRoutes } from './routes/streams.js'
import { usageRoutes } from './routes/usage.js'
import type { ProxyTrust } from './trusted-proxies.js'

export interface AppOptions {
  services: Services
  authenticator: Authenticator
  /** A pino logger; omit for silence (tests). */
  logger?: FastifyBaseLogger
  /** One info line per response: method, path (no query), status, time. */
  accessLog?: boolean
  /** Largest JSON body, bytes. */
  jsonBodyLimit?: number
  /** The speech engine; without one, `/v1/listen` is not served (management-only tests). */
  engine?: SpeechEngine
  /** Every speech engine, chosen per request by `model`; default: `engine` alone. */
  engines?: EngineRegistry
  /** Speech API limits (defaults in parentheses). */
  speech?: {
    /** `{"url"}` fetching (no host allowed). */
    fetch?: Partial<FetchAudioOptions>
    /** Largest pre-recorded upload, bytes (512 MiB). */
    maxUploadBytes?: number
    /** How long a pre-recorded request waits for capacity before a 429, ms (10 000). */
    capacityWaitMs?: number
    /** Queue, upload and duration limits of pre-recorded requests (see `DEFAULT_PRERECORDED_LIMITS`). */
    prerecorded?: Partial<PrerecordedLimits>
  }
  /**
   * The access checks every authenticated route runs, the same gate the WebSocket upgrades use (binding,
   * limits, suspicious activity); default: none.
   */
  gate?: AccessGate
  /** Called for every route as it is registered (the permission-matrix guard uses it). */
  onRoute?: (route: RouteOptions) => void
  /** `/v1/speak` concurrency, queue and time limits (ignored when `speaker` is given). */
  speak?: SpeakLimits
  /** The bounded synthesis slots, when the live `/v1/speak` socket shares them; default: made from `speak`. */
  speaker?: Speaker
  /**
   * Proxies whose `X-Forwarded-For` names the client (`request.ip`, docs/limits.md "Behind a reverse
   * proxy"); default none: the connection's peer is the client.
   */
  trustProxy?: ProxyTrust
  /**
   * The live streams the socket server holds, for the streams and grants APIs (docs/live-streams.md); give
   * the socket server the same one. Default: an empty registry of this app's own.
   */
  streams?: LiveStreams
  /** Where requests are counted (`earmark_http_requests_total`, docs/metrics.md); default: nowhere. */
  metrics?: Metrics
  /** Who may read `GET /metrics` (docs/metrics.md, "Who may read it"); default `off` (not served). */
  metricsAccess?: MetricsAccess
  /** What `GET /readyz` checks; default: nothing (ready while the app admits). */
  readiness?: Readiness
  /** Draining refuses new requests with 503 and `Retry-After` (docs/deploy.md, "Graceful shutdown"). */
  lifecycle?: Lifecycle
}

/** Routes still answered while the server drains: what a balancer and a scraper ask. */
const OPERATOR_ROUTES = new Set(['/healthz', '/readyz', '/metrics'])

/** Headers browsers may send and read (docs/deepgram-compat.md §0 #10). */
const CORS_ALLOWED = [
  'authorization',
  'content-type',
  'x-deepgram-session-id',
  'x-fern-language',
  'x-fern-sdk-name',
  'x-fern-sdk-version',
  'x-fern-runtime',
  'x-fern-runtime-version',
]
const CORS_EXPOSED = [
  'dg-model-name',
  'dg-model-uuid',
  'dg-char-count',
  'dg-request-id',
  'dg-error',
  'x-request-id',
]

/** The HTTP API. Nothing listens until the caller says so; tests use `app.inject()`. */
export async function createApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: options.logger,
    // Fastify's own two lines a request are replaced by the one access line below.
    logController: new LogController({ disableRequestLogging: true }),
    childLoggerFactory: lazyChildLogger,
    genReqId: genRequestId,
    requestIdHeader: false,
    bodyLimit: options.jsonBodyLimit ?? 64 * 1024,
    exposeHeadRoutes: false,
    return503OnClosing: true,
    // A URL Fastify cannot decode (`%ED%A0%80`) never reaches a route or the error handler otherwise.
    frameworkErrors: handleError,
    clientErrorHandler: handleClientError,
    // Only when proxies are listed: without it `request.ip` is the socket's peer, with no header parsed.
    ...(options.trustProxy ? { trustProxy: options.trustProxy.trusts } : {}),
  })
  if (options.onRoute) app.addHook('onRoute', options.onRoute)

  // Declared up front so every request object keeps one shape (V8 deoptimises a property added later).
  app.decorateRequest('principal', null)
  app.decorateRequest('access', null)
  // One synchronous hook for what every response carries: each hook Fastify runs costs time on every request.
  const cors = createCorsHook({
    allowedHeaders: CORS_ALLOWED,
    exposedHeaders: CORS_EXPOSED,
    maxAgeSeconds: 600,
  })
  const { lifecycle, metrics } = options
  app.addHook('onRequest', function everyResponse(request, reply, done) {
    setRequestIdHeader(request, reply)
    if (lifecycle) {
      // Counted until the response is out or the client left: a drain waits for these (docs/deploy.md).
      reply.raw.once('close', lifecycle.track())
      if (lifecycle.draining && !OPERATOR_ROUTES.has(request.routeOptions.url ?? '')) {
        cors(request, reply, () => done(drainingRefusal()))
        return
      }
    }
    cors(request, reply, done)
  })
  if (metrics) {
    app.addHook('onResponse', function countResponse(request, reply, done) {
      // The route's pattern, never the raw URL: a path may hold a pasted secret.
      metrics.request(
        request.method,
        request.routeOptions.url ?? 'unmatched',
        reply.statusCode,
        reply.elapsedTime / 1000,
      )
      done()
    })
  }
  // server.close() ends only the keep-alive connections idle at that moment: one whose request was still
  // running (a speech synthesis, a decode) would hold the close until its keep-alive timeout (72 s). Sweep
  // them as they go idle, at no cost per request.
  let sweeper: NodeJS.Timeout | undefined
  app.addHook('preClose', (done) => {
    sweeper = setInterval(() => app.server.closeIdleConnections(), 50)
    sweeper.unref()
    done()
  })
  app.addHook('onClose', (_instance, done) => {
    clearInterval(sweeper)
    done()
  })
  if (options.accessLog) {
    app.addHook('onResponse', async (request, reply) => {
      // The path only, with anything shaped like a key or token cut out: a query string is the client's
      // to fill and is never logged, and a client may paste a secret into a path (`/v1/auth/token/emk_…`).
      request.log.info(
        {
          method: request.method,
          path: redactPath(request.url),
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
        },
        'request',
      )
    })
  }
  app.setErrorHandler(handleError)
  app.setNotFoundHandler(handleNotFound)
  registerJsonParser(app)

  // Gives preflights a route to reach: the hook above answers them; anything else is a 404.
  app.options('*', handleNotFound)
  // Before the routes: the document (`GET /openapi.json`, docs/openapi.md) sees the routes added after it.
  await registerApiDocs(app)

  const deps = {
    services: options.services,
    authenticator: options.authenticator,
    gate: options.gate ?? OPEN_GATE,
  }
  healthRoutes(app, { ...deps, ...(options.readiness ? { readiness: options.readiness } : {}) })
  if (metrics && options.metricsAccess && options.metricsAccess.mode !== 'off') {
    metricsRoutes(app, { metrics, access: options.metricsAccess })
  }
  consoleRoutes(app)
  projectRoutes(app, deps)
  projectSettingsRoutes(app, deps)
  keyRoutes(app, deps)
  keyStateRoutes(app, deps)
  memberRoutes(app, deps)
  authGrantRoutes(app, deps)
  authTokenRoutes(app, deps)
  signingKeyRoutes(app, deps)
  usageRoutes(app, deps)
  auditRoutes(app, deps)
  const streams = options.streams ?? createLiveStreams({ clock: options.services.clock })
  streamRoutes(app, { ...deps, streams })
  grantRoutes(app, { ...deps, streams })
  speakRoutes(app, { ...deps, speaker: options.speaker ?? createSpeaker(options.speak) })
  if (options.engine) {
    const maxUploadBytes = options.speech?.maxUploadBytes ?? 512 * 1024 * 1024
    listenRoutes(app, {
      ...deps,
      engines: options.engines ?? createEngineRegistry([{ engine: options.engine }]),
      maxUploadBytes,
      capacityWaitMs: options.speech?.capacityWaitMs ?? 10_000,
      limits: { ...DEFAULT_PRERECORDED_LIMITS, ...options.speech?.prerecorded },
      fetch: { allowedHosts: [], maxBytes: maxUploadBytes, timeoutMs: 120_000, ...options.speech?.fetch },
    })
  }
  return app
}
