import type { AuditLog } from '../audit/index.js'
import type { Clock, Grants, Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { RevocationBus } from '../revocation/index.js'
import type { Project, Store } from '../store/index.js'
import type { UpstreamPolicy } from './upstream-settings.js'

/** What every use case needs, passed in (never imported as a singleton). */
export interface Services {
  store: Store
  clock: Clock
  grants: Grants
  /**
   * Where revocations are announced, so live streams close at once; in the CLI only with `EARMARK_REDIS_URL`
   * (docs/revocation.md).
   */
  revocations?: RevocationBus
  /** The audit trail (docs/audit.md); absent only in tests that build services by hand. */
  audit?: AuditLog
  /** What per-project upstreams may name (docs/gateway.md "Per project"); absent: they are off. */
  upstreams?: UpstreamPolicy
}

/** Throws `FORBIDDEN` unless the caller holds `scope`. */
export function requireScope(principal: Principal, scope: string): void {
  if (!principal.scopes.has(scope))
    throw new ApiError('FORBIDDEN', `Insufficient permissions: requires \`${scope}\`.`)
}

/**
 * The caller's own project. A credential never reaches another project: an unknown id and another
 * project's id answer the same 404, so ids cannot be probed.
 */
export async function requireProject(
  services: Services,
  principal: Principal,
  projectId: string,
): Promise<Project> {
  const project = principal.projectId === projectId ? await services.store.getProject(projectId) : undefined
  if (!project) throw new ApiError('PROJECT_NOT_FOUND')
  return project
}

export function isoDate(ms: number): string {
  return new Date(ms).toISOString()
}
