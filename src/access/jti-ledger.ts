import type { Clock } from '../auth/index.js'

/**
 * The replay ledger of grant tokens with `max_uses` (docs/credential-options.md): how many uses each token
 * (by `jti`) has redeemed. One process keeps it in memory; several nodes need a shared backend (Redis), which
 * implements the same interface with an atomic increment that expires with the token.
 */
export interface JtiLedger {
  /**
   * Redeems one use of token `jti`, which may be used `maxUses` times and dies at `expiresAtMs` (epoch ms).
   * True when a use was left (and is now spent); false when none was, or the token is already dead. Atomic:
   * of any number of concurrent redemptions, at most `maxUses` succeed. `issuedAtMs` (the token's `iat`) lets a
   * ledger that cannot know a token's past uses (one that started after it was minted) refuse it.
   */
  redeem(jti: string, maxUses: number, expiresAtMs: number, issuedAtMs?: number): boolean | Promise<boolean>
}

/** The in-memory ledger, with how many tokens it remembers (for tests and metrics). */
export interface MemoryJtiLedger extends JtiLedger {
  readonly size: number
}

export interface MemoryJtiLedgerOptions {
  clock: Clock
  /** How often forgotten entries are swept, ms (default 1000). */
  sweepIntervalMs?: number
}

/**
 * A ledger in this process's memory. Synchronous, so the redemption cannot interleave with another (Node runs
 * one at a time) and the access gate stays promise-free. An entry is forgotten once its token has expired,
 * when a use of it can no longer be presented anyway: memory is bounded by the tokens alive at once (grant
 * TTLs are at most an hour). Entries sit in per-second buckets by expiry, so a sweep touches only the dead.
 */
export function createMemoryJtiLedger(options: MemoryJtiLedgerOptions): MemoryJtiLedger {
  const { clock } = options
  // Uses spent before this process started are not in its memory: a token minted before the start (a whole
  // second before, as `iat` is in seconds) is refused rather than trusted to be unused (fail closed).
  const startSecondMs = Math.floor(clock.now() / 1000) * 1000
  const sweepMs = options.sweepIntervalMs ?? 1000
  const used = new Map<string, number>()
  /** jtis by the second their token expires. */
  const buckets = new Map<number, string[]>()
  let nextSweep = 0

  const sweep = (now: number) => {
    nextSweep = now + sweepMs
    for (const [second, jtis] of buckets) {
      if (second * 1000 > now) continue
      for (const jti of jtis) used.delete(jti)
      buckets.delete(second)
    }
  }

  return {
    redeem(jti, maxUses, expiresAtMs, issuedAtMs) {
      const now = clock.now()
      if (now >= nextSweep) sweep(now)
      if (expiresAtMs <= now) return false
      if (issuedAtMs !== undefined && issuedAtMs < startSecondMs) return false
      const count = used.get(jti) ?? 0
      if (count >= maxUses) return false
      if (count === 0) {
        const second = Math.ceil(expiresAtMs / 1000)
        const bucket = buckets.get(second)
        if (bucket) bucket.push(jti)
        else buckets.set(second, [jti])
      }
      used.set(jti, count + 1)
      return true
    },
    get size() {
      return used.size
    },
  }
}
