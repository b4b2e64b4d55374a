import autocannon from 'autocannon'

/** One HTTP request shape to hammer. */
export interface Target {
  url: string
  method: 'GET' | 'POST'
  headers?: Record<string, string>
  body?: string
}

export interface LoadOptions {
  seconds: number
  connections: number
  pipelining: number
}

/** The figures of one measured run. */
export interface Sample {
  /** Mean of autocannon's per-second request counts. */
  rps: number
  p50Ms: number
  p99Ms: number
  total: number
  seconds: number
}

/** Nearest-rank percentile of `values` (sorted in place). */
function percentile(values: number[], p: number): number {
  values.sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * values.length))
  return values[rank - 1] ?? Number.NaN
}

/** Status code → count; autocannon returns it but its type definitions do not declare it. */
function statusCodeStats(result: autocannon.Result): Record<string, number> {
  const raw = (result as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {}
  return Object.fromEntries(Object.entries(raw).map(([code, { count }]) => [code, count]))
}

/**
 * Runs autocannon against `target` for `options.seconds`. Throws unless every response was a 200 and
 * there was no timeout and at most one connection error in 1000 requests: a benchmark of error responses
 * measures the wrong thing.
 */
export async function runLoad(label: string, target: Target, options: LoadOptions): Promise<Sample> {
  // autocannon's own latency histogram keeps whole milliseconds; these are the exact per-response times.
  const times: number[] = []
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url,
        method: target.method,
        headers: target.headers,
        body: target.body,
        connections: options.connections,
        pipelining: options.pipelining,
        duration: options.seconds,
      },
      (err: unknown, res) => (err ? reject(err) : resolve(res)),
    )
    instance.on('response', (_client, _status, _bytes, responseTime) => {
      times.push(responseTime)
    })
  })
  const codes = statusCodeStats(result)
  const not200 = Object.entries(codes).filter(([code]) => code !== '200')
  // A stray connection error is reported on stderr, not fatal: nginx closes a client connection after its
  // `keepalive_requests` (1000) and autocannon, which may already have sent the next request on it, counts
  // an error about every second time. More than one error in 1000 requests is fatal.
  const strayErrors = result.errors <= result.requests.total / 1000
  if (result.errors > 0 && strayErrors) {
    process.stderr.write(
      `bench: ${label}: ${result.errors} connection error(s) in ${result.requests.total} requests\n`,
    )
  }
  if (result.non2xx !== 0 || not200.length > 0 || !strayErrors || result.timeouts !== 0) {
    throw new Error(
      `${label}: expected only 200s, got status counts ${JSON.stringify(codes)}, ` +
        `non2xx=${result.non2xx}, errors=${result.errors}, timeouts=${result.timeouts}`,
    )
  }
  if (result.requests.total === 0) throw new Error(`${label}: no request completed`)
  return {
    rps: result.requests.average,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    total: result.requests.total,
    seconds: result.duration,
  }
}
