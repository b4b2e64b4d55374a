import { Redis } from 'ioredis'
import { ApiError } from '../../errors.js'

/** How Earmark reaches Redis (docs/redis.md): from `EARMARK_REDIS_URL`, `EARMARK_REDIS_PREFIX`, `EARMARK_REDIS_FAIL_OPEN`. */
export interface RedisSettings {
  /** `redis://[user:password@]host:port[/db]` or `rediss://…`; its password is never logged. */
  url: string
  /** Prepended to every key and channel, so several deployments (or tests) can share one Redis. */
  prefix: string
  /** What admits while Redis is unreachable: nothing (`none`, fail closed), or the rate limits only. */
  failOpen: 'none' | 'rate-limits'
}

/** The calls of an ioredis client the backends use (a subset, so tests can pass any client). */
export type RedisClient = Redis

export interface RedisClientOptions {
  /** Shown in `CLIENT LIST`, e.g. `earmark:commands`. */
  name?: string
  /** Queue commands while disconnected (the subscriber connection wants this; command connections do not). */
  offlineQueue?: boolean
  /** Told when the connection is lost (once per outage) and when it is back. */
  onStateChange?(state: 'unreachable' | 'ready', detail: { target: string; error?: string }): void
}

/** How long a connection attempt and a command may take before they fail, ms. */
export const REDIS_CONNECT_TIMEOUT_MS = 1000
export const REDIS_COMMAND_TIMEOUT_MS = 1000
/** The longest wait between reconnection attempts, ms (attempts never stop). */
const MAX_RETRY_DELAY_MS = 2000

/** `host:port/db` of a Redis URL, without user or password: what a log line may show. */
export function redisTarget(url: string): string {
  try {
    const u = new URL(url)
    return `${u.hostname}:${u.port || '6379'}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`
  } catch {
    return '(unparseable url)'
  }
}

/**
 * An ioredis client for `url` that fails fast instead of waiting: no offline queue (a command while
 * disconnected fails at once, so a request gets its 503 at once rather than hanging), short connect and
 * command timeouts, and reconnection with back-off forever (docs/redis.md, "Failures"). ioredis puts the URL
 * in no error message; our own messages name only `redisTarget(url)`.
 */
export function createRedisClient(url: string, options: RedisClientOptions = {}): RedisClient {
  const target = redisTarget(url)
  const client = new Redis(url, {
    ...(options.name ? { connectionName: options.name } : {}),
    enableOfflineQueue: options.offlineQueue ?? false,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    // A subscriber connection blocks on purpose; a timeout is for commands that expect an answer.
    ...(options.offlineQueue ? {} : { commandTimeout: REDIS_COMMAND_TIMEOUT_MS }),
    // A queued command (the subscriber's SUBSCRIBE) waits for the connection however long it takes; a command
    // connection never queues, so never retries either.
    maxRetriesPerRequest: options.offlineQueue ? null : 0,
    retryStrategy: (times) => Math.min(MAX_RETRY_DELAY_MS, 50 * 2 ** Math.min(times, 6)),
    lazyConnect: false,
    // Commands issued in the same tick (several requests' limit scripts under load) go out in one write:
    // fewer syscalls per request, the same commands and answers. Not on a subscriber connection.
    enableAutoPipelining: !options.offlineQueue,
  })
  let down = false
  // Without an 'error' listener ioredis prints every failed attempt itself; report each outage once.
  const lost = (error: string) => {
    if (down) return
    down = true
    options.onStateChange?.('unreachable', { target, error })
  }
  client.on('error', (err: Error) => lost(err.message))
  // A connection dropped by the server emits no error, only a reconnection (which a close of ours never starts).
  client.on('reconnecting', () => lost('connection lost'))
  client.on('ready', () => {
    if (!down) return
    down = false
    options.onStateChange?.('ready', { target })
  })
  return client
}

/** The 503 a request gets when what it needs lives in an unreachable Redis (docs/redis.md, "Failures"). */
export function redisUnavailable(what: string): ApiError {
  return new ApiError(
    'SERVICE_UNAVAILABLE',
    `${what} unavailable: the shared state store cannot be reached.`,
    {
      headers: { 'Retry-After': '1' },
    },
  )
}

/** Closes `client`: politely when it is connected, at once otherwise (QUIT would wait for a reconnection). */
export async function closeRedisClient(client: RedisClient): Promise<void> {
  if (client.status === 'ready') {
    try {
      await client.quit()
      return
    } catch {
      // fall through to disconnect
    }
  }
  client.disconnect()
}

/** A Lua script run by hash (EVALSHA, loaded on first use): one key, string arguments. */
export type RedisScript = (key: string, ...args: string[]) => Promise<unknown>

/**
 * `client.defineCommand`, safe while commands are pending. ioredis 5 copies a client's scripts into an
 * auto-pipeline when it creates one, and a pipeline still waiting to be sent in this turn of the event loop
 * would lack a script defined now: calling the script there throws after a reply slot was already taken,
 * which shifts every later reply of that pipeline onto the wrong caller. The script is added to such
 * pipelines too, as their constructor would have (`scriptsSet` and `_autoPipelines` are ioredis internals,
 * checked by test/store/redis-scripts.test.ts).
 */
export function defineCommandSafely(
  client: RedisClient,
  name: string,
  definition: { lua: string; numberOfKeys?: number },
): void {
  client.defineCommand(name, definition)
  const internals = client as unknown as {
    scriptsSet?: Record<string, { sha: string }>
    _autoPipelines?: Map<string, Record<string, unknown> & { _shaToScript?: Record<string, unknown> }>
    [name: string]: unknown
  }
  const script = internals.scriptsSet?.[name]
  for (const pipeline of internals._autoPipelines?.values() ?? []) {
    if (script && pipeline._shaToScript) pipeline._shaToScript[script.sha] = script
    pipeline[name] = internals[name]
    pipeline[`${name}Buffer`] = internals[`${name}Buffer`]
  }
}

/** Registers `lua` on `client` as `name` (ioredis sends EVALSHA and falls back to EVAL once). */
export function defineScript(client: RedisClient, name: string, lua: string): RedisScript {
  defineCommandSafely(client, name, { numberOfKeys: 1, lua })
  const command = (client as unknown as Record<string, RedisScript>)[name]
  if (typeof command !== 'function') throw new Error(`ioredis did not define the script ${name}`)
  return (key, ...args) => command.call(client, key, ...args)
}
