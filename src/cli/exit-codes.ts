import { ApiError, ERRORS, type ErrorCode } from '../errors.js'

/** The CLI's exit codes (docs/cli.md, "Exit codes"): stable, for scripts. */
export const EXIT = {
  /** Everything asked for was done. */
  OK: 0,
  /** An unexpected failure (a bug, a disk error): the stderr line says what. */
  FAILURE: 1,
  /** Bad arguments or input, or a request refused as wrong (not found, invalid field, conflict). */
  USAGE: 2,
  /** No credential, or one refused or lacking the scope (401, 403). */
  AUTH: 3,
  /** `transcribe`: some files failed; the others were written. */
  PARTIAL: 4,
  /** The server could not be reached, failed (5xx), or was still busy (429) after the retries. */
  UNAVAILABLE: 5,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

/** The exit code an ApiError stands for. */
export function exitCodeOf(err: ApiError): ExitCode {
  if (err.status === 401 || err.status === 403) return EXIT.AUTH
  if (err.status === 429 || err.status >= 500) return EXIT.UNAVAILABLE
  return EXIT.USAGE
}

/** The code a status has when a server's answer names none we know. */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'BAD_REQUEST',
  401: 'INVALID_AUTH',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  408: 'REQUEST_TIMEOUT',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'TOO_MANY_REQUESTS',
  503: 'SERVICE_UNAVAILABLE',
  504: 'GATEWAY_TIMEOUT',
}

/**
 * A server's Deepgram-shaped error answer (`{err_code, err_msg, request_id}`) as the ApiError it rendered,
 * so the CLI prints and exits the same way whether it acted on the store or through a server.
 */
export function fromErrorBody(status: number, body: unknown): ApiError {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  const named = typeof b.err_code === 'string' && b.err_code in ERRORS ? (b.err_code as ErrorCode) : undefined
  const code = named ?? BY_STATUS[status] ?? (status >= 500 ? 'INTERNAL_ERROR' : 'BAD_REQUEST')
  const message = typeof b.err_msg === 'string' && b.err_msg !== '' ? b.err_msg : undefined
  return new ApiError(code, message)
}
