import { randomUUID } from 'node:crypto'
import { createRevocationBus, type RevocationBus } from '../../revocation/index.js'
import { closeRedisClient, createRedisClient, type RedisClient } from './redis-client.js'
import { encodeRevocation, revocationChannel } from './redis-revocation-bus.js'

export interface RedisRevocationPublisherOptions {
  /** `EARMARK_REDIS_URL`. */
  url: string
  /** `EARMARK_REDIS_PREFIX`: the channel is `<prefix>revocations`, the one the nodes listen on. */
  prefix: string
  /** How long `close` waits for publishes still on their way before it gives up on them, ms (default 2 000). */
  flushTimeoutMs?: number
}

/** A bus that only announces, for a short-lived process: the CLI. */
export interface RedisRevocationPublisher extends RevocationBus {
  /**
   * Waits until every event published so far has reached Redis (at most `flushTimeoutMs`), then closes the
   * connection. Resolves to how many did not: their nodes then see the change at their next store check.
   */
  close(): Promise<number>
}

/**
 * Announces revocations made outside a server (`earmark keys delete`, `disable`, `reroll`, `signing-keys
 * retire`) on the channel every node listens on, so their streams close at once rather than at each node's
 * next store poll (docs/redis.md, docs/revocation.md). It never subscribes. The connection is opened at the
 * first publish, so a command that revokes nothing never reaches Redis; it queues while connecting (a CLI
 * command publishes right after its write), and `close` bounds the wait when Redis cannot be reached.
 */
export function createRedisRevocationPublisher(o: RedisRevocationPublisherOptions): RedisRevocationPublisher {
  const local = createRevocationBus()
  const node = randomUUID()
  const channel = revocationChannel(o.prefix)
  let client: RedisClient | undefined
  const sends: Promise<void>[] = []
  let delivered = 0
  return {
    publish(event) {
      local.publish(event)
      client ??= createRedisClient(o.url, { name: 'earmark-cli', offlineQueue: true })
      sends.push(
        client.publish(channel, encodeRevocation(node, event)).then(
          () => {
            delivered++
          },
          () => {},
        ),
      )
    },
    subscribe: (listener) => local.subscribe(listener),
    async close() {
      if (!client) return 0
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, o.flushTimeoutMs ?? 2000)
      })
      await Promise.race([Promise.all(sends), deadline])
      clearTimeout(timer)
      // A send still queued now (Redis unreachable) is dropped by the disconnect: counted as not delivered.
      await closeRedisClient(client)
      return sends.length - delivered
    },
  }
}
