import type { Principal } from '../auth/index.js'
import type { ApiError } from '../errors.js'

/**
 * What a request is for, as the access checks see it: the usage APIs (`/v1/listen`, `/v1/speak`), minting
 * a grant, asking about the caller's own credential (`GET /v1/auth/token`), or managing the project.
 */
export type AccessKind = 'usage' | 'grant' | 'introspect' | 'management'

/** One request or upgrade, as the access checks see it: never its credential, never its raw URL. */
export interface AccessRequest {
  transport: 'http' | 'ws'
  kind: AccessKind
  /** The route's path pattern (`/v1/projects/:project_id/keys`), never the raw URL (it may hold a secret). */
  route: string
  /** The client's address. */
  ip: string
  /** The `Origin` header, when the client sent one (browsers do on upgrades and cross-origin requests). */
  origin: string | undefined
  userAgent: string | undefined
  requestId: string
  /**
   * The credential was recognised from this node's cache, with no store query. A stage whose `beforeAuth`
   * check costs a round trip may then make it in `admit`, with its other calls (docs/redis.md, "Cost").
   */
  credentialCached?: boolean
}

/**
 * One access check (binding, rate limits, suspicious activity, ...). Every hook is optional; a hook that
 * refuses throws an `ApiError` (with `Retry-After` for a 429). Hooks that need no I/O should stay
 * synchronous: the gate then admits a request without a promise.
 */
export interface AccessStage {
  readonly name: string
  /** Before the credential is checked: refuse a client outright (an address locked out after failures). */
  beforeAuth?(request: AccessRequest): void | Promise<void>
  /** The credential was refused (`INVALID_AUTH`). Must not throw. */
  authFailed?(request: AccessRequest, error: ApiError): void
  /** After the credential and the route's credential policy passed, before anything is claimed. */
  admit?(principal: Principal, request: AccessRequest): void | Promise<void>
  /** A later stage (or the route) refused an admitted principal with `error`. Must not throw. */
  refused?(principal: Principal, request: AccessRequest, error: ApiError): void
}

/** The access checks of both transports, run in one order for HTTP routes and WebSocket upgrades alike. */
export interface AccessGate {
  beforeAuth(request: AccessRequest): void | Promise<void>
  authFailed(request: AccessRequest, error: ApiError): void
  /** Runs every stage's `admit` in order; synchronous (returns undefined) while every stage is. */
  admit(principal: Principal, request: AccessRequest): void | Promise<void>
  refused(principal: Principal, request: AccessRequest, error: ApiError): void
}

/** A gate that admits everyone (the default when no stage is configured). */
export const OPEN_GATE: AccessGate = createAccessGate([])

function isPromise(value: unknown): value is Promise<void> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

/** Runs `step` over `items` in order, staying synchronous until a step returns a promise. */
function runInOrder<T>(items: readonly T[], step: (item: T) => void | Promise<void>): void | Promise<void> {
  for (let i = 0; i < items.length; i++) {
    const result = step(items[i] as T)
    if (isPromise(result)) {
      const rest = items.slice(i + 1)
      return result.then(() => runInOrder(rest, step))
    }
  }
  return undefined
}

/** The gate over `stages`, in the order given (cheap refusals first). */
export function createAccessGate(stages: readonly AccessStage[]): AccessGate {
  const before = stages.filter((s) => s.beforeAuth)
  const admitting = stages.filter((s) => s.admit)
  const failing = stages.filter((s) => s.authFailed)
  const refusing = stages.filter((s) => s.refused)
  return {
    beforeAuth: (request) => runInOrder(before, (s) => s.beforeAuth?.(request)),
    authFailed(request, error) {
      for (const s of failing) s.authFailed?.(request, error)
    },
    admit: (principal, request) => runInOrder(admitting, (s) => s.admit?.(principal, request)),
    refused(principal, request, error) {
      for (const s of refusing) s.refused?.(principal, request, error)
    },
  }
}
