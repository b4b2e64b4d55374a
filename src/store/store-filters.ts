import type { AudioTotalFilter, AuditFilter, UsageBucketSize, UsageFilter, UsageGroupBy } from './store.js'

/** A value bound to a placeholder. */
export type SqlValue = string | number | null

/**
 * SQL with `?` placeholders and their values, in order. SQLite binds it as it is; PostgreSQL numbers the
 * placeholders first (`numberPlaceholders`), so the text must hold no `?` of its own (none in a literal).
 */
export interface SqlQuery {
  sql: string
  values: SqlValue[]
}

/** `?` → `$1`, `$2`, …: PostgreSQL's placeholders, in the order they stand. */
export function numberPlaceholders(sql: string): string {
  let n = 0
  return sql.replace(/\?/g, () => `$${++n}`)
}

/** Builds `project_id = ? AND …` with its values, one condition at a time. */
function conditions(projectId: string) {
  const parts = ['project_id = ?']
  const values: SqlValue[] = [projectId]
  return {
    add(sql: string, ...more: SqlValue[]) {
      parts.push(sql)
      values.push(...more)
    },
    done: (): SqlQuery => ({ sql: parts.join(' AND '), values }),
  }
}

// A record still open (status null) is neither a success nor a failure: NULL makes both conditions false.
const SUCCEEDED = '((status >= 200 AND status < 300) OR status = 1000)'

/** The WHERE clause of a usage filter (its limit and offset are the caller's). */
export function usageWhere(projectId: string, f: UsageFilter): SqlQuery {
  const where = conditions(projectId)
  if (f.start !== undefined) where.add('started_at >= ?', f.start)
  if (f.end !== undefined) where.add('started_at < ?', f.end)
  if (f.keyId !== undefined) where.add('key_id = ?', f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  if (f.endpoint !== undefined) where.add('endpoint = ?', f.endpoint)
  if (f.method !== undefined) where.add('method = ?', f.method)
  if (f.succeeded === true) where.add(SUCCEEDED)
  if (f.succeeded === false) where.add(`NOT ${SUCCEEDED}`)
  return where.done()
}

/** The WHERE clause of an audio total (quotas). */
export function audioTotalWhere(projectId: string, f: AudioTotalFilter): SqlQuery {
  const where = conditions(projectId)
  if (f.keyId !== undefined) where.add('key_id = ?', f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  where.add('started_at >= ?', f.start)
  return where.done()
}

/** The WHERE clause of an audit filter (its limit and offset are the caller's). */
export function auditWhere(projectId: string, f: AuditFilter): SqlQuery {
  const where = conditions(projectId)
  if (f.start !== undefined) where.add('at >= ?', f.start)
  if (f.end !== undefined) where.add('at < ?', f.end)
  if (f.type !== undefined) {
    // A prefix ends in a dot; LIKE's wildcards in it are escaped.
    if (f.type.endsWith('.')) where.add("type LIKE ? ESCAPE '\\'", `${f.type.replace(/[\\%_]/g, '\\$&')}%`)
    else where.add('type = ?', f.type)
  }
  if (f.keyId !== undefined) where.add('(key_id = ? OR actor_key_id = ?)', f.keyId, f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  return where.done()
}

/** The length of each bucket size a usage summary is cut into, ms. */
const BUCKET_MS: Record<UsageBucketSize, number> = {
  minute: 60 * 1000,
  hour: 3600 * 1000,
  day: 24 * 3600 * 1000,
}

/** The column each grouping splits by. */
const GROUP_COLUMN: Record<UsageGroupBy, string> = { key: 'key_id', end_user: 'end_user' }

/**
 * Per-bucket sums of the usage records a filter matches, oldest bucket first, one row per bucket that has a
 * record; columns named as `UsageBucket`'s fields. `plainSum` names the backend's aggregate that adds doubles
 * one at a time in the order given (PostgreSQL's `sum`; SQLite's `sum` compensates rounding errors, so its
 * store registers a plain one): the seconds are added newest first, the order `listUsage` lists them in and
 * `/usage` once added them up in, so its rounded figures stay the same to the last digit (docs/store.md).
 */
export function usageSummaryQuery(
  projectId: string,
  f: UsageFilter,
  bucket: UsageBucketSize,
  plainSum: string,
  groupBy?: UsageGroupBy,
): SqlQuery {
  const where = usageWhere(projectId, f)
  const ms = BUCKET_MS[bucket]
  // The start of a record's bucket, floored (`%` keeps the dividend's sign on both backends, so times before
  // 1970 land in the right bucket too). UTC: epoch ms have no zone.
  const start = `started_at - ((started_at % ${ms}) + ${ms}) % ${ms}`
  // Grouped: the group's column and the failures (ended, not a success) as two more columns.
  const group = groupBy
    ? `, ${GROUP_COLUMN[groupBy]} AS grp,
        sum(CASE WHEN status IS NOT NULL AND NOT ${SUCCEEDED} THEN 1 ELSE 0 END) AS failed`
    : ''
  const order = groupBy ? 'GROUP BY 1, 6 ORDER BY 1, 6 NULLS FIRST' : 'GROUP BY 1 ORDER BY 1'
  return {
    sql: `SELECT ${start} AS start, ${plainSum}(audio_seconds ORDER BY started_at DESC, id) AS audio_seconds,
        count(*) AS requests, sum(CASE WHEN endpoint = 'speak' THEN characters ELSE 0 END) AS speak_characters,
        sum(CASE WHEN endpoint = 'speak' THEN 1 ELSE 0 END) AS speak_requests${group}
      FROM usage_requests WHERE ${where.sql} ${order}`,
    values: where.values,
  }
}

/** `UPDATE projects SET …` for the fields a patch gives; undefined when it gives none. */
export function projectUpdate(
  id: string,
  patch: { name?: string; company?: string | null },
): SqlQuery | undefined {
  const sets: string[] = []
  const values: SqlValue[] = []
  if (patch.name !== undefined) {
    sets.push('name = ?')
    values.push(patch.name)
  }
  if (patch.company !== undefined) {
    sets.push('company = ?')
    values.push(patch.company)
  }
  if (sets.length === 0) return undefined
  return { sql: `UPDATE projects SET ${sets.join(', ')} WHERE id = ?`, values: [...values, id] }
}
