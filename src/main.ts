import { join } from 'node:path'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { type DestinationStream, pino } from 'pino'
import { PinoPretty } from 'pino-pretty'
import {
  type AccessStage,
  createAccessGate,
  createBindingStage,
  createMemoryJtiLedger,
  createRedeemStage,
} from './access/index.js'
import { createAuditLog } from './audit/index.js'
import {
  type Authenticator,
  type Clock,
  createAuthenticator,
  createGrants,
  parseAuthorization,
  systemClock,
} from './auth/index.js'
import type { Config } from './config/index.js'
import {
  createEngine,
  createEngineRegistry,
  type EngineRegistry,
  type RegisteredEngine,
  type SpeechEngine,
} from './engines/index.js'
import { WARMUP_SPEECH, warmupSpeech } from './engines/pocketsphinx/warmup-speech.js'
import { createSecretBox, loadSecretsKey } from './engines/upstream/secret-box.js'
import { createUpstreamEngine } from './engines/upstream/upstream-engine.js'
import { type ApiError, isApiError } from './errors.js'
import { createApp, createProxyTrust, redactSecrets } from './http/index.js'
import { createLastResort } from './last-resort.js'
import {
  createLimitStage,
  createMemoryRateLimitBackend,
  createRateLimits,
  createRefusalAudit,
} from './limits/index.js'
import {
  createCapacityShare,
  createProjectEngines,
  defaultShare,
  type ProjectEngines,
} from './listen/index.js'
import {
  createLifecycle,
  createMetrics,
  createReadiness,
  drainingRefusal,
  type Lifecycle,
  type Metrics,
  type ReadinessCheck,
  timedStore,
} from './ops/index.js'
import {
  type BootstrapResult,
  bootstrapIfEmpty,
  createKeySweeper,
  createProjectSettingsCache,
  endUserOf,
  type KeySweeper,
  type ProjectSettingsCache,
  type Services,
} from './projects/index.js'
import { createQuotaEnforcer } from './quotas/index.js'
import {
  createGrantDenylist,
  createLiveStreams,
  createRevocationBus,
  createStreamGuard,
  type RevocationBus,
} from './revocation/index.js'
import type { Store } from './store/index.js'
import { widePermissions } from './store/sqlite/sqlite-file-modes.js'
import { createSqliteStore } from './store/sqlite/sqlite-store.js'
import {
  createSuspiciousActivity,
  DEFAULT_SUSPICIOUS_POLICY,
  type SuspiciousActivity,
} from './suspicious/index.js'
import { createSpeaker } from './tts/index.js'
import {
  attachSocketRoutes,
  CLOSE,
  createListenRoute,
  createSpeakRoute,
  type SocketServer,
} from './ws/index.js'

export { warmupSpeech }

/**
 * The configured speech engines (`EARMARK_ENGINE`), each with its capacity configured or, for `auto`,
 * measured by the engine itself (PocketSphinx decodes real speech once; docs/speech.md, "The engine seam").
 */
export async function createSpeechEngines(
  config: Pick<Config, 'engines' | 'capacity' | 'upstream'>,
  log: FastifyBaseLogger,
): Promise<EngineRegistry> {
  const entries: RegisteredEngine[] = []
  try {
    for (const entry of config.engines) {
      entries.push({
        engine: await createNamedEngine(entry.name, config, log),
        models: entry.models,
      })
    }
  } catch (err) {
    await Promise.allSettled(entries.map((e) => e.engine.close()))
    throw err
  }
  return createEngineRegistry(entries)
}

