import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/**
 * Every request gets a fresh id (a client-sent one is never trusted), echoed as `dg-request-id`, and as
 * `x-request-id` too: SDK v5's `DeepgramError.requestId` reads that one.
 */
export function genRequestId(): string {
  return randomUUID()
}

export function setRequestIdHeaders(request: FastifyRequest, reply: FastifyReply): void {
  reply.header('dg-request-id', request.id)
  reply.header('x-request-id', request.id)
}
