import { ApiError } from '../errors.js'

/** What a client refused while the server drains is told: come back shortly (to another node, behind a balancer). */
export const DRAIN_RETRY_AFTER_SECONDS = 5

/** The 503 of a request or upgrade that arrives while the server drains (docs/deploy.md, "Graceful shutdown"). */
export function drainingRefusal(): ApiError {
  return new ApiError('SERVICE_UNAVAILABLE', 'The server is shutting down. Please try again later', {
    headers: { 'retry-after': String(DRAIN_RETRY_AFTER_SECONDS), connection: 'close' },
  })
}

/**
 * Whether the server still admits work, and how much HTTP work is in flight. `earmark serve` starts
 * draining on SIGTERM: from then on new requests and upgrades get `drainingRefusal()` (the health, readiness
 * and metrics routes excepted) and `/readyz` answers 503, while what is in flight runs on.
 */
export interface Lifecycle {
  readonly draining: boolean
  /** HTTP requests being served now. */
  readonly inFlight: number
  /** Counts one HTTP request until the returned function is called (once; later calls do nothing). */
  track(): () => void
  /** Stops admitting; idempotent. */
  startDraining(): void
  /** Resolves once no HTTP request is in flight. */
  idle(): Promise<void>
}

export function createLifecycle(): Lifecycle {
  let draining = false
  let inFlight = 0
  let waiters: (() => void)[] = []
  const settle = () => {
    if (inFlight > 0) return
    const ready = waiters
    waiters = []
    for (const resolve of ready) resolve()
  }
  return {
    get draining() {
      return draining
    },
    get inFlight() {
      return inFlight
    },
    track() {
      inFlight++
      let done = false
      return () => {
        if (done) return
        done = true
        inFlight--
        settle()
      }
    },
    startDraining() {
      draining = true
    },
    idle() {
      if (inFlight === 0) return Promise.resolve()
      return new Promise((resolve) => waiters.push(resolve))
    },
  }
}
