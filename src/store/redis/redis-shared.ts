import type { JtiLedger } from '../../access/index.js'
import type { Clock } from '../../auth/index.js'
import type { RateLimitBackend } from '../../limits/index.js'
import type { CapacityShareLimits, CapacityShareOptions } from '../../listen/index.js'
import type { ActivityWindows } from '../../suspicious/index.js'
import type { Store } from '../index.js'
import { createRedisActivityWindows, type RedisActivityWindowsOptions } from './redis-activity-windows.js'
import { createRedisCapacityShare, type RedisCapacityShare } from './redis-capacity-share.js'
import { closeRedisClient, createRedisClient, type RedisClient, type RedisSettings } from './redis-client.js'
import { createRedisJtiLedger } from './redis-jti-ledger.js'
import { createRedisQuotaLedger, type RedisQuotaLedger } from './redis-quota-ledger.js'
import { createRedisRateLimitBackend } from './redis-rate-limit-backend.js'
import { createRedisRevocationBus, type RedisRevocationBus } from './redis-revocation-bus.js'

export interface RedisSharedOptions {
  settings: RedisSettings
  clock: Clock
  /** Told when Redis becomes unreachable (once per outage) and when it is back; never given the URL's password. */
  onStateChange?(state: 'unreachable' | 'ready', detail: { target: string; error?: string }): void
  /** A failed Redis call (the request it served got its answer: 503, or admitted when failing open). */
  onError?(err: unknown): void
  onListenerError?(err: unknown): void
}

/** What several nodes share through Redis, on two connections (commands, and the subscriber). */
export interface RedisShared {
  rateLimits: RateLimitBackend
  jtiLedger: JtiLedger
  revocations: RedisRevocationBus
  /** The stream caps counted in Redis (docs/redis.md, "Stream caps"); closed with the rest. */
  capacityShare(limits: CapacityShareLimits, options?: CapacityShareOptions): RedisCapacityShare
  /** Audio quotas' open reservations in Redis (docs/redis.md, "Quotas"); closed with the rest. */
  quotaLedger(store: Store): RedisQuotaLedger
  /** The suspicious-activity windows in Redis (docs/redis.md, "Suspicious activity"). */
  activityWindows(options?: Pick<RedisActivityWindowsOptions, 'onUnavailable'>): ActivityWindows
  /** The command connection (for tests and health checks). */
  client: RedisClient
  /** Unsubscribes and closes both connections. */
  close(): Promise<void>
}

/**
 * The Redis side of a node (docs/redis.md): shared rate-limit windows, the `max_uses` ledger, the
 * revocation bus, stream caps, quota leases and suspicious-activity windows. Connects in the background;
 * until Redis answers, the calls that need it fail as `EARMARK_REDIS_FAIL_OPEN` says (suspicious activity,
 * an observer, skips its observations instead).
 */
export function createRedisShared(o: RedisSharedOptions): RedisShared {
  const { settings } = o
  const client = createRedisClient(settings.url, {
    name: 'earmark-commands',
    ...(o.onStateChange ? { onStateChange: o.onStateChange } : {}),
  })
  const subscriber = createRedisClient(settings.url, { name: 'earmark-revocations', offlineQueue: true })
  const onError = (err: unknown) => o.onError?.(err)
  const revocations = createRedisRevocationBus({
    publisher: client,
    subscriber,
    prefix: settings.prefix,
    onError,
    ...(o.onListenerError ? { onListenerError: (err: unknown) => o.onListenerError?.(err) } : {}),
  })
  const closers: { close(): unknown }[] = []
  return {
    capacityShare(limits, options = {}) {
      const share = createRedisCapacityShare(limits, { ...options, client, prefix: settings.prefix, onError })
      closers.push(share)
      return share
    },
    quotaLedger(store) {
      const ledger = createRedisQuotaLedger({ client, store, prefix: settings.prefix, onError })
      closers.push(ledger)
      return ledger
    },
    activityWindows: (options = {}) =>
      createRedisActivityWindows({ ...options, client, prefix: settings.prefix }),
    rateLimits: createRedisRateLimitBackend({
      client,
      prefix: settings.prefix,
      failOpen: settings.failOpen === 'rate-limits',
      onError,
    }),
    jtiLedger: createRedisJtiLedger({ client, prefix: settings.prefix, clock: o.clock, onError }),
    revocations,
    client,
    close: async () => {
      await Promise.all(closers.map((c) => c.close()))
      await revocations.close()
      await Promise.all([closeRedisClient(client), closeRedisClient(subscriber)])
    },
  }
}
