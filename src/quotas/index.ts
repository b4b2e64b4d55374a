export {
  createQuotaEnforcer,
  MIN_QUOTA_SECONDS,
  type QuotaEnforcer,
  type QuotaEnforcerOptions,
  type QuotaLease,
  type QuotaRule,
  type QuotaScope,
  quotaRules,
} from './quota-enforcer.js'
export {
  createMemoryQuotaLedger,
  type QuotaBucket,
  type QuotaLedger,
  type QuotaReservation,
} from './quota-ledger.js'
export {
  MAX_QUOTA_SECONDS,
  parseKeyQuotas,
  parseQuotaSettings,
  quotaSettingsSection,
  quotasView,
} from './quota-options.js'
export { withinQuota } from './quota-pcm.js'
export { periodBounds, type QuotaPeriod } from './quota-periods.js'