async function createNamedEngine(
  name: Config['engines'][number]['name'],
  { capacity, upstream }: Pick<Config, 'capacity' | 'upstream'>,
  log: FastifyBaseLogger,
): Promise<SpeechEngine> {
  switch (name) {
    case 'upstream': {
      if (!upstream) throw new RangeError('The upstream engine needs EARMARK_UPSTREAM_URL and _KEY.')
      // The key is a secret of this server: the log names the service, never the key.
      log.info({ upstream: new URL(upstream.url).origin }, 'relaying to an upstream speech service')
      return createEngine('upstream', upstream)
    }
    case 'pocketsphinx': {
      const warmup = warmupSpeech()
      return createEngine('pocketsphinx', {
        capacity,
        ...(warmup ? { warmup } : {}),
        onKeywordsUnavailable: (reason) =>
          log.warn({ reason }, 'keyword boosting is off: keywords and keyterm are ignored'),
        onCapacity: (m) => {
          if (m.realTimeFactor === undefined) {
            log.warn(
              { capacity: m.capacity },
              `no ${WARMUP_SPEECH} (Debian pocketsphinx-testdata) to measure with; capacity set`,
            )
          } else {
            const rtf = Math.round(m.realTimeFactor * 1000) / 1000
            log.info({ real_time_factor: rtf, capacity: m.capacity }, 'measured speech capacity')
          }
        },
      })
    }
  }
}

/**
 * Projects' own upstreams (docs/gateway.md "Per project"), when `EARMARK_UPSTREAM_ALLOWED_HOSTS` names any:
 * their keys are sealed for the store under the secrets key, and each project's relay is built on first use.
 */
function projectUpstreams(
  config: Pick<Config, 'upstreamAllowedHosts' | 'upstreamCapacity' | 'secretsKey' | 'dataDir'>,
  services: Services,
  settings: ProjectSettingsCache,
): ProjectEngines | undefined {
  if (config.upstreamAllowedHosts.length === 0) return undefined
  const box = createSecretBox(loadSecretsKey(config.secretsKey, join(config.dataDir, 'secrets.key')))
  services.upstreams = { allowedHosts: config.upstreamAllowedHosts, seal: box.seal }
  return createProjectEngines({
    settings,
    openKey: box.open,
    createRelay: (u) => createUpstreamEngine({ ...u, capacity: config.upstreamCapacity }),
  })
}

/** Secrets must never reach a log line, even through a header a future log call might include. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  'headers["sec-websocket-protocol"]',
  'key',
  'secret',
  'access_token',
]

/** Whether log lines are written for people (`pino-pretty`): asked for, or `auto` on a terminal. */
export function prettyLogs(format: Config['logFormat'], isTty: boolean): boolean {
  return format === 'pretty' || (format === 'auto' && isTty)
}

/**
 * The process logger: to `destination` when given (JSON lines unless `logFormat` is `pretty`), else to
 * stdout, as JSON lines or, per `prettyLogs`, human-readable ones.
 */
export function createLogger(
  config: Pick<Config, 'logLevel'> & Partial<Pick<Config, 'logFormat'>>,
  destination?: DestinationStream,
  isTty = process.stdout.isTTY === true,
) {
  const format = config.logFormat ?? 'json'
  const options = {
    level: config.logLevel,
    redact: { paths: LOG_REDACT, censor: '[redacted]' },
    // The last line of defence: a key or JWT that reached any field (an error message quoting input, an
    // upgrade URL) is cut out of the finished line before it is written.
    hooks: { streamWrite: redactSecrets },
  }
  if (destination ? format === 'pretty' : prettyLogs(format, isTty)) {
    // Synchronous, in this thread (no transport worker): the redaction hook has run on the line already.
    return pino(
      options,
      PinoPretty({
        colorize: !destination && isTty,
        translateTime: 'SYS:HH:MM:ss.l',
        sync: true,
        destination: destination ?? 1,
      }),
    )
  }
  return destination ? pino(options, destination) : pino(options)
}

