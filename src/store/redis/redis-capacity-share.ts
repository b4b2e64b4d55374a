import { randomUUID } from 'node:crypto'
import type { Principal } from '../../auth/index.js'
import {
  type CapacityShare,
  type CapacityShareLimits,
  type CapacityShareOptions,
  type ShareHolder,
  shareRefusal,
  shareSubject,
} from '../../listen/index.js'
import { type RedisClient, redisUnavailable } from './redis-client.js'
import { defineMultiKeyScript } from './redis-scripts.js'

/**
 * One claim, atomically over every set it counts in: drop the claims whose lease has run out (their node
 * stopped renewing them: it died or lost Redis), refuse with the index of the first full set, else add the
 * claim to every set with its lease's end as its score. Times are Redis's own clock, shared by every node.
 * ARGV: claim id, lease ms, then one cap per key (0: no cap).
 */
const CLAIM = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local cap = tonumber(ARGV[2 + i])
  if cap > 0 and redis.call('ZCARD', KEYS[i]) >= cap then return i end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
`

/** A heartbeat: push a live claim's lease end further (only where it still is: XX). ARGV: claim id, lease ms. */
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 0
`

/** A release: the claim leaves every set. ARGV: claim id. */
const RELEASE = `
for i = 1, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 0
`

/** How long a claim lives in Redis without a heartbeat, ms: a dead node's streams free their slots within this. */
export const CLAIM_LEASE_MS = 15_000
/** How often a node renews the leases of the claims it holds, ms. */
export const CLAIM_HEARTBEAT_MS = 5_000

export interface RedisCapacityShareOptions extends CapacityShareOptions {
  client: RedisClient
  /** Key prefix (docs/redis.md): sets are `<prefix>streams:<holder>:<id>`. */
  prefix: string
  /** Lease and heartbeat, ms (tests shorten them); defaults `CLAIM_LEASE_MS`, `CLAIM_HEARTBEAT_MS`. */
  leaseMs?: number
  heartbeatMs?: number
  /** A failed Redis call (a claim's is a 503; a release's or renewal's is only logged). */
  onError?(err: unknown): void
}

/** A share in Redis, with its heartbeat to stop. */
export interface RedisCapacityShare extends CapacityShare {
  /** Stops the heartbeat and releases every claim this node still holds. */
  close(): Promise<void>
}

interface Held {
  keys: string[]
  keyId: string
  projectId: string
}

/**
 * The stream caps (`EARMARK_MAX_STREAMS_PER_*`, a project's and a key's own) counted in Redis, so every node
 * sees the same counts (docs/redis.md, "Stream caps"). Each holder (credential, key, end user, project) is a
 * sorted set of claim ids scored by when their lease ends; a claim is one Lua script that purges expired
 * claims, checks every cap and adds the claim to every set, so concurrent claims on any nodes never pass a
 * cap. The node renews its claims' leases every `heartbeatMs`; a node that dies stops renewing and its
 * claims fall out of the counts within `leaseMs`. Unreachable Redis fails closed: the claim is a 503.
 */
export function createRedisCapacityShare(
  limits: CapacityShareLimits,
  o: RedisCapacityShareOptions,
): RedisCapacityShare {
  const claimScript = defineMultiKeyScript(o.client, 'earmarkStreamClaim', CLAIM)
  const renewScript = defineMultiKeyScript(o.client, 'earmarkStreamRenew', RENEW)
  const releaseScript = defineMultiKeyScript(o.client, 'earmarkStreamRelease', RELEASE)
  const leaseMs = String(o.leaseMs ?? CLAIM_LEASE_MS)
  const held = new Map<string, Held>()
  const base = `${o.prefix}streams:`
  const failed = (err: unknown) => o.onError?.(err)

  const heartbeat = setInterval(() => {
    for (const [id, h] of held) void renewScript(h.keys, id, leaseMs).catch(failed)
  }, o.heartbeatMs ?? CLAIM_HEARTBEAT_MS)
  heartbeat.unref()

  const release = (id: string) => {
    const h = held.get(id)
    if (!h) return
    held.delete(id)
    // A release that does not reach Redis is not retried: the claim is no longer renewed, so it expires.
    void releaseScript(h.keys, id).catch(failed)
  }

  const count = (pick: (h: Held) => boolean) => {
    let n = 0
    for (const h of held.values()) if (pick(h)) n++
    return n
  }

  return {
    async claim(principal: Principal) {
      const subject = shareSubject(principal, limits, o)
      const holders: [ShareHolder, string, number][] = [
        ['credential', `credential:${subject.credentialId}`, subject.perCredential],
        ['key', `key:${subject.keyId}`, subject.perKey],
      ]
      if (subject.endUserId !== null) {
        holders.push(['endUser', `end-user:${subject.endUserId}`, subject.perEndUser])
      }
      holders.push(['project', `project:${subject.projectId}`, subject.perProject])
      const keys = holders.map(([, key]) => base + key)
      const id = randomUUID()
      let reply: unknown
      try {
        reply = await claimScript(keys, id, leaseMs, ...holders.map(([, , cap]) => String(Math.max(0, cap))))
      } catch (err) {
        failed(err)
        throw redisUnavailable('Stream caps')
      }
      const full = holders[Number(reply) - 1]
      if (full) throw shareRefusal(principal, subject, full[0], o)
      held.set(id, { keys, keyId: subject.keyId, projectId: subject.projectId })
      return () => release(id)
    },
    heldByKey: (keyId) => count((h) => h.keyId === keyId),
    heldByProject: (projectId) => count((h) => h.projectId === projectId),
    async close() {
      clearInterval(heartbeat)
      const ids = [...held.keys()]
      await Promise.all(
        ids.map((id) => {
          const h = held.get(id) as Held
          held.delete(id)
          return releaseScript(h.keys, id).catch(failed)
        }),
      )
    },
  }
}
