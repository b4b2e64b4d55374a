/** One metered request, as the usage report counts it (from the store, or a server's `/requests`). */
export interface MeteredRequest {
  keyId: string
  endUser: string | null
  audioSeconds: number
}

export interface UsageLine {
  requests: number
  audio_seconds: number
  audio_minutes: number
}

export interface UsageReport {
  project_id: string
  /** Inclusive, ISO 8601. */
  start: string
  /** Exclusive, ISO 8601. */
  end: string
  keys: (UsageLine & { api_key_id: string; comment: string | null })[]
  end_users: (UsageLine & { end_user: string | null })[]
  total: UsageLine
}

const round = (n: number, places: number) => Math.round(n * 10 ** places) / 10 ** places

function line(requests: number, seconds: number): UsageLine {
  return { requests, audio_seconds: round(seconds, 3), audio_minutes: round(seconds / 60, 3) }
}

/**
 * Per key and per end user sums of the requests in a period (`earmark usage`), most audio first. A request
 * without an end user counts under `end_user: null`; a key no longer listed keeps its id, without comment.
 */
export function usageReport(
  period: { projectId: string; start: number; end: number },
  requests: Iterable<MeteredRequest>,
  comments: ReadonlyMap<string, string>,
): UsageReport {
  const byKey = new Map<string, { requests: number; seconds: number }>()
  const byUser = new Map<string | null, { requests: number; seconds: number }>()
  let count = 0
  let seconds = 0
  const add = <K>(map: Map<K, { requests: number; seconds: number }>, key: K, s: number) => {
    const sum = map.get(key) ?? { requests: 0, seconds: 0 }
    sum.requests++
    sum.seconds += s
    map.set(key, sum)
  }
  for (const r of requests) {
    add(byKey, r.keyId, r.audioSeconds)
    add(byUser, r.endUser, r.audioSeconds)
    count++
    seconds += r.audioSeconds
  }
  const order = (a: { seconds: number; requests: number }, b: { seconds: number; requests: number }) =>
    b.seconds - a.seconds || b.requests - a.requests
  return {
    project_id: period.projectId,
    start: new Date(period.start).toISOString(),
    end: new Date(period.end).toISOString(),
    keys: [...byKey]
      .sort(([, a], [, b]) => order(a, b))
      .map(([id, s]) => ({
        api_key_id: id,
        comment: comments.get(id) ?? null,
        ...line(s.requests, s.seconds),
      })),
    end_users: [...byUser]
      .sort(([, a], [, b]) => order(a, b))
      .map(([user, s]) => ({ end_user: user, ...line(s.requests, s.seconds) })),
    total: line(count, seconds),
  }
}

/** Columns padded to their widest cell; numbers right-aligned. */
function table(header: string[], rows: string[][], numeric: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const format = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()
  return [format(header), ...rows.map(format)].join('\n')
}

/** The report as two tables, for a terminal. */
export function usageTables(r: UsageReport): string {
  const numbers = (l: UsageLine) => [String(l.requests), l.audio_minutes.toFixed(3)]
  const total = ['total', ...numbers(r.total)]
  const keys = table(
    ['API key', 'comment', 'requests', 'audio min'],
    [
      ...r.keys.map((k) => [k.api_key_id, k.comment ?? '', ...numbers(k)]),
      [total[0] ?? '', '', ...numbers(r.total)],
    ],
    [false, false, true, true],
  )
  const users = table(
    ['end user', 'requests', 'audio min'],
    [...r.end_users.map((u) => [u.end_user ?? '(none)', ...numbers(u)]), total],
    [false, true, true],
  )
  return `Usage of project ${r.project_id} from ${r.start} to ${r.end} (UTC, end excluded)\n\n${keys}\n\n${users}\n`
}
