/** Where time comes from. Injected everywhere so expiry is tested by moving a clock, not by sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** A clock for tests: starts at `start` and moves only when told to. */
export interface ManualClock extends Clock {
  advance(ms: number): void
  set(ms: number): void
}

export function createManualClock(start = Date.UTC(2026, 0, 1)): ManualClock {
  let t = start
  return {
    now: () => t,
    advance: (ms) => {
      t += ms
    },
    set: (ms) => {
      t = ms
    },
  }
}
