export { generateKeySecret, hashKeySecret, isWellFormedKey, KEY_PREFIX } from './api-keys.js'
export {
  type Authenticator,
  type AuthenticatorOptions,
  createAuthenticator,
  isLive,
  keyPrincipal,
  type Principal,
  parseAuthorization,
  type RefusalReason,
  type RefusedCredential,
  type Scheme,
} from './authenticate.js'
export { type Clock, createManualClock, type ManualClock, systemClock } from './clock.js'
export type {
  CredentialBinding,
  GrantOptions,
  KeyLimits,
  KeyOptions,
  KeyQuotas,
  ListenConstraints,
  ProjectSettings,
  ProjectUpstream,
} from './credential-options.js'
export {
  createGrants,
  GRANT_DEFAULT_TTL,
  GRANT_MAX_TTL,
  type GrantClaims,
  type Grants,
  type GrantsOptions,
  type MintedGrant,
  type SigningKeyInfo,
} from './grants.js'
export {
  effectiveScopes,
  expandScopes,
  isRole,
  isSubset,
  isValidScope,
  KNOWN_SCOPES,
  memberScopePrefix,
  ROLE_SCOPES,
  ROLES,
  type Role,
  roleAtLeast,
  roleOf,
  USAGE_WRITE,
} from './scopes.js'
