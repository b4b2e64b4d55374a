/** A quota's period: a UTC calendar day or a UTC calendar month (docs/quotas.md "Periods"). */
export type QuotaPeriod = 'day' | 'month'

const DAY_MS = 24 * 3600 * 1000

/** The start of the period holding `at` (epoch ms) and the start of the next one, both epoch ms. */
export function periodBounds(period: QuotaPeriod, at: number): { start: number; end: number } {
  if (period === 'day') {
    const start = Math.floor(at / DAY_MS) * DAY_MS
    return { start, end: start + DAY_MS }
  }
  const d = new Date(at)
  const year = d.getUTCFullYear()
  const month = d.getUTCMonth()
  // Date.UTC rolls month 12 over into January of the next year.
  return { start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) }
}
