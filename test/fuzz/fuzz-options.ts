import type { TestContext } from 'node:test'
import fc from 'fast-check'

/**
 * Run sizes: each property has a default that fits CI; `FUZZ_RUNS=5000` runs that many cases of every
 * property. `FUZZ_SEED=<n>` replays a run; add `FUZZ_PATH=<path>` from a failure report (and a
 * `--test-name-pattern` that picks that property) to replay just the shrunk counterexample.
 * `FUZZ_TIME_LIMIT_MS` bounds one property, shrinking included (default 120 s, unbounded when FUZZ_RUNS is
 * set). `FUZZ_VERBOSE=1` prints every case and what was wrong with it.
 */
export function fuzzOptions(defaultRuns: number) {
  const numRuns = process.env.FUZZ_RUNS ? Math.max(1, Number(process.env.FUZZ_RUNS)) : defaultRuns
  const seed = process.env.FUZZ_SEED
    ? Number(process.env.FUZZ_SEED)
    : (Date.now() ^ (Math.random() * 0x7fffffff)) | 0
  const limit = process.env.FUZZ_TIME_LIMIT_MS
    ? Number(process.env.FUZZ_TIME_LIMIT_MS)
    : process.env.FUZZ_RUNS
      ? undefined
      : 120_000
  return { numRuns, seed, limit, path: process.env.FUZZ_PATH }
}

/** Counts what a property saw, for the diagnostic line every property prints. */
export interface FuzzTally {
  cases: number
  add(what: string): void
  summary(): string
}

export function createTally(): FuzzTally {
  const counts = new Map<string, number>()
  return {
    cases: 0,
    add(what) {
      counts.set(what, (counts.get(what) ?? 0) + 1)
    },
    summary() {
      return [...counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k}×${v}`)
        .join(' ')
    },
  }
}

/**
 * Runs a property with the run size and seed from the environment and prints how many cases ran, the seed
 * and the tally; on failure fast-check's report (the shrunk counterexample, seed and path) is the error.
 */
export async function runProperty<T>(
  t: TestContext,
  name: string,
  defaultRuns: number,
  property: fc.IAsyncPropertyWithHooks<T>,
  tally: FuzzTally,
): Promise<void> {
  const { numRuns, seed, limit, path } = fuzzOptions(defaultRuns)
  const started = Date.now()
  const report = (outcome: string) => {
    const line = `${name}: ${outcome}; ${tally.cases} cases run (${numRuns} asked) in ${Math.round((Date.now() - started) / 1000)} s, seed ${seed}; seen: ${tally.summary()}`
    t.diagnostic(line)
    console.log(`# fuzz ${line}`)
  }
  try {
    await fc.assert(property, {
      numRuns,
      seed,
      includeErrorInReport: true,
      ...(path ? { path } : {}),
      // A case that never finishes is a failure too (a hung server), not a hung suite.
      timeout: 90_000,
      ...(limit !== undefined ? { interruptAfterTimeLimit: limit, markInterruptAsFailure: false } : {}),
    })
  } catch (err) {
    report(`FAILED (replay with FUZZ_SEED=${seed} and FUZZ_PATH set to the path below)`)
    throw err
  }
  report('passed')
}
