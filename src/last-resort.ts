import { AsyncLocalStorage } from 'node:async_hooks'
import type { FastifyBaseLogger } from 'fastify'

/**
 * The request id of the live socket whose work is running now. The upgrade helper runs each upgrade in it
 * and the session binds its socket listeners to it, so timers, ffmpeg and engine callbacks of a stream
 * carry their stream's id; a fault that reaches the process handlers can then be logged with it.
 */
export const requestScope = new AsyncLocalStorage<string>()

export interface LastResortOptions {
  log: FastifyBaseLogger
  /** Closes what can be closed and exits non-zero; called once. */
  shutdown(reason: string): void
  /** Closes the live stream of `requestId` (1011 `NET-0000`): its work faulted, the other streams go on. */
  closeStream?: (requestId: string) => void
  /** Faults kept serving through in `windowMs` before the process stops anyway. Default 5. */
  maxFaults?: number
  /** Default 60 s. */
  windowMs?: number
  now?: () => number
}

/** The process handlers of `earmark serve`. */
export interface LastResort {
  onUncaughtException(err: unknown): void
  onUnhandledRejection(reason: unknown): void
}

/**
 * The last line of defence behind the live socket's own guards: every path there has an owner, so reaching
 * this is a bug. The policy:
 * - an unhandled rejection is logged at error (with the request id when known; that stream is closed) and
 *   the server keeps serving: the promise's work is already over, nothing was left half-done in a
 *   synchronous frame;
 * - an uncaught exception thrown in a live stream's work (the request id is known) is logged at error, that
 *   stream alone is closed (1011 `NET-0000`), and the server keeps serving: the other streams and requests
 *   do not share its state;
 * - an uncaught exception that cannot be attributed is logged at fatal and the process shuts down: its
 *   state is unknown (Node's own advice), and a supervisor restarts it;
 * - more than `maxFaults` kept-serving faults within `windowMs` shut the process down too: a bug that
 *   repeats should restart the process rather than pile up damage.
 * Only `serve()` installs it; tests run `createEarmark` in-process without it, so a bug still fails them.
 */
export function createLastResort(o: LastResortOptions): LastResort {
  const maxFaults = o.maxFaults ?? 5
  const windowMs = o.windowMs ?? 60_000
  const now = o.now ?? Date.now
  const faults: number[] = []
  let stopping = false

  const stop = (reason: string) => {
    if (stopping) return
    stopping = true
    o.shutdown(reason)
  }
  const keepServing = () => {
    const t = now()
    faults.push(t)
    while (faults.length > 0 && (faults[0] ?? t) <= t - windowMs) faults.shift()
    if (faults.length > maxFaults) {
      o.log.fatal({ faults: faults.length, window_ms: windowMs }, 'too many faults: shutting down')
      stop('too many faults')
    }
  }

  return {
    onUncaughtException(err) {
      const requestId = requestScope.getStore()
      if (requestId === undefined) {
        o.log.fatal({ err }, 'uncaught exception (a bug): shutting down')
        stop('uncaught exception')
        return
      }
      o.log.error({ err, request_id: requestId }, 'uncaught exception in a live stream (a bug)')
      o.closeStream?.(requestId)
      keepServing()
    },
    onUnhandledRejection(reason) {
      const requestId = requestScope.getStore()
      o.log.error({ err: reason, request_id: requestId }, 'unhandled rejection (a bug)')
      if (requestId !== undefined) o.closeStream?.(requestId)
      keepServing()
    },
  }
}
