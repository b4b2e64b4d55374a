export {
  type ActivityWindows,
  createMemoryWindows,
  type MaybePromise,
  type MemoryWindowsOptions,
} from './activity-windows.js'
export {
  createSuspiciousActivity,
  type Finding,
  type FindingScope,
  type SuspiciousActivity,
  type SuspiciousActivityOptions,
  type SuspiciousRule,
} from './suspicious-activity.js'
export {
  DEFAULT_SUSPICIOUS_POLICY,
  effectivePolicy,
  parseSuspiciousSettings,
  type SuspiciousPolicy,
  suspiciousPolicyFromEnv,
  suspiciousSettingsSection,
  suspiciousSettingsView,
} from './suspicious-settings.js'
