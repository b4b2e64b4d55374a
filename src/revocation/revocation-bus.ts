/** Why a credential stopped being good. */
export type RevocationEvent =
  /**
   * An API key was deleted, disabled or reached its expiry: it, every token it minted and their streams are
   * dead.
   */
  | { type: 'key-revoked'; projectId: string; keyId: string; reason: 'deleted' | 'expired' | 'disabled' }
  /** A member's role changed: their keys may have lost scopes, `usage:write` included. */
  | { type: 'member-role-changed'; projectId: string; memberId: string }
  /** A grant-signing key was retired: every token it signed is dead. */
  | { type: 'signing-key-retired'; kid: string }
  /**
   * One grant token was revoked by its `jti` (docs/live-streams.md): refused until `expiresAt` (epoch ms,
   * the token's own expiry), and its streams close.
   */
  | { type: 'grant-revoked'; projectId: string; jti: string; expiresAt: number }
  /** Credentials changed somewhere this process did not see (another process on the same store). */
  | { type: 'credentials-changed' }

export type RevocationListener = (event: RevocationEvent) => void

/**
 * Carries revocations from where they happen (a key deleted through the API, a role lowered, a signing key
 * retired, a change seen in the store) to what must act on them (open live streams). In-process for now:
 * one server, one bus. The next step puts Redis pub/sub behind this same interface so a revocation on one
 * node reaches the streams of every node; callers must therefore treat delivery as asynchronous and
 * at-least-once, and keep every listener idempotent.
 */
export interface RevocationBus {
  /** Delivers `event` to every subscriber; never throws (a failing listener does not stop the others). */
  publish(event: RevocationEvent): void
  /** Calls `listener` for every event published from now on; returns the unsubscribe function. */
  subscribe(listener: RevocationListener): () => void
}

export interface RevocationBusOptions {
  /** Told about a listener that threw (it is not rethrown). */
  onListenerError?: (err: unknown, event: RevocationEvent) => void
}

/** The in-process bus: listeners run synchronously, in subscription order. */
export function createRevocationBus(options: RevocationBusOptions = {}): RevocationBus {
  const listeners = new Set<RevocationListener>()
  return {
    publish(event) {
      for (const listener of [...listeners]) {
        try {
          listener(event)
        } catch (err) {
          options.onListenerError?.(err, event)
        }
      }
    },
    subscribe(listener) {
      // Wrapped, so the same function subscribed twice gets two independent subscriptions.
      const own: RevocationListener = (e) => listener(e)
      listeners.add(own)
      return () => {
        listeners.delete(own)
      }
    },
  }
}
