import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Authenticator, Principal } from '../../auth/index.js'
import { ApiError } from '../../errors.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the auth hook on every authenticated route. */
    principal: Principal | null
  }
}

/** Which credentials a route takes. Management routes refuse grant tokens (docs/deepgram-compat.md §1.1). */
export interface AuthPolicy {
  bearer: boolean
}

/**
 * Builds the onRequest hook of an authenticated route. It runs before the body is read, so an
 * unauthenticated client cannot make the server buffer an upload.
 */
export function createAuthHook(authenticator: Authenticator, policy: AuthPolicy) {
  const admit = (request: FastifyRequest, principal: Principal) => {
    if (principal.scheme === 'bearer' && !policy.bearer) {
      throw new ApiError(
        'FORBIDDEN',
        'Grant tokens are only good for the usage APIs; use an API key (Token).',
      )
    }
    request.principal = principal
  }
  // Callback style, not async: a credential seen before is admitted synchronously, with no promise.
  return function authenticateRequest(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: HookHandlerDoneFunction,
  ): void {
    const header = request.headers.authorization
    let known: Principal | undefined
    try {
      known = authenticator.peekHeader(header)
      if (known) admit(request, known)
    } catch (err) {
      done(err as Error)
      return
    }
    if (known) {
      done()
      return
    }
    authenticator.authenticateHeader(header).then(
      (principal) => {
        try {
          admit(request, principal)
          done()
        } catch (err) {
          done(err as Error)
        }
      },
      (err: Error) => done(err),
    )
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
