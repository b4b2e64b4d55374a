import type { AccessRequest } from '../access/index.js'
import { auditContext } from '../audit/index.js'
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
export async function retireSigningKey(
  services: Services,
  principal: Principal | undefined,
  kid: string,
  access?: AccessRequest | null,
) {
  if (principal) requireScope(principal, SIGNING_KEYS_SCOPE)
  if (!(await services.grants.retire(kid))) throw new ApiError('SIGNING_KEY_NOT_FOUND')
  services.revocations?.publish({ type: 'signing-key-retired', kid })
  const current = (await services.grants.list()).find((k) => k.current)
  await auditEveryProject(
    services,
    'signing_key.retired',
    { kid, current_kid: current?.kid ?? null },
    principal,
    access,
  )
  return { message: 'Signing key retired.', kid, current_kid: current?.kid ?? null }
}

/** `earmark rotate-signing-key`: makes a new signing key current and audits it; returns the new kid. */
export async function rotateSigningKey(services: Services): Promise<string> {
  const kid = await services.grants.rotate()
  await auditEveryProject(services, 'signing_key.rotated', { kid }, undefined, undefined)
  return kid
}

/**
 * Signing keys serve every project, so each project's trail records the change (docs/audit.md). The acting key
 * is named only in its own project's trail; elsewhere the event says who acted through `via` alone.
 */
async function auditEveryProject(
  services: Services,
  type: string,
  detail: Record<string, unknown>,
  principal: Principal | undefined,
  access: AccessRequest | null | undefined,
): Promise<void> {
  const audit = services.audit
  if (!audit) return
  const via = principal ? 'api' : 'cli'
  for (const project of await services.store.listProjects()) {
    const who =
      principal?.projectId === project.id ? auditContext(principal, access) : { projectId: project.id }
    audit.record({ ...who, type, detail: { ...detail, via } })
  }
}
