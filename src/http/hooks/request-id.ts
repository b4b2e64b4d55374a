import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** Every request gets a fresh id (a client-sent one is never trusted), echoed as `dg-request-id`. */
export function genRequestId(): string {
  return randomUUID()
}

export async function setRequestIdHeader(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  reply.header('dg-request-id', request.id)
}
