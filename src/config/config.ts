import { resolve } from 'node:path'
import { z } from 'zod'
import { type EngineEntry, parseEngineList } from '../engines/engine-names.js'
import { addressRangeProblem, type ServerLimits } from '../limits/index.js'
import type { MetricsAccess } from '../ops/index.js'
import { type SuspiciousPolicy, suspiciousPolicyFromEnv } from '../suspicious/index.js'

/** A comma-separated list of addresses and CIDR ranges (`127.0.0.1,10.0.0.0/8,fd00::/8`); default empty. */
const addressRanges = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((a) => a.trim())
      .filter((a) => a.length > 0),
  )
  .refine((list) => list.every((a) => addressRangeProblem(a) === undefined), {
    message: 'must be IPv4 or IPv6 addresses or CIDR ranges, comma-separated',
  })

/** Everything Earmark reads from its environment, validated once at start. */
const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  EARMARK_DATA_DIR: z.string().min(1).default('./data'),
  /** PostgreSQL instead of the SQLite file (docs/store.md): `postgres://user[:password]@host:port/database`. */
  EARMARK_DATABASE_URL: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))
    .refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
      message: 'must be a postgres:// or postgresql:// URL',
    }),
  /** Pooled PostgreSQL connections per node (docs/store.md); the change feed holds one more. */
  EARMARK_DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(1000).default(10),
  EARMARK_BOOTSTRAP_KEY: z.string().min(1).optional(),
  EARMARK_PROJECT_NAME: z.string().min(1).default('Earmark'),
  EARMARK_OWNER_EMAIL: z.string().min(3).default('owner@earmark.local'),
  EARMARK_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** `json` lines, `pretty` (human-readable), or `auto`: pretty when stdout is a terminal, else JSON. */
  EARMARK_LOG_FORMAT: z.enum(['auto', 'json', 'pretty']).default('auto'),
  /** One log line per request (method, path, status, time: never a header or query value). */
  EARMARK_ACCESS_LOG: z
    .enum(['true', 'false', '1', '0'])
    .default('true')
    .transform((v) => v === 'true' || v === '1'),
  /** Largest JSON body the management API reads, bytes. */
  EARMARK_JSON_BODY_LIMIT: z.coerce
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(64 * 1024),
  /**
   * The speech engines, comma-separated, each `name` or `name:model|model…` for the `model` values it serves
   * (`*` at the end matches any rest); the first without a model list serves every other model.
   */
  EARMARK_ENGINE: z
    .string()
    .default('pocketsphinx')
    .transform((v, ctx) => {
      try {
        return parseEngineList(v)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
        return z.NEVER
      }
    }),
  /** The upstream engine's Deepgram-compatible service (docs/gateway.md): its base URL. */
  EARMARK_UPSTREAM_URL: z.string().url().optional(),
  /** The upstream's server-held key: only ever sent upstream in `Authorization`, never logged. */
  EARMARK_UPSTREAM_KEY: z.string().min(1).optional(),
  /** `token` (an API key, the default) or `bearer` (a JWT) for the upstream key. */
  EARMARK_UPSTREAM_SCHEME: z.enum(['token', 'bearer']).default('token'),
  /** Hosts (`name` or `name:port`) a project's own upstream may name; empty: per-project upstreams are off. */
  EARMARK_UPSTREAM_ALLOWED_HOSTS: z.string().default(''),
  /** 32 bytes, base64: seals stored secrets (projects' upstream keys); default a key file in the data dir. */
  EARMARK_SECRETS_KEY: z.string().optional(),
  /** Relayed streams and pre-recorded requests at once. */
  EARMARK_UPSTREAM_CAPACITY: z.coerce.number().int().min(1).max(100_000).default(1000),
  /** Concurrent real-time streams the engine admits: a number, or `auto` to measure at start. */
  EARMARK_CAPACITY: z.union([z.literal('auto'), z.coerce.number().int().min(1).max(256)]).default('auto'),
  /** How long a pre-recorded request may wait for free capacity before a 429, ms. */
  EARMARK_CAPACITY_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  /** Comma-separated hosts (`name` or `name:port`) `/v1/listen` may fetch `{"url"}` audio from; default none. */
  EARMARK_FETCH_ALLOWED_HOSTS: z.string().default(''),
  /** Largest pre-recorded upload, bytes. */
  EARMARK_MAX_UPLOAD_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(512 * 1024 * 1024),
  /** Pre-recorded requests that may wait for a decoder at once; one more gets 429 at once. */
  EARMARK_LISTEN_QUEUE: z.coerce.number().int().min(0).max(1024).default(8),
  /** Pre-recorded uploads that may be received at once (each spooled to disk); one more gets 429 at once. */
  EARMARK_LISTEN_MAX_UPLOADS: z.coerce.number().int().min(1).max(1024).default(16),
  /** Longest pre-recorded audio, seconds: refused with 413 from the header when known, else cut off. */
  EARMARK_MAX_AUDIO_SECONDS: z.coerce.number().int().min(1).max(86_400).default(3600),
  /** An upload body that sends no byte for this long gets 408, ms. */
  EARMARK_UPLOAD_IDLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  /** Where uploads are spooled while they arrive (0700, files 0600); default `<data dir>/uploads`. */
  EARMARK_UPLOAD_DIR: z.string().min(1).optional(),
  /** A `{"url"}` fetch must be complete (every hop, the whole body) within this, ms. */
  EARMARK_FETCH_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(120_000),
  /** A `{"url"}` fetch that sends no byte for this long is given up, ms. */
  EARMARK_FETCH_IDLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** Live streams close with NET-0001 after this long without audio (or KeepAlive once audio flowed), ms. */
  EARMARK_WS_IDLE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(10_000),
  /** Live streams close with NET-0001 this long after their last audio, KeepAlive or not, ms; 0: never. */
  EARMARK_WS_KEEPALIVE_ONLY_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  /** Live streams one credential (a key presented itself, or one grant token) may hold; 0: no cap; default half the slots. */
  EARMARK_MAX_STREAMS_PER_CREDENTIAL: z.coerce.number().int().min(0).max(4096).optional(),
  /** Live streams one API key (its grant tokens included) may hold at once; default 0: no cap. */
  EARMARK_MAX_STREAMS_PER_KEY: z.coerce.number().int().min(0).max(4096).default(0),
  /** Live streams one end user may hold at once; 0: no cap; default half the slots. */
  EARMARK_MAX_STREAMS_PER_END_USER: z.coerce.number().int().min(0).max(4096).optional(),
  /** Live streams plus pre-recorded requests one project may hold at once; default 0: no cap (docs/limits.md). */
  EARMARK_MAX_STREAMS_PER_PROJECT: z.coerce.number().int().min(0).max(4096).default(0),
  /** Authenticated requests per minute per API key (its grant tokens included); 0: no limit. */
  EARMARK_LIMIT_REQUESTS_PER_MINUTE: z.coerce.number().int().min(0).max(1_000_000_000).default(600),
  /** Authenticated requests per minute per project; 0: no limit. */
  EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: z.coerce.number().int().min(0).max(1_000_000_000).default(6000),
  /** `POST /v1/auth/grant` per minute per API key; 0: no limit. */
  EARMARK_LIMIT_GRANTS_PER_MINUTE: z.coerce.number().int().min(0).max(1_000_000_000).default(60),
  /** Failed authentications per minute from one address before it is backed off; 0: no limit. */
  EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().min(0).max(1_000_000).default(10),
  /** Failed authentications per hour from one address before it is blocked; 0: no limit. */
  EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR: z.coerce.number().int().min(0).max(1_000_000).default(100),
  /** How long an address past the hourly failures is blocked, s. */
  EARMARK_LIMIT_AUTH_BLOCK_SECONDS: z.coerce
    .number()
    .int()
    .min(1)
    .max(7 * 86_400)
    .default(3600),
  /** The first back-off after the per-minute failures, s (each next one in the hour doubles, to 15 min). */
  EARMARK_LIMIT_AUTH_BACKOFF_SECONDS: z.coerce.number().int().min(1).max(3600).default(15),
  /** Addresses and CIDR ranges never counted or blocked for failed authentications (comma-separated). */
  EARMARK_LIMIT_AUTH_ALLOW: addressRanges,
  /**
   * Reverse proxies (addresses and CIDR ranges, comma-separated) whose `X-Forwarded-For` names the client
   * (docs/limits.md, "Behind a reverse proxy"); default none: the connection's peer is the client.
   */
  EARMARK_TRUST_PROXY: addressRanges,
  /** `/v1/speak` syntheses (flite, then ffmpeg) at once; default the number of cores. */
  EARMARK_SPEAK_CONCURRENCY: z.coerce.number().int().min(1).max(256).optional(),
  /** `/v1/speak` requests that may wait for a synthesis slot; one more gets 429 at once. */
  EARMARK_SPEAK_QUEUE: z.coerce.number().int().min(0).max(4096).default(32),
  /** How long a `/v1/speak` request waits for a slot before a 429, ms. */
  EARMARK_SPEAK_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  /** How long flite (or espeak-ng), and then ffmpeg, may each run before they are killed (504), ms. */
  EARMARK_SPEAK_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
  /** How often expired keys are looked for (audited, then deleted after the retention), ms; 0: never. */
  EARMARK_KEY_SWEEP_INTERVAL_MS: z.coerce.number().int().min(0).max(86_400_000).default(60_000),
  /** How long an expired key is kept (listed as expired) before the sweeper deletes it, s; 0: at expiry. */
  EARMARK_EXPIRED_KEY_RETENTION_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(10 * 365 * 86_400)
    .default(7 * 86_400),
  /**
   * Who may read `GET /metrics` (docs/metrics.md): `local` (this machine, through no proxy), `public`,
   * `token` (`Authorization: Bearer $EARMARK_METRICS_TOKEN`) or `off`.
   */
  EARMARK_METRICS: z.enum(['local', 'public', 'token', 'off']).default('local'),
  /** The bearer token `/metrics` wants with `EARMARK_METRICS=token`: 20+ characters. */
  EARMARK_METRICS_TOKEN: z.string().min(20).optional(),
  /** How long `earmark serve` lets open live streams run on after SIGTERM before it closes them, s. */
  EARMARK_DRAIN_SECONDS: z.coerce.number().min(0).max(3600).default(30),
  /** Redis shared by every node (docs/redis.md): `redis://[user:password@]host:port[/db]`; unset: in-process state. */
  EARMARK_REDIS_URL: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()))
    .refine((v) => v === undefined || /^rediss?:\/\//.test(v), {
      message: 'must be a redis:// or rediss:// URL',
    }),
  /** Prefix of every Redis key and channel Earmark uses. */
  EARMARK_REDIS_PREFIX: z.string().min(1).max(200).default('earmark:'),
  /** What admits while Redis is unreachable: `none` (fail closed, 503) or `rate-limits`. */
  EARMARK_REDIS_FAIL_OPEN: z.enum(['none', 'rate-limits']).default('none'),
})

