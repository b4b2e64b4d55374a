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
export { createRedisRateLimitBackend, type RedisRateLimitBackendOptions } from './redis-rate-limit-backend.js'
export {
  createRedisRevocationBus,
  type RedisRevocationBus,
  type RedisRevocationBusOptions,
} from './redis-revocation-bus.js'
export { createRedisShared, type RedisShared, type RedisSharedOptions } from './redis-shared.js'
