import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError, ERRORS, type ErrorCode, isApiError } from '../../errors.js'
import { headerSafe } from '../header-value.js'
import { setErrorRequestIdHeader, setRequestIdHeader } from './request-id.js'

/** Fastify's own client errors, mapped onto the ERRORS table. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'PAYLOAD_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST',
}

/** The Deepgram error body (deepgram-api.md §5, legacy shape). */
export function errorBody(code: string, message: string, requestId: string) {
  return { err_code: code, err_msg: message, request_id: requestId }
}

/** One handler, three branches: ours, the framework's, unknown (logged, never echoed). */
export function handleError(
  error: FastifyError | ApiError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  let api: ApiError
  if (isApiError(error)) {
    api = error
  } else {
    const fe = error as FastifyError
    const mapped = fe.code ? FRAMEWORK_CODES[fe.code] : undefined
    if (mapped) {
      api = new ApiError(mapped)
    } else if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
      api = new ApiError('BAD_REQUEST')
    } else {
      request.log.error({ err: error }, 'unhandled error')
      api = new ApiError('INTERNAL_ERROR')
    }
  }
  // Framework errors (a bad URL) come before the hook that sets dg-request-id.
  setRequestIdHeader(request, reply)
  setErrorRequestIdHeader(request, reply)
  reply
    .code(api.status)
    // The message may quote the client's input; the header gets a safe copy, the body the whole of it.
    .header('dg-error', headerSafe(api.message))
    .send(errorBody(api.code, api.message, request.id))
}

export function handleNotFound(request: FastifyRequest, reply: FastifyReply) {
  const { status, message } = ERRORS.NOT_FOUND
  setErrorRequestIdHeader(request, reply)
  reply.code(status).send(errorBody('NOT_FOUND', message, request.id))
}
