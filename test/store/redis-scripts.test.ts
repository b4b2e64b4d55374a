import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import {
  closeRedisClient,
  createRedisClient,
  defineScript,
  type RedisClient,
} from '../../src/store/redis/index.js'
import { deleteKeys, redisReady, TEST_REDIS_URL } from '../helpers/redis.js'

// A script defined while an auto-pipeline is waiting to be sent (src/store/redis/redis-client.ts,
// `defineCommandSafely`): against the real Redis, every caller of that pipeline gets its own reply.

describe('Redis scripts defined while commands are pending', () => {
  const prefix = `earmark-test:${randomUUID()}:`
  let client: RedisClient

  before(async () => {
    client = await redisReady(createRedisClient(TEST_REDIS_URL))
  })
  after(async () => {
    await deleteKeys(client, prefix)
    await closeRedisClient(client)
  })

  it('runs a script defined in the same turn as pending commands, and every reply reaches its caller', async () => {
    const key = (n: number) => `${prefix}k${n}`
    // Commands issued now wait in an auto-pipeline until the next turn of the event loop.
    const before = [client.set(key(1), 'one'), client.get(key(1))]
    const echo = defineScript(client, `echo_${randomUUID().replaceAll('-', '')}`, 'return ARGV[1] .. KEYS[1]')
    const scripted = echo(key(2), 'value of ')
    const afterIt = [client.set(key(3), 'three'), client.get(key(3))]
    assert.deepEqual(await Promise.all(before), ['OK', 'one'])
    assert.equal(await scripted, `value of ${key(2)}`)
    assert.deepEqual(await Promise.all(afterIt), ['OK', 'three'])
  })
})
