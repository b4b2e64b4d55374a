import { randomUUID } from 'node:crypto'
import {
  createRevocationBus,
  type RevocationBus,
  type RevocationBusOptions,
  type RevocationEvent,
} from '../../revocation/index.js'
import type { RedisClient } from './redis-client.js'

/** A revocation on the wire: the event and the node that published it. */
interface Envelope {
  node: string
  event: RevocationEvent
}

export interface RedisRevocationBusOptions extends RevocationBusOptions {
  /** The command connection: publishes. */
  publisher: RedisClient
  /** A connection of its own, in subscriber mode from now on (it can send no other command). */
  subscriber: RedisClient
  /** Key prefix (docs/redis.md): the channel is `<prefix>revocations`. */
  prefix: string
  /** This process's id on the channel (default a random UUID): its own events come back and are skipped. */
  nodeId?: string
  /** A publish that did not reach Redis, or a message that could not be read. */
  onError?(err: unknown): void
}

/** A Redis-backed bus, with what it needs closed. */
export interface RedisRevocationBus extends RevocationBus {
  readonly nodeId: string
  /** Resolves once the subscription is in place (tests wait for it before publishing from elsewhere). */
  readonly subscribed: Promise<void>
  /** Stops listening to the channel. */
  close(): Promise<void>
}

/** The pub/sub channel revocations travel on (docs/redis.md). */
export function revocationChannel(prefix: string): string {
  return `${prefix}revocations`
}

/** A revocation as it travels on the channel: the event and the node that published it. */
export function encodeRevocation(node: string, event: RevocationEvent): string {
  const envelope: Envelope = { node, event }
  return JSON.stringify(envelope)
}

function isEvent(value: unknown): value is RevocationEvent {
  if (typeof value !== 'object' || value === null) return false
  const e = value as Record<string, unknown>
  switch (e.type) {
    case 'key-revoked':
      return typeof e.projectId === 'string' && typeof e.keyId === 'string' && typeof e.reason === 'string'
    case 'member-role-changed':
      return typeof e.projectId === 'string' && typeof e.memberId === 'string'
    case 'signing-key-retired':
      return typeof e.kid === 'string'
    case 'grant-revoked':
      return typeof e.projectId === 'string' && typeof e.jti === 'string' && typeof e.expiresAt === 'number'
    case 'credentials-changed':
      return true
    default:
      return false
  }
}

/**
 * The revocation bus across nodes (docs/redis.md, docs/revocation.md): `publish` delivers to this process's
 * subscribers at once (as the in-process bus does) and publishes on the Redis channel; a message from another
 * node is delivered to this process's subscribers. Own messages come back from Redis and are skipped by node
 * id, so a local subscriber sees each event once. Pub/sub is at-most-once per node: a node disconnected
 * when a revocation is published misses it, and relies on its stream guard's store checks (docs/redis.md).
 */
export function createRedisRevocationBus(o: RedisRevocationBusOptions): RedisRevocationBus {
  const local = createRevocationBus(o.onListenerError ? { onListenerError: o.onListenerError } : {})
  const nodeId = o.nodeId ?? randomUUID()
  const channel = revocationChannel(o.prefix)
  const onMessage = (from: string, message: string) => {
    if (from !== channel) return
    let envelope: Envelope
    try {
      envelope = JSON.parse(message) as Envelope
    } catch (err) {
      o.onError?.(err)
      return
    }
    if (envelope?.node === nodeId || !isEvent(envelope?.event)) return
    local.publish(envelope.event)
  }
  o.subscriber.on('message', onMessage)
  // The subscriber queues while disconnected and ioredis subscribes again after each reconnection.
  const subscribed = o.subscriber.subscribe(channel).then(
    () => undefined,
    (err: unknown) => {
      o.onError?.(err)
    },
  )
  return {
    nodeId,
    subscribed,
    publish(event) {
      local.publish(event)
      try {
        o.publisher
          .publish(channel, encodeRevocation(nodeId, event))
          .catch((err: unknown) => o.onError?.(err))
      } catch (err) {
        o.onError?.(err)
      }
    },
    subscribe: (listener) => local.subscribe(listener),
    async close() {
      o.subscriber.off('message', onMessage)
      try {
        if (o.subscriber.status === 'ready') await o.subscriber.unsubscribe(channel)
      } catch {
        // closing anyway
      }
    },
  }
}
