import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Every request gets a fresh id (a client-sent one is never trusted), echoed as `dg-request-id`. Error
 * answers carry it as `x-request-id` too (`setErrorRequestIdHeader`): SDK v5's `DeepgramError.requestId`
 * reads that one, and nothing reads it on a success, so the hot path does not pay for the header.
 */
export function genRequestId(): string {
  return randomUUID()
}

export function setRequestIdHeader(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('dg-request-id', request.id)
}

export function setErrorRequestIdHeader(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('x-request-id', request.id)
}
