export {
  createRedisActivityWindows,
  LEARNT_TTL_MS,
  type RedisActivityWindowsOptions,
} from './redis-activity-windows.js'
export {
  CLAIM_HEARTBEAT_MS,
  CLAIM_LEASE_MS,
  createRedisCapacityShare,
  type RedisCapacityShare,
  type RedisCapacityShareOptions,
} from './redis-capacity-share.js'
export {
  closeRedisClient,
  createRedisClient,
  defineScript,
  REDIS_COMMAND_TIMEOUT_MS,
  REDIS_CONNECT_TIMEOUT_MS,
  type RedisClient,
  type RedisClientOptions,
  type RedisScript,
  type RedisSettings,
  redisTarget,
  redisUnavailable,
} from './redis-client.js'
export { createRedisJtiLedger, type RedisJtiLedgerOptions } from './redis-jti-ledger.js'
export {
  createRedisQuotaLedger,
  QUOTA_HEARTBEAT_MS,
  QUOTA_LEASE_SECONDS,
  QUOTA_RESERVATION_MS,
  type RedisQuotaLedger,
  type RedisQuotaLedgerOptions,
} from './redis-quota-ledger.js'
export { createRedisRateLimitBackend, type RedisRateLimitBackendOptions } from './redis-rate-limit-backend.js'
export {
  createRedisRevocationBus,
  encodeRevocation,
  type RedisRevocationBus,
  type RedisRevocationBusOptions,
  revocationChannel,
} from './redis-revocation-bus.js'
export {
  createRedisRevocationPublisher,
  type RedisRevocationPublisher,
  type RedisRevocationPublisherOptions,
} from './redis-revocation-publisher.js'
export { defineMultiKeyScript, type RedisMultiKeyScript } from './redis-scripts.js'
export { createRedisShared, type RedisShared, type RedisSharedOptions } from './redis-shared.js'
