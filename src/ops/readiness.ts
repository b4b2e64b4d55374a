/** One thing `/readyz` checks: resolves when it is ready, throws (or rejects) when it is not. */
export interface ReadinessCheck {
  /** Named in the answer: `store`, `engine`, `redis`, `admitting`. */
  name: string
  check(): void | Promise<void>
}

/** What `/readyz` answers: every check's state, and the names of those that failed. */
export interface ReadinessReport {
  ready: boolean
  /** `ok`, or `unavailable` (never an error's text: it may name a host or hold a URL). */
  checks: Record<string, 'ok' | 'unavailable'>
  not_ready: string[]
}

export interface Readiness {
  report(): Promise<ReadinessReport>
}

/** How long one check may take before it counts as failed, ms. */
export const READINESS_TIMEOUT_MS = 2000

/** Runs `checks` at once, each bounded by `timeoutMs`; ready when all pass. */
export function createReadiness(
  checks: readonly ReadinessCheck[],
  timeoutMs = READINESS_TIMEOUT_MS,
): Readiness {
  const within = async (c: ReadinessCheck): Promise<boolean> => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    try {
      return await Promise.race([
        Promise.resolve()
          .then(() => c.check())
          .then(() => true),
        late,
      ])
    } catch {
      return false
    } finally {
      clearTimeout(timer)
    }
  }
  return {
    async report() {
      const results = await Promise.all(checks.map(async (c) => [c.name, await within(c)] as const))
      const notReady = results.filter(([, ok]) => !ok).map(([name]) => name)
      return {
        ready: notReady.length === 0,
        checks: Object.fromEntries(results.map(([name, ok]) => [name, ok ? 'ok' : 'unavailable'])),
        not_ready: notReady,
      }
    },
  }
}
