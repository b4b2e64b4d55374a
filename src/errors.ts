/**
 * Every client-visible failure lives in this table, nowhere else. HTTP renders
 * `{ err_code, err_msg, request_id }` (docs/deepgram-compat.md §5, the "legacy" shape the SDKs read);
 * the CLI renders a stderr line and an exit code.
 */
export const ERRORS = {
  BAD_REQUEST: { status: 400, message: 'Bad request.' },
  INVALID_JSON: { status: 400, message: 'Invalid JSON submitted.' },
  INVALID_FIELD: { status: 400, message: 'A field of the request is invalid.' },
  BAD_AUDIO: { status: 400, message: 'Bad Request: failed to process audio: corrupt or unsupported data' },
  /** Deepgram's words for a model or voice it does not have (docs/deepgram-compat.md §5, §8.1). */
  MODEL_NOT_FOUND: { status: 400, message: 'Bad Request: No such model/version combination found.' },
  REMOTE_CONTENT_ERROR: { status: 400, message: 'Could not fetch the audio at the given URL.' },
  INVALID_AUTH: { status: 401, message: 'Invalid credentials.' },
  FORBIDDEN: { status: 403, message: 'Insufficient permissions.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  PROJECT_NOT_FOUND: { status: 404, message: 'Project not found.' },
  KEY_NOT_FOUND: { status: 404, message: 'API key not found.' },
  MEMBER_NOT_FOUND: { status: 404, message: 'Member not found.' },
  SIGNING_KEY_NOT_FOUND: { status: 404, message: 'No live signing key with that kid.' },
  REQUEST_NOT_FOUND: { status: 404, message: 'Request not found.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed.' },
  REQUEST_TIMEOUT: { status: 408, message: 'The request body did not arrive in time.' },
  CONFLICT: { status: 409, message: 'The request conflicts with the current state.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'Payload size exceeds the limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Content-Type is not supported.' },
  UPGRADE_REQUIRED: { status: 426, message: 'Upgrade required: WebSocket version 13.' },
  HEADERS_TOO_LARGE: { status: 431, message: 'The request headers are too large.' },
  TOO_MANY_REQUESTS: { status: 429, message: 'Too many requests. Please try again later' },
  INTERNAL_ERROR: { status: 500, message: 'Internal server error.' },
  /** The upstream speech service of a gateway failed or refused this server's credentials (docs/gateway.md). */
  UPSTREAM_ERROR: { status: 502, message: 'The upstream speech service failed. Please try again later' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'Please try again later' },
  GATEWAY_TIMEOUT: { status: 504, message: 'The request took too long to process. Please try again later' },
} as const satisfies Record<string, { status: number; message: string }>

export type ErrorCode = keyof typeof ERRORS

/** The one typed error. `detail` replaces the table's message when it says more (it must never hold a secret). */
export class ApiError extends Error {
  readonly code: ErrorCode
  readonly status: number
  /** Response headers the answer must carry (e.g. `Retry-After` on a 429); values are header-safe. */
  readonly headers: Readonly<Record<string, string>> | undefined

  constructor(code: ErrorCode, detail?: string, options?: { headers?: Record<string, string> }) {
    super(detail ?? ERRORS[code].message)
    this.name = 'ApiError'
    this.code = code
    this.status = ERRORS[code].status
    this.headers = options?.headers
  }
}

/**
 * A 429 that says when to come back: `Retry-After` in whole seconds (at least 1), rounded up from `retryAfterMs`.
 */
export function tooManyRequests(detail: string, retryAfterMs: number): ApiError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
  return new ApiError('TOO_MANY_REQUESTS', detail, { headers: { 'retry-after': String(seconds) } })
}

/** Shorthand for the 400 that names the field at fault. */
export function invalidField(field: string, problem: string): ApiError {
  return new ApiError('INVALID_FIELD', `Invalid field \`${field}\`: ${problem}.`)
}

export function isApiError(err: unknown): err is ApiError {
  return err instanceof ApiError
}