/** Store, clock and grant service for a data directory: what the server and the CLI share. */
export async function openServices(
  config: Pick<Config, 'sqlitePath'> & Partial<Pick<Config, 'databaseUrl' | 'databasePoolSize'>>,
  clock: Clock = systemClock,
  /** A failed audit write (never rethrown: auditing never fails a request). */
  onAuditError?: (err: unknown, context: { dropped?: number }) => void,
  /** A lost database connection the store recovers from by itself (PostgreSQL only; docs/store.md). */
  onStoreError?: (err: unknown) => void,
  /** Wraps the store before anything uses it (the server times its calls: docs/metrics.md). */
  wrapStore: (store: Store) => Store = (store) => store,
): Promise<Services> {
  // EARMARK_DATABASE_URL picks PostgreSQL (docs/store.md); loaded only then, so SQLite never loads pg.
  const opened = config.databaseUrl
    ? await (await import('./store/postgres/postgres-store.js')).openPostgresStore({
        url: config.databaseUrl,
        ...(config.databasePoolSize ? { poolSize: config.databasePoolSize } : {}),
        ...(onStoreError ? { onError: onStoreError } : {}),
      })
    : createSqliteStore({ path: config.sqlitePath })
  const store = wrapStore(opened)
  try {
    const grants = await createGrants({ store, clock })
    const audit = createAuditLog({
      store,
      clock,
      onError: (err, context) => onAuditError?.(err, context),
    })
    return { store, clock, grants, audit }
  } catch (err) {
    await store.close()
    throw err
  }
}

export interface Earmark {
  app: FastifyInstance
  services: Services
  authenticator: Authenticator
  /** The default speech engine (`engines.default`). */
  engine: SpeechEngine
  /** Every configured speech engine, chosen per request by `model`. */
  engines: EngineRegistry
  /** The WebSocket routes (`sockets.paths`) and how many upgrades and sockets are live. */
  sockets: SocketServer
  /** Where revocations are announced; live streams of a revoked credential close (docs/revocation.md). */
  revocations: RevocationBus
  /** Suspicious-activity detection (docs/suspicious-activity.md); `idle()` waits for its evaluations. */
  suspicious: SuspiciousActivity
  /** Records expired keys and deletes them after their retention (docs/audit.md). */
  sweeper: KeySweeper
  bootstrap: BootstrapResult | undefined
  /** This node's Prometheus metrics (docs/metrics.md). */
  metrics: Metrics
  /** Whether the node admits new work (draining after SIGTERM, docs/deploy.md). */
  lifecycle: Lifecycle
  /**
   * Graceful shutdown, before `close()` (docs/deploy.md, "Graceful shutdown"): new requests and upgrades get
   * 503 with `Retry-After` and `/readyz` 503 at once; requests and live streams in flight run on for up to
   * `deadlineMs`; streams still open then end as a CloseStream would (final results, Metadata) and close
   * with 1001 `SHUTDOWN-0001`; requests still running get up to `deadlineMs` more, then are left to
   * `close()`, which stops them (503).
   */
  drain(deadlineMs: number): Promise<void>
  close(): Promise<void>
}

