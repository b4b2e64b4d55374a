import { type Clock, effectiveScopes, type Principal, USAGE_WRITE } from '../auth/index.js'
import type { ApiKeyWithMember, Store } from '../store/index.js'
import type { RevocationBus, RevocationEvent } from './revocation-bus.js'

/**
 * How a live stream is closed when its credential dies (docs/revocation.md): 1008 with an Earmark reason.
 * `AUTH-0001`: the key, its member's role, the token itself or the token's signing key was revoked; `AUTH-0002`: the key
 * (for a grant token: the key that minted it) reached its expiry, or the secret a key stream was opened with
 * was rerolled and its grace period ended. A grant token's own expiry closes nothing: a stream outlives the
 * token that opened it (docs/deepgram-compat.md §2), and a token minted with a rerolled secret stays good
 * (it names the key by id, not by secret).
 */
export const REVOCATION_CLOSE = {
  REVOKED: { code: 1008, reason: 'AUTH-0001' },
  EXPIRED: { code: 1008, reason: 'AUTH-0002' },
} as const

export type RevocationClose = (typeof REVOCATION_CLOSE)[keyof typeof REVOCATION_CLOSE]

/** Watches the credentials of open streams and closes the streams whose credential dies. */
export interface StreamGuard {
  /**
   * Watches a stream opened by `principal` until the returned function is called (when the stream closes).
   * `onRevoked` runs at most once, within a second of the revocation.
   */
  watch(principal: Principal, onRevoked: (close: RevocationClose) => void): () => void
  /** Streams being watched. */
  readonly watching: number
  /** Stops every timer and the bus subscription. */
  close(): void
}

export interface StreamGuardOptions {
  store: Store
  clock: Clock
  bus: RevocationBus
  /**
   * How often the store's credentials version is read while a stream is open, ms (default 250): how another
   * process's write (`earmark keys delete`) is seen. Reading it costs about a microsecond.
   */
  pollMs?: number
  /** Told about a re-check that failed (the store could not be read); the streams stay open. */
  onError?: (err: unknown) => void
}

interface Watched {
  projectId: string
  keyId: string
  memberId: string
  /** The signing key of the grant token that opened the stream. */
  kid: string | undefined
  /** The id of the grant token that opened the stream. */
  jti: string | undefined
  onRevoked: (close: RevocationClose) => void
  done: boolean
  expiryTimer: NodeJS.Timeout | undefined
  expiresAt: number | null
  /**
   * For a stream opened with a key's current secret: that secret's hash, until a reroll replaces it (then
   * `secretEndsAt` is set from the reroll's grace period and this is cleared).
   */
  secretHash: string | undefined
  /** When the secret the stream was opened with stops working (a rerolled secret's grace end), or null. */
  secretEndsAt: number | null
}

function earliest(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : Math.min(a, b)
}

/** Longest delay a Node timer takes (about 24.8 days); a later expiry is re-armed when it fires. */
const MAX_TIMER_MS = 2 ** 31 - 1
/** Timers may fire a little before the wall clock agrees; the check then re-arms, so aim a bit later. */
const TIMER_SLACK_MS = 5

/**
 * The in-process stream guard. Three ways a revocation reaches it: an event on the bus (this process
 * deleted a key, changed a role, retired a signing key: acted on at once), a change of the store's
 * credentials version (another process wrote: polled only while streams are open, then every open stream's
 * key is read again), and a timer at the key's expiry.
 */
