import type { RedisClient } from '../../src/store/redis/index.js'

/** The real Redis the tests use (`.ci/run` and `npm test` start one at 127.0.0.1:6379). */
export const TEST_REDIS_URL = process.env.EARMARK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** Nothing listens here: how an unreachable Redis looks. */
export const CLOSED_REDIS_URL = 'redis://127.0.0.1:1'

/** Resolves once `client` is connected (the clients do not queue commands while connecting). */
export async function redisReady(client: RedisClient): Promise<RedisClient> {
  if (client.status !== 'ready') await new Promise((resolve) => client.once('ready', resolve))
  return client
}

/** Deletes every key under `prefix` (a test's own), by SCAN: never FLUSHDB, others share this Redis. */
export async function deleteKeys(client: RedisClient, prefix: string): Promise<void> {
  let cursor = '0'
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
    cursor = next
    if (keys.length > 0) await client.del(...keys)
  } while (cursor !== '0')
}