/** Composition root: config → store → auth → app. Bootstraps an empty store. Does not listen. */
export async function createEarmark(
  config: Config,
  clock: Clock = systemClock,
  /** Where log lines go instead of stdout (tests keep them in a file). */
  logDestination?: DestinationStream,
): Promise<Earmark> {
  const logger = createLogger(config, logDestination)
  const metrics = createMetrics()
  const lifecycle = createLifecycle()
  const services = await openServices(
    config,
    clock,
    (err, context) => logger.error({ err, ...context }, 'audit write failed'),
    // The code and message only: never the connection URL, which may hold a password.
    (err) =>
      logger.warn(
        { code: (err as { code?: unknown })?.code, error: (err as Error)?.message },
        'database connection lost; reconnecting',
      ),
    (store) => timedStore(store, metrics.storeOperation),
  )
  services.grants = countedGrants(services.grants, metrics)
  const wide = widePermissions(config.sqlitePath)
  if (wide.length > 0) {
    logger.warn(
      { paths: wide },
      'other users can read the data directory or database, which hold the grant-signing secrets: chmod 700 the directory and 600 the files',
    )
  }
  const bootstrap = await bootstrapIfEmpty(services, {
    ownerKey: config.bootstrapKey,
    projectName: config.projectName,
    ownerEmail: config.ownerEmail,
  })
  // With EARMARK_REDIS_URL, what every node must share lives in Redis (docs/redis.md): rate-limit windows, the
  // `max_uses` ledger, the revocation bus. Loaded only then: the default path never loads ioredis.
  const shared = config.redis
    ? (await import('./store/redis/index.js')).createRedisShared({
        settings: config.redis,
        clock,
        onStateChange: (state, detail) =>
          state === 'ready'
            ? logger.info({ redis: detail.target }, 'redis reachable again')
            : logger.warn({ redis: detail.target, error: detail.error }, 'redis unreachable'),
        // The message only: a reply error can carry its command's arguments.
        onError: (err) => logger.debug({ error: (err as Error)?.message }, 'redis call failed'),
        onListenerError: (err) => logger.error({ err }, 'revocation listener failed'),
      })
    : undefined
  const revocations =
    shared?.revocations ??
    createRevocationBus({
      onListenerError: (err) => logger.error({ err }, 'revocation listener failed'),
    })
  services.revocations = revocations
  const guard = createStreamGuard({
    store: services.store,
    clock,
    bus: revocations,
    onError: (err) => logger.error({ err }, 'revocation check failed'),
  })
  // A signing key rotated or retired by another process is used (or refused) within a poll.
  revocations.subscribe((e) => {
    if (e.type === 'credentials-changed') void services.grants.reload().catch(() => {})
  })
  // Suspicious activity (docs/suspicious-activity.md): told which key a refused credential belongs to.
  const suspicious = createSuspiciousActivity({
    store: services.store,
    clock,
    ...(services.audit ? { audit: services.audit } : {}),
    revocations,
    policy: config.suspicious ?? DEFAULT_SUSPICIOUS_POLICY,
    // With Redis every node counts into the same windows (docs/redis.md, "Suspicious activity"); an outage
    // skips observations, logged once (the message only: never the URL).
    ...(shared
      ? {
          windows: shared.activityWindows({
            onUnavailable: (error) =>
              logger.warn(
                { error },
                'suspicious-activity windows unavailable; observations skipped until redis answers',
              ),
          }),
        }
      : {}),
    onError: (err) => logger.error({ err }, 'suspicious-activity check failed'),
  })
  // Refusals recorded in the audit trail, a flood counted rather than written (docs/limits.md, docs/audit.md).
  const refusals = createRefusalAudit({ audit: services.audit, clock })
  // Why each INVALID_AUTH was given, for `earmark_auth_failures_total` (the very error object is the key).
  const authReasons = new WeakMap<ApiError, string>()
  const authenticator = classifyFailures(
    createAuthenticator({
      ...services,
      onRefused: (reason, credential, error) => {
        authReasons.set(error, reason)
        suspicious.onRefused(reason, credential, error)
        refusals.authRefused(reason, credential)
      },
    }),
    authReasons,
  )
  // The access checks of every authenticated request and upgrade, cheapest refusals first
  // (docs/credential-options.md, docs/limits.md, docs/audit.md).
  const accessStages: AccessStage[] = [
    {
      name: 'metrics',
      // An upgrade with no credential at all is refused before the authenticator is asked.
      authFailed: (_request, error) => metrics.authFailure(authReasons.get(error) ?? 'missing'),
    },
    createBindingStage(),
  ]
  // Rate limits and failed-authentication back-off (docs/limits.md): counted in this process's memory, or in Redis.
  const projectSettings = createProjectSettingsCache(services.store)
  accessStages.push(
    createLimitStage({
      limits: config.limits,
      rates: createRateLimits(shared?.rateLimits ?? createMemoryRateLimitBackend()),
      projectSettings: (id) => projectSettings.get(id),
      refusals,
      onAddressBlocked: (e) =>
        logger.warn(
          { client: e.bucket, limit: e.limit, ms: e.ms },
          'address refused after failed authentications',
        ),
      onError: (err) => logger.error({ err }, 'failed-authentication count failed'),
      onRefused: metrics.refused,
    }),
  )
  // `max_uses` is redeemed last, so only a request every other stage admitted spends a use.
  accessStages.push(createRedeemStage({ ledger: shared?.jtiLedger ?? createMemoryJtiLedger({ clock }) }))
  // A grant token revoked by its jti (docs/live-streams.md) is refused before anything else is counted for it.
  const denylist = createGrantDenylist({ bus: revocations, clock })
  accessStages.unshift(denylist.stage)
  // Suspicious activity watches first: it refuses nothing, and must see what a later stage refuses.
  accessStages.unshift(suspicious.stage)
  const gate = createAccessGate(accessStages)
  const engines = await createSpeechEngines(config, logger)
  const engine = engines.default
  const projectEngines = projectUpstreams(config, services, projectSettings)
  // One share per key and end user, counted across live streams and pre-recorded requests: in this process,
  // or with Redis across every node (docs/redis.md, "Stream caps").
  const share = (shared ? shared.capacityShare : createCapacityShare)(
    {
      perCredential: config.maxStreamsPerCredential ?? defaultShare(engine.capacity),
      perKey: config.maxStreamsPerKey,
      perEndUser: config.maxStreamsPerEndUser ?? defaultShare(engine.capacity),
      perProject: config.maxStreamsPerProject,
    },
    {
      // A project's and a key's own caps (docs/limits.md), read when the limits stage admitted the request.
      projectLimits: (id) => projectSettings.peek(id)?.limits,
      onRefused: (principal, r) =>
        refusals.refused({
          projectId: principal.projectId,
          limit: r.limit,
          value: r.value,
          retryAfterMs: r.retryAfterMs,
          keyId: r.limit === 'concurrent_streams_per_project' ? null : principal.keyId,
          actorKeyId: principal.keyId,
          endUser: endUserOf(principal),
        }),
    },
  )
  // Audio quotas, one ledger for live streams and pre-recorded requests (docs/quotas.md).
  const quotas = createQuotaEnforcer({
    store: services.store,
    clock,
    // With Redis, open reservations are shared by every node (docs/redis.md, "Quotas").
    ...(shared ? { ledger: shared.quotaLedger(services.store) } : {}),
    audit: services.audit,
    projectSettings: (id) => projectSettings.get(id),
  })
  const observer = { refused: metrics.refused, audio: metrics.audio }
  // One set of synthesis slots for `POST /v1/speak` and the live socket.
  const speaker = createSpeaker({
    ...(config.speakConcurrency ? { concurrency: config.speakConcurrency } : {}),
    maxQueue: config.speakQueue,
    waitMs: config.speakWaitMs,
    timeoutMs: config.speakTimeoutMs,
  })
  // One rule for who the client is behind a reverse proxy, HTTP and upgrades alike (docs/limits.md).
  const trustProxy = config.trustProxy.length > 0 ? createProxyTrust(config.trustProxy) : undefined
  // Open live streams, listed (and closed by revoking their credential) through the API.
  const streams = createLiveStreams({ clock })
  const app = await createApp({
    services,
    authenticator,
    streams,
    logger,
    ...(trustProxy ? { trustProxy } : {}),
    accessLog: config.accessLog,
    gate,
    jsonBodyLimit: config.jsonBodyLimit,
    engine,
    engines,
    speaker,
    speech: {
      fetch: {
        allowedHosts: config.fetchAllowedHosts,
        timeoutMs: config.fetchTimeoutMs,
        idleTimeoutMs: config.fetchIdleTimeoutMs,
      },
      maxUploadBytes: config.maxUploadBytes,
      capacityWaitMs: config.capacityWaitMs,
      prerecorded: {
        maxQueue: config.listenQueue,
        maxUploads: config.listenMaxUploads,
        maxAudioSeconds: config.maxAudioSeconds,
        uploadIdleTimeoutMs: config.uploadIdleTimeoutMs,
        uploadDir: config.uploadDir,
        share,
        quotas,
        ...(projectEngines ? { projectEngines } : {}),
        observer,
      },
    },
    metrics,
    metricsAccess: config.metrics,
    lifecycle,
    readiness: createReadiness(readinessChecks({ services, engines, lifecycle, shared })),
  })
  const sockets = attachSocketRoutes(app, {
    authenticator,
    routes: [
      createListenRoute({
        services,
        engine,
        engines,
        limits: { idleTimeoutMs: config.wsIdleTimeoutMs, keepAliveOnlyMs: config.wsKeepAliveOnlyMs },
        share,
        quotas,
        ...(projectEngines ? { projectEngines } : {}),
        observer,
      }),
      createSpeakRoute({ services, synthesize: speaker.synthesize }),
    ],
    guard,
    streams,
    ...(services.audit ? { audit: services.audit } : {}),
    ...(trustProxy ? { trustProxy } : {}),
    gate,
    refuseNew: () => (lifecycle.draining ? drainingRefusal() : undefined),
    onUpgrade: metrics.upgrade,
  })
  metrics.watchStreams(sockets.paths, (path) => sockets.openOn(path))
  metrics.watchEngines(engines.engines)
  // Expired keys are recorded, revoked everywhere and deleted after their retention (docs/audit.md).
  const sweeper = createKeySweeper({
    services,
    intervalMs: config.keySweepIntervalMs,
    retentionSeconds: config.expiredKeyRetentionSeconds,
    onError: (err) => logger.error({ err }, 'expired-key sweep failed'),
  })
  sweeper.start()
  return {
    app,
    services,
    authenticator,
    engine,
    engines,
    sockets,
    revocations,
    suspicious,
    sweeper,
    bootstrap,
    metrics,
    lifecycle,
    drain: async (deadlineMs) => {
      lifecycle.startDraining()
      const finished = await within(deadlineMs, Promise.all([lifecycle.idle(), sockets.idle()]))
      if (!finished) {
        logger.info(
          { streams: sockets.active, requests: lifecycle.inFlight, ...CLOSE.SHUTDOWN },
          'drain deadline reached: closing the streams still open',
        )
      }
      await sockets.shutdown(CLOSE.SHUTDOWN)
      // A pre-recorded request is one answer the client waits for whole (an upload, a decode): it gets one
      // more period to give it, where a stream had its finals already.
      if (!(await within(deadlineMs, lifecycle.idle()))) {
        logger.warn({ requests: lifecycle.inFlight }, 'requests still running after the drain: stopping them')
      }
    },
    close: async () => {
      await sweeper.close()
      await app.close()
      guard.close()
      denylist.close()
      await shared?.close()
      await engines.close()
      await projectEngines?.close()
      await services.audit?.close()
      await services.store.close()
    },
  }
}

