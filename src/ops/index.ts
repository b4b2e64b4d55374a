export {
  createLifecycle,
  DRAIN_RETRY_AFTER_SECONDS,
  drainingRefusal,
  type Lifecycle,
} from './lifecycle.js'
export {
  type AudioTransport,
  createMetrics,
  type Metrics,
  type MetricsAccess,
  type RefusalReason,
} from './metrics.js'
export {
  createReadiness,
  READINESS_TIMEOUT_MS,
  type Readiness,
  type ReadinessCheck,
  type ReadinessReport,
} from './readiness.js'
export { timedStore } from './timed-store.js'
