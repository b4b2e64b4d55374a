import { setTimeout as sleep } from 'node:timers/promises'
import type { Principal } from '../auth/index.js'
import { ApiError, invalidField } from '../errors.js'
import type { UsageFilter, UsageRecord } from '../store/index.js'
import { isoDate, requireProject, requireScope, type Services } from './context.js'

/** Key tags of this form name the app's end user a key was minted for (see docs/usage.md). */
export const END_USER_TAG = 'end_user:'

/** The end user a credential acts for: a grant's claim, else its key's `end_user:` tag, else null. */
export function endUserOf(principal: Principal): string | null {
  if (principal.grant?.endUser) return principal.grant.endUser
  const tag = principal.key?.tags.find((t) => t.startsWith(END_USER_TAG))
  return tag ? tag.slice(END_USER_TAG.length) : null
}

export interface UsageStart {
  requestId: string
  endpoint: UsageRecord['endpoint']
  method: UsageRecord['method']
  path: string
  model: string | null
  tags: string[]
}

/** Records the start of a metered request for the caller's project, key and end user. */
export async function startUsage(
  services: Services,
  principal: Principal,
  start: UsageStart,
): Promise<UsageRecord> {
  const record: UsageRecord = {
    id: start.requestId,
    projectId: principal.projectId,
    keyId: principal.keyId,
    endUser: endUserOf(principal),
    tags: start.tags,
    endpoint: start.endpoint,
    method: start.method,
    path: start.path,
    model: start.model,
    startedAt: services.clock.now(),
    endedAt: null,
    audioSeconds: 0,
    characters: 0,
    status: null,
    detail: null,
  }
  await services.store.insertUsage(record)
  return record
}

/** Records how it ended. A request answers only once this is stored, so a failure becomes its answer. */
export async function finishUsage(
  services: Services,
  record: UsageRecord,
  end: UsageEnd,
  retry: { everyMs: number; attempts: number } = { everyMs: 0, attempts: 0 },
): Promise<void> {
  record.endedAt = services.clock.now()
  record.audioSeconds = end.audioSeconds ?? 0
  record.characters = end.characters ?? 0
  record.status = end.status
  record.detail = end.detail ?? null
  for (let attempt = 0; ; attempt++) {
    try {
      await services.store.finishUsage(record.projectId, record.id, record)
      return
    } catch (err) {
      const away = err instanceof ApiError && err.code === 'SERVICE_UNAVAILABLE'
      if (!away || attempt >= retry.attempts) throw err
      await sleep(retry.everyMs)
    }
  }
}

/** How it ended: what was metered, and the status (HTTP, or a socket's close code). */
export interface UsageEnd {
  audioSeconds?: number
  characters?: number
  status: number
  detail?: string | null
}

/**
 * `finishUsage` for a stream that has ended: it was served already and nobody waits for the answer, so while
 * the store is away for now (503: PostgreSQL restarting) the write is tried again every second for 30 s, and
 * the audio a stream was served is still metered after a database restart (docs/store.md). 30 s covers a
 * restart and stays well inside a shutdown's grace, which waits for it. Past that, or on another error, it
 * rejects.
 */
export function finishStreamUsage(
  services: Services,
  record: UsageRecord,
  end: UsageEnd,
  retry = { everyMs: 1000, attempts: 30 },
): Promise<void> {
  return finishUsage(services, record, end, retry)
}

/** Deepgram dates: `YYYY-MM-DD[THH:MM:SS[+HH:MM]]` (UTC when no offset). */
export function parseDate(field: string, value: unknown): number | undefined {
  if (value === undefined || value === '') return undefined
  if (
    typeof value !== 'string' ||
    !/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/.test(value)
  ) {
    throw invalidField(field, 'must be a date like 2026-01-31 or 2026-01-31T12:00:00+00:00')
  }
  const withZone =
    value.length === 10 ? `${value}T00:00:00Z` : /(Z|[+-]\d{2}:\d{2})$/.test(value) ? value : `${value}Z`
  const ms = Date.parse(withZone)
  if (!Number.isFinite(ms)) throw invalidField(field, 'is not a valid date')
  return ms
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined || value === '') return undefined
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw invalidField(field, `must be one of ${allowed.join(', ')}`)
  }
  return value as T
}

export function intIn(field: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined || value === '') return fallback
  const n = typeof value === 'string' ? Number(value) : Number.NaN
  if (!Number.isInteger(n) || n < min || n > max)
    throw invalidField(field, `must be an integer from ${min} to ${max}`)
  return n
}

export function optionalText(field: string, value: unknown): string | undefined {
  if (value === undefined || value === '') return undefined
  if (typeof value !== 'string') throw invalidField(field, 'must be given once')
  return value
}

/** The filters `/requests` and `/usage` share (docs/deepgram-compat.md §4). */
function parseFilter(query: Record<string, unknown>): UsageFilter {
  const status = oneOf('status', query.status, ['succeeded', 'failed'] as const)
  return {
    start: parseDate('start', query.start),
    end: parseDate('end', query.end),
    keyId: optionalText('accessor', query.accessor),
    endUser: optionalText('end_user', query.end_user),
    endpoint: oneOf('endpoint', query.endpoint, ['listen', 'speak'] as const),
    method: oneOf('method', query.method, ['sync', 'streaming'] as const),
    ...(status ? { succeeded: status === 'succeeded' } : {}),
  }
}