/** True when `work` settled within `ms`, false when the time ran out first. */
async function within(ms: number, work: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([work.then(() => true), late])
  } finally {
    clearTimeout(timer)
  }
}

/** The readiness checks of `/readyz` (docs/deploy.md, "Health and readiness"). */
function readinessChecks(o: {
  services: Services
  engines: EngineRegistry
  lifecycle: Lifecycle
  shared: { client: { ping(): Promise<unknown> } } | undefined
}): ReadinessCheck[] {
  const checks: ReadinessCheck[] = [
    {
      name: 'admitting',
      check: () => {
        if (o.lifecycle.draining) throw new Error('draining')
      },
    },
    // One indexed read: the store answers (and, for PostgreSQL, a pooled connection is free).
    { name: 'store', check: async () => void (await o.services.store.isEmpty()) },
    {
      name: 'engine',
      check: () => {
        if (!o.engines.engines.every((e) => e.capacity > 0)) throw new Error('no decoder')
      },
    },
  ]
  const { shared } = o
  if (shared) checks.push({ name: 'redis', check: async () => void (await shared.client.ping()) })
  return checks
}

/** `grants` with every mint counted (`earmark_grants_minted_total`). */
function countedGrants(grants: Services['grants'], metrics: Metrics): Services['grants'] {
  const mint = grants.mint
  grants.mint = (input) => {
    const minted = mint(input)
    metrics.grantMinted()
    return minted
  }
  return grants
}

