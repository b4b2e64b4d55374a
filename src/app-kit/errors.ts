/**
 * Every failure the app kit answers with, in one table (code → status, message). Rendered as Deepgram's error
 * body `{ err_code, err_msg, request_id }` (docs/deepgram-compat.md §5) on HTTP and at a refused WebSocket
 * upgrade.
 */
export const APP_KIT_ERRORS = {
  INVALID_JSON: { status: 400, message: 'Invalid JSON submitted.' },
  INVALID_FIELD: { status: 400, message: 'A field of the request is invalid.' },
  INVALID_AUTH: { status: 401, message: 'Invalid credentials.' },
  FORBIDDEN: { status: 403, message: 'Insufficient permissions.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  KEY_NOT_FOUND: { status: 404, message: 'API key not found.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed.' },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'Payload size exceeds the limit.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Content-Type is not supported.' },
  UPGRADE_REQUIRED: { status: 426, message: 'This route is a WebSocket: open it with an Upgrade request.' },
  TOO_MANY_REQUESTS: { status: 429, message: 'Too many requests. Please try again later' },
  INTERNAL_ERROR: { status: 500, message: 'Internal server error.' },
  UPSTREAM_ERROR: { status: 502, message: 'The speech server could not be reached or refused the request.' },
  SERVICE_UNAVAILABLE: { status: 503, message: 'The proxy is shutting down.' },
} as const satisfies Record<string, { status: number; message: string }>

/** A code of {@link APP_KIT_ERRORS}. */
export type AppKitErrorCode = keyof typeof APP_KIT_ERRORS

/**
 * The app kit's one typed error. An `authorize` hook may throw `new AppKitError('FORBIDDEN')` to answer 403
 * instead of the 401 a `null` (or any other throw) gives. `status` may be overridden to pass an upstream's
 * status through (a 429 at the speech server stays a 429). The message must never hold a secret.
 */
export class AppKitError extends Error {
  /** The stable `err_code`. */
  readonly code: AppKitErrorCode | string
  /** The HTTP status it is answered with. */
  readonly status: number

  constructor(code: AppKitErrorCode, detail?: string, overrides?: { status?: number; errCode?: string }) {
    super(detail ?? APP_KIT_ERRORS[code].message)
    this.name = 'AppKitError'
    this.code = overrides?.errCode ?? code
    this.status = overrides?.status ?? APP_KIT_ERRORS[code].status
  }
}

/** Deepgram's error body. */
export function errorBody(err: AppKitError, requestId: string) {
  return { err_code: err.code, err_msg: err.message, request_id: requestId }
}

/** Any thrown value as an AppKitError; unknown errors become a 500 whose message is never echoed. */
export function toAppKitError(err: unknown): AppKitError {
  return err instanceof AppKitError ? err : new AppKitError('INTERNAL_ERROR')
}

/** Header-safe text: printable ASCII only. */
export function headerText(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '')
}
