import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ApiError, ERRORS, type ErrorCode, isApiError } from '../../errors.js'
import { headerSafe } from '../header-value.js'
import { genRequestId, setErrorRequestIdHeader, setRequestIdHeader } from './request-id.js'

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

/** The Deepgram error body (docs/deepgram-compat.md §5, legacy shape). */
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
  if (api.headers) reply.headers(api.headers)
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

/**
 * Node's HTTP parser refused the request (a control character in a header, a malformed request line,
 * headers past the size limit) or it did not arrive in time: there is no request object, so the answer is
 * written to the socket here, in the Deepgram shape with a fresh request id, instead of Fastify's own body.
 * Nothing is logged: the error carries the raw request bytes, credentials included.
 */
export function handleClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const code: ErrorCode =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'REQUEST_TIMEOUT'
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? 'HEADERS_TOO_LARGE'
        : 'BAD_REQUEST'
  const { status, message } = ERRORS[code]
  const requestId = genRequestId()
  const body = JSON.stringify(errorBody(code, message, requestId))
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
        `content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `dg-request-id: ${requestId}\r\nx-request-id: ${requestId}\r\ndg-error: ${message}\r\n` +
        `connection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy()
}