/**
 * `authenticator` with each `INVALID_AUTH` it throws labelled in `reasons` when the authenticator's own
 * `onRefused` did not name one: no credential, one that is not `Token`/`Bearer` shaped, or one that matches
 * nothing (docs/metrics.md, `earmark_auth_failures_total`).
 */
function classifyFailures(authenticator: Authenticator, reasons: WeakMap<ApiError, string>): Authenticator {
  const label = (reason: string) => (err: unknown) => {
    if (isApiError(err) && !reasons.has(err)) reasons.set(err, reason)
    throw err
  }
  return {
    authenticate: (scheme, secret) => authenticator.authenticate(scheme, secret).catch(label('unknown')),
    authenticateHeader: (header) =>
      authenticator
        .authenticateHeader(header)
        .catch(
          label(header === undefined ? 'missing' : parseAuthorization(header) ? 'unknown' : 'malformed'),
        ),
    peekHeader: (header) => authenticator.peekHeader(header),
    peek: (scheme, secret) => authenticator.peek(scheme, secret),
  }
}

/** How long `earmark serve` waits for a clean close on a signal or a fatal fault before it exits anyway, ms. */
const SHUTDOWN_DEADLINE_MS = 15_000

/** `earmark serve`: start, print the generated owner key once, listen, stop cleanly on SIGTERM/SIGINT. */
export async function serve(config: Config): Promise<Earmark> {
  const earmark = await createEarmark(config)
  const { bootstrap, app } = earmark
  if (bootstrap) {
    app.log.info(
      { project_id: bootstrap.project.id, api_key_id: bootstrap.keyId },
      'bootstrapped a new project',
    )
    if (bootstrap.generatedSecret) {
      // Shown once, on stdout, never through the logger: only its hash is kept.
      process.stdout.write(
        `\nEarmark created project ${bootstrap.project.id} and an owner key.\n` +
          `Owner API key (shown once, store it now): ${bootstrap.generatedSecret}\n\n`,
      )
    }
  }
  const address = await app.listen({ port: config.port, host: config.host })
  app.log.info(
    {
      url: address,
      data_dir: config.dataDir,
      store: earmark.services.store.kind,
      engine: earmark.engine.name,
      engines: earmark.engines.engines.map((e) => e.name),
      capacity: earmark.engine.capacity,
    },
    'listening',
  )
  let stopping = false
  const stop = async (signal: string, exitCode = 0) => {
    if (stopping) return
    stopping = true
    // A signal drains first (docs/deploy.md, "Graceful shutdown"); a fault closes at once.
    const drains = exitCode === 0
    const drainMs = drains ? config.drainMs : 0
    app.log.info({ signal, drain_ms: drainMs }, 'shutting down')
    // A close that hangs (a fault left something half-done) must not keep a broken process alive.
    setTimeout(() => process.exit(exitCode || 1), 2 * drainMs + SHUTDOWN_DEADLINE_MS).unref()
    try {
      if (drains) await earmark.drain(drainMs)
      await earmark.close()
    } catch (err) {
      app.log.error({ err }, 'shutdown failed')
      exitCode ||= 1
    }
    process.exit(exitCode)
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGINT'))
  const lastResort = createLastResort({
    log: app.log,
    shutdown: (reason) => void stop(reason, 1),
    closeStream: (requestId) => earmark.sockets.fault(requestId),
  })
  process.on('uncaughtException', (err) => lastResort.onUncaughtException(err))
  process.on('unhandledRejection', (reason) => lastResort.onUnhandledRejection(reason))
  return earmark
}
