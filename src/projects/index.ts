export { AUDIT_READ_SCOPE, auditEventView, listAuditEvents } from './audit.js'
export { type BootstrapOptions, type BootstrapResult, bootstrapIfEmpty } from './bootstrap.js'
export { isoDate, requireProject, requireScope, type Services } from './context.js'
export { listGrants, type OutstandingGrant, revokeGrant, revokeGrantToken } from './grants.js'
export {
  createKeySweeper,
  DEFAULT_EXPIRED_KEY_RETENTION_SECONDS,
  DEFAULT_KEY_SWEEP_INTERVAL_MS,
  type KeySweeper,
  type KeySweeperOptions,
  type SweepResult,
} from './key-sweeper.js'
export {
  apiActor,
  apiKeyView,
  auditKeyCreated,
  auditKeyEvent,
  CLI_ACTOR,
  type CreatedKey,
  changeKeyState,
  createKey,
  DEFAULT_REROLL_GRACE_SECONDS,
  deleteKey,
  getKey,
  insertKey,
  type KeyActor,
  type KeySpec,
  keyStateView,
  listKeys,
  MAX_KEY_TTL_SECONDS,
  MAX_REROLL_GRACE_SECONDS,
  newKeyRecord,
  parseGracePeriod,
  parseKeySpec,
  rerollKey,
  rerollKeySecret,
  setKeyDisabledState,
} from './keys.js'
export { addMember, getMemberScopes, listMembers, setMemberScope } from './members.js'
export {
  createProjectSettingsCache,
  getProjectSettings,
  type ProjectSettingsCache,
  projectSettingsView,
  type SettingsSection,
  updateProjectSettings,
} from './project-settings.js'
export { getProject, listProjects, projectView, updateProject } from './projects.js'
export {
  listSigningKeys,
  retireSigningKey,
  rotateSigningKey,
  SIGNING_KEYS_SCOPE,
  signingKeyView,
} from './signing-keys.js'
export { closeStream, listStreams } from './streams.js'
export { grantToken, secondsLeft, tokenDetails } from './tokens.js'
export { type UpstreamPolicy, upstreamSettingsSection } from './upstream-settings.js'
export {
  END_USER_TAG,
  endUserOf,
  finishStreamUsage,
  finishUsage,
  getRequest,
  listRequests,
  parseDate,
  startUsage,
  type UsageEnd,
  type UsageStart,
  usagePeriod,
  usageSummary,
} from './usage.js'
