import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { type EngineStats, isRelayEngine, type SpeechEngine } from '../engines/index.js'

/** An engine's running figures: a relay decodes nothing, so it has none. */
const statsOf = (e: SpeechEngine): EngineStats | undefined => (isRelayEngine(e) ? undefined : e.stats?.())

/** Why an admission was refused (docs/metrics.md, `earmark_admission_refusals_total`). */
export type RefusalReason =
  /** The engine's slots (live), the wait or queue for a decoder (pre-recorded), or the uploads at once. */
  | 'capacity'
  /** An audio quota has nothing left (docs/quotas.md). */
  | 'quota'
  /** A credential's, key's, end user's or project's share of the streams (docs/limits.md). */
  | 'share'
  /** Requests or grants per minute of a key or project (docs/limits.md). */
  | 'rate_limit'
  /** An address backed off or blocked after failed authentications (docs/limits.md). */
  | 'auth_backoff'

/**
 * Who may read `GET /metrics` (`EARMARK_METRICS`, docs/metrics.md "Who may read it"): a client on this
 * machine that came through no proxy (`local`, the default), anyone who reaches the port (`public`), a
 * scraper presenting `Authorization: Bearer <token>` (`token`), or nobody (`off`, a 404). The metrics hold no
 * secret and no per-key or per-user label, but they do tell traffic and refusals.
 */
export type MetricsAccess =
  | { mode: 'off' }
  | { mode: 'local' }
  | { mode: 'public' }
  | { mode: 'token'; token: string }

/** How audio reached the engine. */
export type AudioTransport = 'live' | 'prerecorded'

/**
 * Earmark's Prometheus metrics, in a registry of their own (never prom-client's global one: a test process
 * holds many apps). Every name is listed in docs/metrics.md. Labels are bounded sets: a route's pattern
 * (never its raw URL, which may hold a secret), a status code, a reason, an engine or store operation name;
 * never a key, project or end user.
 */
export interface Metrics {
  readonly registry: Registry
  /** One HTTP response: `route` is the route's pattern (`/v1/projects/:project_id`), or `unmatched`. */
  request(method: string, route: string, status: number, seconds: number): void
  /** One WebSocket upgrade answered: 101, or the refusal's status. */
  upgrade(route: string, status: number): void
  /** A credential refused with `INVALID_AUTH`. */
  authFailure(reason: string): void
  grantMinted(): void
  /** Audio a `/v1/listen` request or stream had decoded when it ended. */
  audio(transport: AudioTransport, seconds: number): void
  refused(reason: RefusalReason): void
  /** One store call that returned a promise, timed to its settling. */
  storeOperation(operation: string, seconds: number): void
  /** The open sockets per route, read at every scrape. */
  watchStreams(routes: readonly string[], open: (route: string) => number): void
  /** The engines' `stats()`, read at every scrape. */
  watchEngines(engines: readonly SpeechEngine[]): void
  /** The exposition text, and its content type. */
  render(): Promise<{ contentType: string; body: string }>
}

/** Creates the metrics of one app, with the Node.js process metrics (event-loop lag among them). */
export function createMetrics(): Metrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const registers = [registry]
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers })
  const requests = counter(
    'earmark_http_requests_total',
    'HTTP responses by method, route pattern and status.',
    ['method', 'route', 'status'],
  )
  const duration = new Histogram({
    name: 'earmark_http_request_duration_seconds',
    help: 'Time from the request to its response, by method and route pattern.',
    labelNames: ['method', 'route'] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
    registers,
  })
  const upgrades = counter(
    'earmark_ws_upgrades_total',
    'WebSocket upgrades by route and answer (101, or the status of the refusal).',
    ['route', 'status'],
  )
  const authFailures = counter(
    'earmark_auth_failures_total',
    'Credentials refused with INVALID_AUTH, by reason.',
    ['reason'],
  )
  const grants = counter('earmark_grants_minted_total', 'Grant tokens minted by POST /v1/auth/grant.', [])
  const audio = counter('earmark_audio_seconds_total', 'Seconds of audio /v1/listen decoded, by transport.', [
    'transport',
  ])
  const refusals = counter(
    'earmark_admission_refusals_total',
    'Requests and upgrades refused with 429, by reason.',
    ['reason'],
  )
  const store = new Histogram({
    name: 'earmark_store_operation_seconds',
    help: 'Store calls by operation, timed to their answer.',
    labelNames: ['operation'] as const,
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers,
  })
  // Zero from the start, so a rate() over the first scrape sees them.
  for (const transport of ['live', 'prerecorded']) audio.inc({ transport }, 0)
  for (const reason of ['capacity', 'quota', 'share', 'rate_limit', 'auth_backoff'])
    refusals.inc({ reason }, 0)

  return {
    registry,
    request(method, route, status, seconds) {
      requests.inc({ method, route, status: String(status) })
      duration.observe({ method, route }, seconds)
    },
    upgrade(route, status) {
      upgrades.inc({ route, status: String(status) })
    },
    authFailure(reason) {
      authFailures.inc({ reason })
    },
    grantMinted() {
      grants.inc()
    },
    audio(transport, seconds) {
      if (seconds > 0) audio.inc({ transport }, seconds)
    },
    refused(reason) {
      refusals.inc({ reason })
    },
    storeOperation(operation, seconds) {
      store.observe({ operation }, seconds)
    },
    watchStreams(routes, open) {
      new Gauge({
        name: 'earmark_live_streams_open',
        help: 'WebSocket streams open now, by route.',
        labelNames: ['route'] as const,
        registers,
        collect() {
          for (const route of routes) this.set({ route }, open(route))
        },
      })
    },
    watchEngines(engines) {
      watchEngines(registers, engines)
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() }
    },
  }
}

