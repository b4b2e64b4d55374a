export { type BootstrapOptions, type BootstrapResult, bootstrapIfEmpty } from './bootstrap.js'
export { isoDate, requireProject, requireScope, type Services } from './context.js'
export {
  apiKeyView,
  type CreatedKey,
  createKey,
  deleteKey,
  getKey,
  insertKey,
  type KeySpec,
  listKeys,
  MAX_KEY_TTL_SECONDS,
  newKeyRecord,
  parseKeySpec,
} from './keys.js'
export { addMember, getMemberScopes, listMembers, setMemberScope } from './members.js'
export { getProject, listProjects, projectView, updateProject } from './projects.js'
export {
  listSigningKeys,
  retireSigningKey,
  SIGNING_KEYS_SCOPE,
  signingKeyView,
} from './signing-keys.js'
export { grantToken, secondsLeft, tokenDetails } from './tokens.js'
export {
  END_USER_TAG,
  endUserOf,
  finishUsage,
  getRequest,
  listRequests,
  startUsage,
  type UsageStart,
  usageSummary,
} from './usage.js'