export interface Config {
  port: number
  host: string
  dataDir: string
  /** The SQLite file inside the data directory. */
  sqlitePath: string
  /** PostgreSQL in place of the SQLite file (docs/store.md); holds a password when the URL does: never logged. */
  databaseUrl?: string
  databasePoolSize: number
  bootstrapKey: string | undefined
  projectName: string
  ownerEmail: string
  logLevel: z.infer<typeof schema>['EARMARK_LOG_LEVEL']
  /** How log lines are written: `auto` (pretty on a terminal, else JSON), `json` or `pretty`. */
  logFormat: 'auto' | 'json' | 'pretty'
  accessLog: boolean
  jsonBodyLimit: number
  /** The speech engines and the models each serves, in order (docs/speech.md, "Engines"). */
  engines: EngineEntry[]
  /** The upstream engine's service, when `engines` lists it (docs/gateway.md); the key is never logged. */
  upstream?: { url: string; key: string; scheme: 'token' | 'bearer'; capacity: number }
  /** Hosts projects' own upstreams may name (docs/gateway.md "Per project"); empty: off. */
  upstreamAllowedHosts: string[]
  /** Relays at once, per upstream. */
  upstreamCapacity: number
  /** The secrets key (base64), when set; else `<dataDir>/secrets.key`. Never logged. */
  secretsKey: string | undefined
  capacity: number | 'auto'
  capacityWaitMs: number
  fetchAllowedHosts: string[]
  maxUploadBytes: number
  wsIdleTimeoutMs: number
  wsKeepAliveOnlyMs: number
  /** Undefined: half the speech slots, rounded up. */
  maxStreamsPerCredential: number | undefined
  maxStreamsPerKey: number
  /** Undefined: half the speech slots, rounded up. */
  maxStreamsPerEndUser: number | undefined
  /** 0: no per-project stream cap. */
  maxStreamsPerProject: number
  /** Rate limits and failed-authentication limits (docs/limits.md); a 0 rate is no limit. */
  limits: ServerLimits
  /** Proxies whose `X-Forwarded-For` is believed (docs/limits.md); empty: none, the peer is the client. */
  trustProxy: string[]
  listenQueue: number
  listenMaxUploads: number
  maxAudioSeconds: number
  uploadIdleTimeoutMs: number
  uploadDir: string
  fetchTimeoutMs: number
  fetchIdleTimeoutMs: number
  /** Undefined: the number of cores. */
  speakConcurrency: number | undefined
  speakQueue: number
  speakWaitMs: number
  speakTimeoutMs: number
  /** Suspicious-activity thresholds and auto-disable, from `EARMARK_SUSPICIOUS_*` (docs/suspicious-activity.md); default: the defaults. */
  suspicious?: SuspiciousPolicy
  /** 0: no automatic sweep. */
  keySweepIntervalMs: number
  expiredKeyRetentionSeconds: number
  /** Redis shared by several nodes (docs/redis.md); undefined: rate limits, the token ledger and revocations stay in-process. */
  redis?: { url: string; prefix: string; failOpen: 'none' | 'rate-limits' }
  /** Who may read `GET /metrics` (docs/metrics.md, "Who may read it"). */
  metrics: MetricsAccess
  /** How long a SIGTERM lets open streams and requests finish before they are closed, ms (docs/deploy.md). */
  drainMs: number
}

