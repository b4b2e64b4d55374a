import { createHash, randomUUID } from 'node:crypto'
import type { QuotaBucket, QuotaLedger, QuotaReservation } from '../../quotas/index.js'
import type { Store } from '../index.js'
import { type RedisClient, redisUnavailable } from './redis-client.js'
import { defineMultiKeyScript } from './redis-scripts.js'

/**
 * Shared by the scripts below. KEYS come in pairs per bucket: the counter hash (`settled`, and one `r:<id>`
 * field per open reservation holding the seconds it has leased) and the set of open reservations scored by
 * when their lease ends. `purge` drops reservations whose node stopped renewing them; a bucket left with no
 * reservation is forgotten, so the next one reads the store afresh (as the memory ledger forgets a counter).
 * `lease` grants up to `ask` seconds from what every bucket leaves, to every bucket at once. Seconds travel
 * as strings: a Lua number in a reply is cut to an integer.
 */
const COMMON = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS / 2
local function purge(h, live)
  local gone = redis.call('ZRANGEBYSCORE', live, '-inf', now)
  for _, id in ipairs(gone) do redis.call('HDEL', h, 'r:' .. id) end
  redis.call('ZREMRANGEBYSCORE', live, '-inf', now)
  if redis.call('ZCARD', live) == 0 then redis.call('DEL', h, live) end
end
local function used(h)
  local all = redis.call('HGETALL', h)
  local sum = 0
  for i = 1, #all, 2 do sum = sum + tonumber(all[i + 1]) end
  return sum
end
local function lease(res, ask, limitAt)
  local grant = ask
  local left = {}
  for i = 1, n do
    left[i] = tonumber(ARGV[limitAt + i - 1]) - used(KEYS[2 * i - 1])
    if left[i] < grant then grant = left[i] end
  end
  if grant < 0 then grant = 0 end
  local reply = {tostring(grant)}
  for i = 1, n do
    if grant > 0 then redis.call('HINCRBYFLOAT', KEYS[2 * i - 1], 'r:' .. res, grant) end
    reply[i + 1] = tostring(left[i] - grant)
  end
  return reply
end
`

/**
 * Opens a reservation. ARGV: reservation id, lease ms, seconds asked, then per bucket its store sum and its
 * limit. A bucket with no counter starts from its store sum; replies `{granted, left per bucket}`.
 */
const OPEN = `${COMMON}
local res, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local h, live = KEYS[2 * i - 1], KEYS[2 * i]
  purge(h, live)
  if redis.call('HEXISTS', h, 'settled') == 0 then redis.call('HSET', h, 'settled', ARGV[3 + i]) end
  redis.call('HSET', h, 'r:' .. res, 0)
  redis.call('ZADD', live, now + ttl, res)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', live, ttl)
end
return lease(res, tonumber(ARGV[3]), 4 + n)
`

/**
 * Renews a reservation's lease and leases `ask` more seconds (0: a heartbeat, which still replies what is
 * left). ARGV: reservation id, lease ms, seconds asked, then the limits. Replies `{'-1'}` when the
 * reservation had expired (its node had stopped renewing it): it holds nothing any more.
 */
const LEASE = `${COMMON}
local res, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local h, live = KEYS[2 * i - 1], KEYS[2 * i]
  purge(h, live)
  if redis.call('HEXISTS', h, 'r:' .. res) == 0 then return {'-1'} end
end
for i = 1, n do
  local h, live = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('ZADD', live, 'XX', now + ttl, res)
  redis.call('PEXPIRE', h, ttl)
  redis.call('PEXPIRE', live, ttl)
end
return lease(res, tonumber(ARGV[3]), 4)
`

/**
 * Closes a reservation once its usage record is in the store: what it took moves to `settled` for the
 * reservations still open (they never read the store again); a bucket left with none is forgotten.
 * ARGV: reservation id, seconds taken.
 */
const RELEASE = `${COMMON}
local res = ARGV[1]
for i = 1, n do
  local h, live = KEYS[2 * i - 1], KEYS[2 * i]
  redis.call('HDEL', h, 'r:' .. res)
  redis.call('ZREM', live, res)
  purge(h, live)
  if redis.call('EXISTS', h) == 1 then redis.call('HINCRBYFLOAT', h, 'settled', ARGV[2]) end
