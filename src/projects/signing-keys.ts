import type { Principal, SigningKeyInfo } from '../auth/index.js'
import { ApiError } from '../errors.js'
import { requireScope, type Services } from './context.js'

/**
 * Signing keys serve every project of the server, so only an owner may see or retire them: the scope is the
 * owner-only `project:write:settings` (docs/revocation.md).
 */
export const SIGNING_KEYS_SCOPE = 'project:write:settings'

/** A signing key as the API and the CLI show it: never its secret. */
export function signingKeyView(k: SigningKeyInfo) {
  return {
    kid: k.kid,
    created: new Date(k.createdAt).toISOString(),
    retired: k.retiredAt === null ? null : new Date(k.retiredAt).toISOString(),
    current: k.current,
  }
}

/** `GET /v1/auth/signing-keys` (an Earmark extension). */
export async function listSigningKeys(services: Services, principal: Principal) {
  requireScope(principal, SIGNING_KEYS_SCOPE)
  return { signing_keys: (await services.grants.list()).map(signingKeyView) }
}

/**
 * Retires a signing key: tokens it signed are refused at once and the streams they opened close; retiring
 * the current key makes a fresh one current.
 */
export async function retireSigningKey(services: Services, principal: Principal | undefined, kid: string) {
  if (principal) requireScope(principal, SIGNING_KEYS_SCOPE)
  if (!(await services.grants.retire(kid))) throw new ApiError('SIGNING_KEY_NOT_FOUND')
  services.revocations?.publish({ type: 'signing-key-retired', kid })
  const current = (await services.grants.list()).find((k) => k.current)
  return { message: 'Signing key retired.', kid, current_kid: current?.kid ?? null }
}