/** A comma-separated host list, lower case, blanks dropped. */
function hostList(text: string): string[] {
  return text
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h.length > 0)
}

/** Reads the config from `env` (default `process.env`); throws with every problem listed. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
    throw new Error(`Invalid configuration: ${problems}`)
  }
  const e = parsed.data
  const relayed = e.EARMARK_ENGINE.some((entry) => entry.name === 'upstream')
  if (relayed && (!e.EARMARK_UPSTREAM_URL || !e.EARMARK_UPSTREAM_KEY)) {
    throw new Error(
      'Invalid configuration: EARMARK_ENGINE lists upstream: EARMARK_UPSTREAM_URL and EARMARK_UPSTREAM_KEY are required',
    )
  }
  if (e.EARMARK_METRICS === 'token' && !e.EARMARK_METRICS_TOKEN) {
    throw new Error(
      'Invalid configuration: EARMARK_METRICS=token needs EARMARK_METRICS_TOKEN (20+ characters)',
    )
  }
  const dataDir = resolve(e.EARMARK_DATA_DIR)
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    sqlitePath: resolve(dataDir, 'earmark.sqlite'),
    ...(e.EARMARK_DATABASE_URL ? { databaseUrl: e.EARMARK_DATABASE_URL } : {}),
    databasePoolSize: e.EARMARK_DATABASE_POOL_SIZE,
    bootstrapKey: e.EARMARK_BOOTSTRAP_KEY,
    projectName: e.EARMARK_PROJECT_NAME,
    ownerEmail: e.EARMARK_OWNER_EMAIL,
    logLevel: e.EARMARK_LOG_LEVEL,
    logFormat: e.EARMARK_LOG_FORMAT,
    accessLog: e.EARMARK_ACCESS_LOG,
    jsonBodyLimit: e.EARMARK_JSON_BODY_LIMIT,
    engines: e.EARMARK_ENGINE,
    ...(relayed && e.EARMARK_UPSTREAM_URL && e.EARMARK_UPSTREAM_KEY
      ? {
          upstream: {
            url: e.EARMARK_UPSTREAM_URL,
            key: e.EARMARK_UPSTREAM_KEY,
            scheme: e.EARMARK_UPSTREAM_SCHEME,
            capacity: e.EARMARK_UPSTREAM_CAPACITY,
          },
        }
      : {}),
    upstreamAllowedHosts: hostList(e.EARMARK_UPSTREAM_ALLOWED_HOSTS),
    upstreamCapacity: e.EARMARK_UPSTREAM_CAPACITY,
    secretsKey: e.EARMARK_SECRETS_KEY,
    capacity: e.EARMARK_CAPACITY,
    capacityWaitMs: e.EARMARK_CAPACITY_WAIT_MS,
    fetchAllowedHosts: hostList(e.EARMARK_FETCH_ALLOWED_HOSTS),
    maxUploadBytes: e.EARMARK_MAX_UPLOAD_BYTES,
    wsIdleTimeoutMs: e.EARMARK_WS_IDLE_TIMEOUT_MS,
    wsKeepAliveOnlyMs: e.EARMARK_WS_KEEPALIVE_ONLY_MS,
    maxStreamsPerCredential: e.EARMARK_MAX_STREAMS_PER_CREDENTIAL,
    maxStreamsPerKey: e.EARMARK_MAX_STREAMS_PER_KEY,
    maxStreamsPerEndUser: e.EARMARK_MAX_STREAMS_PER_END_USER,
    maxStreamsPerProject: e.EARMARK_MAX_STREAMS_PER_PROJECT,
    limits: {
      requestsPerMinute: e.EARMARK_LIMIT_REQUESTS_PER_MINUTE,
      projectRequestsPerMinute: e.EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE,
      grantsPerMinute: e.EARMARK_LIMIT_GRANTS_PER_MINUTE,
      authFailuresPerMinute: e.EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE,
      authFailuresPerHour: e.EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR,
      authBlockMs: e.EARMARK_LIMIT_AUTH_BLOCK_SECONDS * 1000,
      authBackoffMs: e.EARMARK_LIMIT_AUTH_BACKOFF_SECONDS * 1000,
      authAllowList: e.EARMARK_LIMIT_AUTH_ALLOW,
    },
    trustProxy: e.EARMARK_TRUST_PROXY,
    listenQueue: e.EARMARK_LISTEN_QUEUE,
    listenMaxUploads: e.EARMARK_LISTEN_MAX_UPLOADS,
    maxAudioSeconds: e.EARMARK_MAX_AUDIO_SECONDS,
    uploadIdleTimeoutMs: e.EARMARK_UPLOAD_IDLE_TIMEOUT_MS,
    uploadDir: resolve(e.EARMARK_UPLOAD_DIR ?? resolve(dataDir, 'uploads')),
    fetchTimeoutMs: e.EARMARK_FETCH_TIMEOUT_MS,
    fetchIdleTimeoutMs: e.EARMARK_FETCH_IDLE_TIMEOUT_MS,
    speakConcurrency: e.EARMARK_SPEAK_CONCURRENCY,
    speakQueue: e.EARMARK_SPEAK_QUEUE,
    speakWaitMs: e.EARMARK_SPEAK_WAIT_MS,
    speakTimeoutMs: e.EARMARK_SPEAK_TIMEOUT_MS,
    suspicious: suspiciousPolicyFromEnv(env),
    keySweepIntervalMs: e.EARMARK_KEY_SWEEP_INTERVAL_MS,
    expiredKeyRetentionSeconds: e.EARMARK_EXPIRED_KEY_RETENTION_SECONDS,
    metrics:
      e.EARMARK_METRICS === 'token'
        ? { mode: 'token', token: e.EARMARK_METRICS_TOKEN ?? '' }
        : { mode: e.EARMARK_METRICS },
    drainMs: Math.round(e.EARMARK_DRAIN_SECONDS * 1000),
    ...(e.EARMARK_REDIS_URL
      ? {
          redis: {
            url: e.EARMARK_REDIS_URL,
            prefix: e.EARMARK_REDIS_PREFIX,
            failOpen: e.EARMARK_REDIS_FAIL_OPEN,
          },
        }
      : {}),
  }
}
