import type { AccessGate } from '../../access/index.js'
import type { Authenticator } from '../../auth/index.js'
import type { Services } from '../../projects/index.js'
import { createAuthHook } from '../hooks/auth.js'

/** What route plugins are given. */
export interface RouteDeps {
  services: Services
  authenticator: Authenticator
  /** The access checks every authenticated route runs (binding, limits, suspicious activity). */
  gate: AccessGate
}

/**
 * The auth hooks routes pick from: management (API keys only), grant (API keys only, counted as grants),
 * introspect (`GET /v1/auth/token`: keys or grant tokens, not a use of the token) and usage (keys or grant
 * tokens).
 */
export function authHooks({ authenticator, gate }: Pick<RouteDeps, 'authenticator' | 'gate'>) {
  return {
    management: createAuthHook(authenticator, { bearer: false, kind: 'management' }, gate),
    grant: createAuthHook(authenticator, { bearer: false, kind: 'grant' }, gate),
    introspect: createAuthHook(authenticator, { bearer: true, kind: 'introspect' }, gate),
    usage: createAuthHook(authenticator, { bearer: true, kind: 'usage' }, gate),
  }
}

export interface ProjectParams {
  project_id: string
}
