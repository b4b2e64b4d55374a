import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { AccessGate, AccessKind, AccessRequest } from '../../access/index.js'
import type { Authenticator, Principal } from '../../auth/index.js'
import { ApiError, isApiError } from '../../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated route. */
    principal: Principal | null
    /** The request as the access checks saw it; set by the auth hook on every authenticated route. */
    access: AccessRequest | null
  }
}

/** Which credentials a route takes, and what it is for. Management routes refuse grant tokens (docs/deepgram-compat.md §1.1). */
export interface AuthPolicy {
  bearer: boolean
  kind: AccessKind
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

/** The access checks' view of an HTTP request. */
export function accessRequestOf(request: FastifyRequest, kind: AccessKind): AccessRequest {
  return {
    transport: 'http',
    kind,
    route: request.routeOptions.url ?? '',
    ip: request.ip,
    origin: firstHeader(request.headers.origin),
    userAgent: firstHeader(request.headers['user-agent']),
    requestId: request.id,
  }
}

function isPromise(value: unknown): value is Promise<void> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}

/**
 * Builds the onRequest hook of an authenticated route: the access gate's pre-checks → the credential → the
 * route's policy → the gate's admission. It runs before the body is read, so an unauthenticated or
 * refused client cannot make the server buffer an upload.
 */
export function createAuthHook(authenticator: Authenticator, policy: AuthPolicy, gate: AccessGate) {
  const checkPolicy = (principal: Principal) => {
    if (principal.scheme === 'bearer' && !policy.bearer) {
      throw new ApiError(
        'FORBIDDEN',
        'Grant tokens are only good for the usage APIs; use an API key (Token).',
      )
    }
  }
  /** Admits `principal`: synchronously when every check is, else through a promise. */
  const admit = (request: FastifyRequest, access: AccessRequest, principal: Principal) => {
    checkPolicy(principal)
    request.principal = principal
    try {
      const pending = gate.admit(principal, access)
      if (isPromise(pending)) {
        return pending.catch((err: unknown) => {
          if (isApiError(err)) gate.refused(principal, access, err)
          throw err
        })
      }
      return undefined
    } catch (err) {
      if (isApiError(err)) gate.refused(principal, access, err)
      throw err
    }
  }
  const authenticate = (request: FastifyRequest, access: AccessRequest, done: HookHandlerDoneFunction) => {
    authenticator.authenticateHeader(request.headers.authorization).then(
      (principal) => {
        try {
          const pending = admit(request, access, principal)
          if (pending) pending.then(() => done(), done)
          else done()
        } catch (err) {
          done(err as Error)
        }
      },
      (err: Error) => {
        if (isApiError(err) && err.code === 'INVALID_AUTH') gate.authFailed(access, err)
        done(err)
      },
    )
  }
  // Callback style, not async: a credential seen before is admitted synchronously, with no promise.
  return function authenticateRequest(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    const access = accessRequestOf(request, policy.kind)
    request.access = access
    let known: Principal | undefined
    let pending: void | Promise<void> | undefined
    try {
      // Peeked first (memory only), so the access checks know the credential costs no store query.
      known = authenticator.peekHeader(request.headers.authorization)
      if (known) access.credentialCached = true
      const before = gate.beforeAuth(access)
      if (isPromise(before)) {
        before.then(() => authenticate(request, access, done), done)
        return
      }
      if (known) pending = admit(request, access, known)
    } catch (err) {
      done(err as Error)
      return
    }
    if (!known) authenticate(request, access, done)
    else if (pending) pending.then(() => done(), done)
    else done()
  }
}

/** The caller, on a route whose auth hook ran. */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new ApiError('INVALID_AUTH')
  return request.principal
}

/** A JSON body as an object; an absent or empty body is `{}` (docs/deepgram-compat.md §0 #4). */
export function bodyObject(request: FastifyRequest): Record<string, unknown> {
  const body = request.body
  if (body === undefined || body === null) return {}
  if (typeof body !== 'object' || Array.isArray(body)) {
    throw new ApiError('INVALID_JSON', 'The request body must be a JSON object.')
  }
  return body as Record<string, unknown>
}