end
return 0
`

/** Seconds a reservation leases at a time: what other nodes cannot have while it holds them unused. */
export const QUOTA_LEASE_SECONDS = 10
/** How long a reservation lives in Redis without a heartbeat, ms; how often it is renewed, ms. */
export const QUOTA_RESERVATION_MS = 15_000
export const QUOTA_HEARTBEAT_MS = 5_000

/** How long a reservation that was told nothing is left waits before it asks again, ms. */
const EMPTY_PAUSE_MS = 250

/** As in the memory ledger: float sums of chunk lengths drift by about 1e-15 s. */
const SLACK_SECONDS = 1e-9

export interface RedisQuotaLedgerOptions {
  client: RedisClient
  store: Store
  /** Key prefix (docs/redis.md): counters are `<prefix>quota:<hash of the bucket id>`. */
  prefix: string
  /** Seconds leased at a time (default `QUOTA_LEASE_SECONDS`); reservation lease and heartbeat, ms. */
  leaseSeconds?: number
  reservationMs?: number
  heartbeatMs?: number
  /** A failed Redis call (opening a reservation is a 503; the others are only logged). */
  onError?(err: unknown): void
}

/** The ledger in Redis, with its heartbeat to stop. */
export interface RedisQuotaLedger extends QuotaLedger {
  /** Stops the heartbeat (open reservations then expire in Redis unless released). */
  close(): void
}

interface Open {
  keys: string[]
  limits: string[]
  /** Asks Redis for more seconds (`ask`) and renews the lease. */
  renew(ask: number): Promise<void>
}

/**
 * Audio quotas' open part in Redis, shared by every node (docs/redis.md, "Quotas"). A counter per bucket
 * holds the settled seconds (the store's sum when the counter was made, plus what closed reservations took
 * since) and what each open reservation leased. `take` stays synchronous, as a live stream needs: a
 * reservation leases seconds in blocks of `leaseSeconds` (one script, over every bucket at once, so nodes
 * together never lease past a limit) and takes from its block locally, leasing the next block when half is
 * spent. Unused leased seconds go back at release. Reservations are renewed by a heartbeat; a dead node's
 * fall out within `reservationMs`. Unreachable Redis fails closed: opening a reservation is a 503, and a
 * stream that has spent its block while Redis is away is stopped as at its quota.
 */
export function createRedisQuotaLedger(o: RedisQuotaLedgerOptions): RedisQuotaLedger {
  const openScript = defineMultiKeyScript(o.client, 'earmarkQuotaOpen', OPEN)
  const leaseScript = defineMultiKeyScript(o.client, 'earmarkQuotaLease', LEASE)
  const releaseScript = defineMultiKeyScript(o.client, 'earmarkQuotaRelease', RELEASE)
  const block = o.leaseSeconds ?? QUOTA_LEASE_SECONDS
  const ttl = String(o.reservationMs ?? QUOTA_RESERVATION_MS)
  const failed = (err: unknown) => o.onError?.(err)
  const open = new Set<Open>()
  const heartbeat = setInterval(() => {
    for (const r of open) void r.renew(0)
  }, o.heartbeatMs ?? QUOTA_HEARTBEAT_MS)
  heartbeat.unref()

  const keysOf = (buckets: readonly QuotaBucket[]) =>
    buckets.flatMap((b) => {
      const k = `${o.prefix}quota:${createHash('sha256').update(b.id).digest('hex').slice(0, 32)}`
      return [k, `${k}:live`]
    })

  return {
    async reserve<B extends QuotaBucket>(buckets: readonly B[]): Promise<QuotaReservation<B>> {
      const id = randomUUID()
      const keys = keysOf(buckets)
      const limits = buckets.map((b) => String(b.limit))
      // Read before the counter is made: used only when no reservation holds the bucket (nothing is open).
      const sums = await Promise.all(buckets.map((b) => o.store.sumAudioSeconds(b.projectId, b.filter)))
      // A block never larger than the smallest limit.
      const size = Math.min(block, ...buckets.map((b) => b.limit))
      let reply: string[]
      try {
        reply = (await openScript(keys, id, ttl, String(size), ...sums.map(String), ...limits)) as string[]
      } catch (err) {
        failed(err)
        throw redisUnavailable('Quotas')
      }
      let leased = Number(reply[0])
      let taken = 0
      /** What each bucket leaves to everyone after this reservation's leases, as Redis last said. */
      let others = buckets.map((_, i) => Math.max(0, Number(reply[i + 1])))
      let released = false
      let asking: Promise<void> | undefined
      let quietUntil = 0
      const r: Open = {
        keys,
        limits,
        renew(ask) {
          if (asking) return asking
          asking = leaseScript(keys, id, ttl, String(ask), ...limits)
            .then((raw) => {
              const got = raw as string[]
              if (released) return
              if (got[0] === '-1') {
                // Expired while this node could not renew it: what it leased is gone, so it takes no more.
                leased = taken
                others = others.map(() => 0)
                return
              }
              leased += Number(got[0])
              // Nothing to lease: ask again only after a pause, not on every chunk.
              if (ask > 0 && !(Number(got[0]) > 0)) quietUntil = Date.now() + EMPTY_PAUSE_MS
              others = buckets.map((_, i) => Math.max(0, Number(got[i + 1])))
            }, failed)
            .finally(() => {
              asking = undefined
            })
          return asking
        },
      }
      open.add(r)
      const balance = () => Math.max(0, leased - taken)
      const leftAt = (i: number) => balance() + (others[i] ?? 0)
      const remaining = () =>
        buckets.reduce((least, _, i) => Math.min(least, leftAt(i)), Number.POSITIVE_INFINITY)
      const topUp = () => {
        // Also when Redis last said nothing was left: another reservation may have given its lease back since.
        if (!released && balance() < size / 2 && Date.now() >= quietUntil) void r.renew(size)
      }
      return {
        remaining,
        take(seconds) {
          if (released || !(seconds > 0)) return 0
          const have = balance()
          const granted = seconds <= have + SLACK_SECONDS ? seconds : have
          taken += granted
          topUp()
          return granted
        },
        short: (seconds) => buckets.filter((_, i) => leftAt(i) + SLACK_SECONDS < seconds),
        left(bucket) {
          const i = buckets.findIndex((b) => b.id === bucket.id)
          return i < 0 ? 0 : leftAt(i)
        },
        release() {
          if (released) return
          released = true
          open.delete(r)
          // Not retried: a reservation no longer renewed expires, and its unused lease with it.
          void releaseScript(keys, id, String(taken)).catch(failed)
        },
      }
    },
    close() {
      clearInterval(heartbeat)
    },
  }
}
