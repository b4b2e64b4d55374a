export { type AddressList, addressRangeProblem, clientBucket, createAddressList } from './client-address.js'
export {
  DEFAULT_SERVER_LIMITS,
  keyLimit,
  keyLimitsView,
  type LimitName,
  MAX_CONCURRENT_STREAMS,
  MAX_RATE_PER_MINUTE,
  NO_LIMITS_ENV,
  NO_SERVER_LIMITS,
  type ProjectLimits,
  parseKeyLimits,
  parseLimitSettings,
  projectLimitsView,
  type ServerLimits,
} from './limit-options.js'
export { COUNTERS, createLimitStage, type LimitStageOptions } from './limit-stage.js'
export {
  type BatchGuard,
  type BatchHit,
  type BatchResult,
  type CounterStore,
  createMemoryRateLimitBackend,
  type FailureLadder,
  type RateLimitBackend,
  type WindowCount,
} from './rate-limit-backend.js'
export {
  andThen,
  type BatchDecision,
  type Counter,
  createRateLimits,
  type Maybe,
  type RateDecision,
  type RateGuard,
  type RateHit,
  type RateLimits,
} from './rate-limits.js'
export {
  createRefusalAudit,
  type LimitRefusal,
  type RefusalAudit,
  type RefusalAuditOptions,
} from './refusal-audit.js'
