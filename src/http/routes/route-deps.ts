import type { Authenticator } from '../../auth/index.js'
import type { Services } from '../../projects/index.js'
import { createAuthHook } from '../hooks/auth.js'

/** What route plugins are given. */
export interface RouteDeps {
  services: Services
  authenticator: Authenticator
}

/** The two auth hooks routes pick from: management (API keys only) and usage (keys or grant tokens). */
export function authHooks(authenticator: Authenticator) {
  return {
    management: createAuthHook(authenticator, { bearer: false }),
    usage: createAuthHook(authenticator, { bearer: true }),
  }
}

export interface ProjectParams {
  project_id: string
}