export function createStreamGuard(o: StreamGuardOptions): StreamGuard {
  const { store, clock, bus } = o
  const pollMs = o.pollMs ?? 250
  const streams = new Set<Watched>()
  let poll: NodeJS.Timeout | undefined
  let seenVersion = 0

  /** Stops watching `s`; false when it was already done. */
  const forget = (s: Watched): boolean => {
    if (s.done) return false
    s.done = true
    clearTimeout(s.expiryTimer)
    streams.delete(s)
    if (streams.size === 0) stopPolling()
    return true
  }

  const revoke = (s: Watched, close: RevocationClose) => {
    if (forget(s)) s.onRevoked(close)
  }

  const armExpiry = (s: Watched, expiresAt: number | null) => {
    if (s.done || (s.expiryTimer && s.expiresAt === expiresAt)) return
    clearTimeout(s.expiryTimer)
    s.expiresAt = expiresAt
    s.expiryTimer = undefined
    if (expiresAt === null) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, expiresAt - clock.now()) + TIMER_SLACK_MS)
    s.expiryTimer = setTimeout(() => {
      s.expiryTimer = undefined
      s.expiresAt = null
      void check([s])
    }, delay)
    s.expiryTimer.unref()
  }

  /** Reads the keys (and signing keys) of `targets` again and closes the streams whose credential died. */
  const check = async (targets: Iterable<Watched>) => {
    try {
      const keys = new Map<string, Promise<ApiKeyWithMember | undefined>>()
      let liveKids: Promise<Set<string>> | undefined
      for (const s of [...targets]) {
        if (s.done) continue
        const id = `${s.projectId}/${s.keyId}`
        let read = keys.get(id)
        if (!read) {
          read = store.getKey(s.projectId, s.keyId)
          keys.set(id, read)
        }
        const key = await read
        if (!key || key.deletedAt !== null || key.disabledAt !== null) {
          revoke(s, REVOCATION_CLOSE.REVOKED)
          continue
        }
        // The key was rerolled since the stream opened with its then-current secret: that secret now lives
        // only until the reroll's grace period ends (docs/audit.md, "Key reroll").
        if (s.secretHash !== undefined && key.hash !== s.secretHash) {
          const old = await store.findKeyByHash(s.secretHash)
          s.secretHash = undefined
          s.secretEndsAt = old?.previousSecretExpiresAt ?? clock.now()
        }
        const expiresAt = earliest(key.expiresAt, s.secretEndsAt)
        if (expiresAt !== null && expiresAt <= clock.now()) revoke(s, REVOCATION_CLOSE.EXPIRED)
        // A lowered role caps the key's scopes: a stream needs `usage:write` for as long as it runs.
        else if (!effectiveScopes(key.scopes, key.memberRole).has(USAGE_WRITE))
          revoke(s, REVOCATION_CLOSE.REVOKED)
        else if (s.kid !== undefined) {
          liveKids ??= store
            .listSigningKeys()
            .then((all) => new Set(all.filter((k) => k.retiredAt === null).map((k) => k.kid)))
          if (!(await liveKids).has(s.kid)) revoke(s, REVOCATION_CLOSE.REVOKED)
          else armExpiry(s, expiresAt)
        } else armExpiry(s, expiresAt)
      }
    } catch (err) {
      o.onError?.(err)
    }
  }

  const startPolling = () => {
    if (poll) return
    seenVersion = store.credentialsVersion()
    poll = setInterval(() => {
      const version = store.credentialsVersion()
      if (version === seenVersion) return
      seenVersion = version
      bus.publish({ type: 'credentials-changed' })
    }, pollMs)
    poll.unref()
  }
  const stopPolling = () => {
    clearInterval(poll)
    poll = undefined
  }

  const onEvent = (e: RevocationEvent) => {
    switch (e.type) {
      case 'key-revoked':
        for (const s of [...streams]) {
          if (s.projectId === e.projectId && s.keyId === e.keyId)
            revoke(s, e.reason === 'expired' ? REVOCATION_CLOSE.EXPIRED : REVOCATION_CLOSE.REVOKED)
        }
        return
      case 'signing-key-retired':
        for (const s of [...streams]) if (s.kid === e.kid) revoke(s, REVOCATION_CLOSE.REVOKED)
        return
      case 'grant-revoked':
        for (const s of [...streams]) {
          if (s.projectId === e.projectId && s.jti === e.jti) revoke(s, REVOCATION_CLOSE.REVOKED)
        }
        return
      case 'member-role-changed':
        void check([...streams].filter((s) => s.projectId === e.projectId && s.memberId === e.memberId))
        return
      case 'credentials-changed':
        void check(streams)
        return
    }
  }
  const unsubscribe = bus.subscribe(onEvent)

  return {
    watch(principal, onRevoked) {
      // A key presented itself (not a grant token): its secret, or the rerolled-away secret's grace end.
      const key = principal.grant ? undefined : principal.key
      const graceEnds = key?.previousSecretExpiresAt
      const s: Watched = {
        projectId: principal.projectId,
        keyId: principal.keyId,
        memberId: principal.memberId,
        kid: principal.grant?.kid,
        jti: principal.grant?.jti,
        onRevoked,
        done: false,
        expiryTimer: undefined,
        expiresAt: null,
        secretHash: key && graceEnds === undefined ? key.hash : undefined,
        secretEndsAt: graceEnds ?? null,
      }
      streams.add(s)
      startPolling()
      // The credential may have died between its check at the upgrade and now; this also arms the expiry.
      void check([s])
      return () => {
        forget(s)
      }
    },
    get watching() {
      return streams.size
    },
    close() {
      unsubscribe()
      stopPolling()
      for (const s of streams) clearTimeout(s.expiryTimer)
      streams.clear()
    },
  }
}