function watchEngines(registers: Registry[], engines: readonly SpeechEngine[]): void {
  const labelNames = ['engine'] as const
  const each = (read: (engine: SpeechEngine) => number | undefined) =>
    function collect(this: Gauge<'engine'>) {
      for (const engine of engines) {
        const value = read(engine)
        if (value !== undefined) this.set({ engine: engine.name }, value)
      }
    }
  new Gauge({
    name: 'earmark_engine_capacity',
    help: 'Streams the engine decodes at once in real time.',
    labelNames,
    registers,
    collect: each((e) => e.capacity),
  })
  new Gauge({
    name: 'earmark_engine_in_use',
    help: 'Engine decoders in use now (live streams and pre-recorded decodes).',
    labelNames,
    registers,
    collect: each((e) => e.inUse()),
  })
  new Gauge({
    name: 'earmark_engine_backlog_seconds',
    help: 'Seconds of live audio waiting to be decoded, all streams together.',
    labelNames,
    registers,
    collect: each((e) => statsOf(e)?.backlogSeconds),
  })
  new Gauge({
    name: 'earmark_engine_queue',
    help: 'Pre-recorded decodes waiting for a free decoder.',
    labelNames,
    registers,
    collect: each((e) => statsOf(e)?.waiting),
  })
  // Counters fed from the engine's running totals at each scrape (by what they grew since the last one).
  const counted = (name: string, help: string, read: (stats: EngineStats) => number) => {
    const seen = new Map<SpeechEngine, number>()
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        for (const engine of engines) {
          const stats = statsOf(engine)
          if (!stats) continue
          const now = read(stats)
          this.inc({ engine: engine.name }, Math.max(0, now - (seen.get(engine) ?? 0)))
          seen.set(engine, now)
        }
      },
    })
  }
  counted(
    'earmark_engine_decode_seconds_total',
    'Wall-clock seconds spent decoding; rate() it over earmark_engine_decoded_audio_seconds_total for the real-time factor.',
    (s) => s.decodeSeconds,
  )
  counted(
    'earmark_engine_decoded_audio_seconds_total',
    'Seconds of audio the engine decoded.',
    (s) => s.audioSeconds,
  )
  // The real-time factor since the previous scrape (decode time over audio time); the start-up probe's
  // figure until audio was decoded. Kept per engine, so a quiet interval keeps the last figure.
  const last = new Map<SpeechEngine, { decode: number; audio: number; rtf: number | undefined }>()
  new Gauge({
    name: 'earmark_engine_real_time_factor',
    help: 'Decode time over audio time since the previous scrape (1 = just real time); the start-up probe figure before any audio.',
    labelNames,
    registers,
    collect: each((e) => {
      const stats = statsOf(e)
      if (!stats) return undefined
      const before = last.get(e) ?? { decode: 0, audio: 0, rtf: stats.probeRealTimeFactor }
      const audio = stats.audioSeconds - before.audio
      const rtf = audio > 0 ? (stats.decodeSeconds - before.decode) / audio : before.rtf
      last.set(e, { decode: stats.decodeSeconds, audio: stats.audioSeconds, rtf })
      return rtf
    }),
  })
}