function requestView(r: UsageRecord) {
  return {
    request_id: r.id,
    project_uuid: r.projectId,
    created: isoDate(r.startedAt),
    path: r.path,
    api_key_id: r.keyId,
    accessor: r.keyId,
    end_user: r.endUser,
    response:
      r.endedAt === null
        ? {}
        : {
            details: {
              duration: r.audioSeconds,
              total_audio: r.audioSeconds,
              channels: 1,
              streams: r.method === 'streaming' ? 1 : 0,
              method: r.method,
              models: r.model ? [r.model] : [],
              tags: r.tags,
              ...(r.endpoint === 'speak' ? { characters: r.characters } : {}),
            },
            code: r.status,
            completed: isoDate(r.endedAt),
            ...(r.detail ? { message: r.detail } : {}),
          },
    code: r.status,
    deployment: 'self-hosted',
    callback: null,
  }
}

/** `GET /v1/projects/:id/requests` */
export async function listRequests(
  services: Services,
  principal: Principal,
  projectId: string,
  query: Record<string, unknown>,
) {
  requireScope(principal, 'usage:read')
  await requireProject(services, principal, projectId)
  const filter = parseFilter(query)
  const limit = intIn('limit', query.limit, 1, 1000, 10)
  const page = intIn('page', query.page, 0, 1_000_000, 0)
  const rows = await services.store.listUsage(projectId, { ...filter, limit, offset: page * limit })
  return { page, limit, requests: rows.map(requestView) }
}

/** `GET /v1/projects/:id/requests/:request_id`: both shapes the SDKs type (v5 `{request}`, v3 unwrapped). */
export async function getRequest(
  services: Services,
  principal: Principal,
  projectId: string,
  requestId: string,
) {
  requireScope(principal, 'usage:read')
  await requireProject(services, principal, projectId)
  const record = await services.store.getUsage(projectId, requestId)
  if (!record) throw new ApiError('REQUEST_NOT_FOUND')
  const view = requestView(record)
  return { ...view, request: view }
}

const DAY = 24 * 3600 * 1000

/**
 * The period a usage report covers: `start` (inclusive) and `end` (exclusive) as given, epoch ms; without an
 * end, up to the end of today (UTC); without a start, the 30 days before the end. `earmark usage`.
 */
export function usagePeriod(
  given: { start?: number | undefined; end?: number | undefined },
  now: number,
): { start: number; end: number } {
  const end = given.end ?? Math.floor(now / DAY) * DAY + DAY
  return { start: given.start ?? end - 30 * DAY, end }
}

/**
 * The resolutions `/usage` offers (an Earmark extension: Deepgram's is per day only), each with its default
 * range (ending at the current bucket's end) and the longest range it may be asked for.
 */
const RESOLUTIONS = {
  day: { ms: DAY, defaultRange: 30 * DAY, maxRange: 3660 * DAY },
  hour: { ms: 3600 * 1000, defaultRange: 2 * DAY, maxRange: 31 * DAY },
  minute: { ms: 60 * 1000, defaultRange: 3600 * 1000, maxRange: DAY },
} as const
type Resolution = keyof typeof RESOLUTIONS

/**
 * `GET /v1/projects/:id/usage`: per-bucket totals of audio hours and requests, summed by the store. Earmark
 * extensions (docs/usage.md): `resolution=minute|hour|day` (default day) and
 * `group_by=key|end_user`, which splits each bucket per key or end user and counts its failed requests.
 */
export async function usageSummary(
  services: Services,
  principal: Principal,
  projectId: string,
  query: Record<string, unknown>,
) {
  requireScope(principal, 'usage:read')
  await requireProject(services, principal, projectId)
  const filter = parseFilter(query)
  const units: Resolution = oneOf('resolution', query.resolution, ['minute', 'hour', 'day'] as const) ?? 'day'
  const groupBy = oneOf('group_by', query.group_by, ['key', 'end_user'] as const)
  const { ms, defaultRange, maxRange } = RESOLUTIONS[units]
  const now = services.clock.now()
  const end = filter.end ?? Math.floor(now / ms) * ms + ms
  const start = filter.start ?? end - defaultRange
  if (end - start > maxRange) {
    throw invalidField(
      'start',
      `is too far before \`end\` for resolution ${units} (${maxRange / DAY} days at most)`,
    )
  }
  const rows = await services.store.summarizeUsage(
    projectId,
    { ...filter, start, end },
    { bucket: units, ...(groupBy ? { groupBy } : {}) },
  )
  const hours = (s: number) => Math.round((s / 3600) * 1e6) / 1e6
  // Days keep Deepgram's date-only form; finer buckets need the time.
  const when = (t: number) => (units === 'day' ? isoDate(t).slice(0, 10) : isoDate(t))
  const results = rows.map((d) => ({
    start: when(d.start),
    end: when(d.start + ms),
    hours: hours(d.audioSeconds),
    total_hours: hours(d.audioSeconds),
    requests: d.requests,
    audio_seconds: Math.round(d.audioSeconds * 1000) / 1000,
    tts: { characters: d.speakCharacters, requests: d.speakRequests },
    ...(groupBy === 'key' ? { accessor: d.group ?? null } : {}),
    ...(groupBy === 'end_user' ? { end_user: d.group ?? null } : {}),
    ...(groupBy ? { failed: d.failed ?? 0 } : {}),
  }))
  return {
    start: when(start),
    end: when(end),
    resolution: { units, amount: 1 },
    ...(groupBy ? { group_by: groupBy } : {}),
    results,
  }
}
