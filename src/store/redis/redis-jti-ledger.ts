import type { JtiLedger } from '../../access/index.js'
import type { Clock } from '../../auth/index.js'
import { defineScript, type RedisClient, redisUnavailable } from './redis-client.js'

/**
 * One redemption, atomically: count the use, make the entry die with the token (PEXPIREAT its expiry), and
 * say whether the count is still within `max_uses`. Uses past the limit are counted too; they change nothing.
 */
const REDEEM = `
local used = redis.call('INCR', KEYS[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
if used > tonumber(ARGV[1]) then return 0 end
return 1
`

export interface RedisJtiLedgerOptions {
  client: RedisClient
  /** Key prefix (docs/redis.md): entries are `<prefix>jti:<jti>`. */
  prefix: string
  clock: Clock
  /** Told about each failed redemption (the request gets a 503). */
  onError?(err: unknown): void
}

/**
 * The `max_uses` ledger in Redis, shared by every node (docs/redis.md): one counter per `jti`, incremented by
 * a Lua script, so of any number of concurrent redemptions on any nodes at most `max_uses` succeed. It
 * outlives Earmark's processes, so unlike the memory ledger it knows the uses of tokens minted before this
 * process started and does not refuse them (`issuedAtMs` is not needed). Unreachable Redis fails closed: a
 * use that cannot be counted is not granted (503 `SERVICE_UNAVAILABLE`), whatever `EARMARK_REDIS_FAIL_OPEN`.
 */
export function createRedisJtiLedger(o: RedisJtiLedgerOptions): JtiLedger {
  const redeem = defineScript(o.client, 'earmarkJtiRedeem', REDEEM)
  return {
    async redeem(jti, maxUses, expiresAtMs) {
      if (expiresAtMs <= o.clock.now()) return false
      try {
        const ok = await redeem(`${o.prefix}jti:${jti}`, String(maxUses), String(Math.ceil(expiresAtMs)))
        return ok === 1
      } catch (err) {
        o.onError?.(err)
        throw redisUnavailable('Token use ledger')
      }
    },
  }
}
