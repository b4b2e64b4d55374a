import type { KeyLimits, ProjectSettings, Role } from '../auth/index.js'
import { invalidField } from '../errors.js'

/** A project's limits as stored (`ProjectSettings.limits`). */
export type ProjectLimits = NonNullable<ProjectSettings['limits']>

/**
 * The server-wide defaults (docs/limits.md), from `EARMARK_LIMIT_*`. A 0 rate means no limit; only the server
 * may say so, never an API body.
 */
export interface ServerLimits {
  /** Authenticated requests per minute per API key, its grant tokens included. */
  requestsPerMinute: number
  /** Authenticated requests per minute per project, every key together. */
  projectRequestsPerMinute: number
  /** `POST /v1/auth/grant` per minute per API key. */
  grantsPerMinute: number
  /** Failed authentications per minute from one client address before it is backed off. */
  authFailuresPerMinute: number
  /** Failed authentications per hour from one client address before it is blocked for `authBlockMs`. */
  authFailuresPerHour: number
  /** How long an address past `authFailuresPerHour` is refused before its credential is checked, ms. */
  authBlockMs: number
  /** The first back-off, ms; each further one in the hour doubles it (at most 15 minutes, or `authBlockMs`). */
  authBackoffMs: number
  /** Addresses and CIDR ranges never counted or blocked for failed authentications. */
  authAllowList: string[]
}

/** Defaults meant for a server on the open internet (docs/limits.md, "Defaults"). */
export const DEFAULT_SERVER_LIMITS: ServerLimits = {
  requestsPerMinute: 600,
  projectRequestsPerMinute: 6000,
  grantsPerMinute: 60,
  authFailuresPerMinute: 10,
  authFailuresPerHour: 100,
  authBlockMs: 3_600_000,
  authBackoffMs: 15_000,
  authAllowList: [],
}

/** Server limits that never refuse anything (test servers and the limits-off benchmark). */
export const NO_SERVER_LIMITS: ServerLimits = {
  requestsPerMinute: 0,
  projectRequestsPerMinute: 0,
  grantsPerMinute: 0,
  authFailuresPerMinute: 0,
  authFailuresPerHour: 0,
  authBlockMs: 3_600_000,
  authBackoffMs: 15_000,
  authAllowList: [],
}

/** The highest rate an API body may set, per minute. */
export const MAX_RATE_PER_MINUTE = 1_000_000
/** The highest concurrency cap an API body may set. */
export const MAX_CONCURRENT_STREAMS = 4096

interface Field<T> {
  wire: string
  key: keyof T
  max: number
}

const KEY_FIELDS: Field<KeyLimits>[] = [
  { wire: 'requests_per_minute', key: 'requestsPerMinute', max: MAX_RATE_PER_MINUTE },
  { wire: 'grants_per_minute', key: 'grantsPerMinute', max: MAX_RATE_PER_MINUTE },
  { wire: 'concurrent_streams', key: 'concurrentStreams', max: MAX_CONCURRENT_STREAMS },
]

const PROJECT_FIELDS: Field<ProjectLimits>[] = [
  { wire: 'requests_per_minute', key: 'requestsPerMinute', max: MAX_RATE_PER_MINUTE },
  { wire: 'project_requests_per_minute', key: 'projectRequestsPerMinute', max: MAX_RATE_PER_MINUTE },
  { wire: 'grants_per_minute', key: 'grantsPerMinute', max: MAX_RATE_PER_MINUTE },
  { wire: 'concurrent_streams_per_key', key: 'concurrentStreamsPerKey', max: MAX_CONCURRENT_STREAMS },
  {
    wire: 'concurrent_streams_per_end_user',
    key: 'concurrentStreamsPerEndUser',
    max: MAX_CONCURRENT_STREAMS,
  },
  { wire: 'concurrent_streams_per_project', key: 'concurrentStreamsPerProject', max: MAX_CONCURRENT_STREAMS },
]

function objectOf(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidField(field, 'must be an object')
  }
  return value as Record<string, unknown>
}

function checkKnown<T>(body: Record<string, unknown>, fields: Field<T>[], section: string): void {
  const unknown = Object.keys(body).find((k) => !fields.some((f) => f.wire === k))
  if (unknown !== undefined) {
    throw invalidField(
      `${section}.${unknown}`,
      `is not a limit here (known: ${fields.map((f) => f.wire).join(', ')})`,
    )
  }
}

/** A limit from an API body: a positive integer. 0 ("no limit") is the server's alone to set. */
function positive(value: unknown, field: string, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw invalidField(field, `must be an integer from 1 to ${max} (omit it to use the default)`)
  }
  return value
}

/**
 * The `limits` of a create-key body (`requests_per_minute`, `grants_per_minute`, `concurrent_streams`), or
 * undefined when absent (the project's and then the server's limits apply). Unknown fields, 0 and
 * negatives are a 400 naming the field.
 */
export function parseKeyLimits(value: unknown): KeyLimits | undefined {
  if (value === undefined || value === null) return undefined
  const body = objectOf(value, 'limits')
  checkKnown(body, KEY_FIELDS, 'limits')
  const out: KeyLimits = {}
  for (const f of KEY_FIELDS) {
    const v = body[f.wire]
    if (v !== undefined && v !== null) out[f.key] = positive(v, `limits.${f.wire}`, f.max)
  }
  return Object.keys(out).length > 0 ? out : undefined
}

/**
 * Applies the `limits` section of `PATCH /v1/projects/:id/settings` to `current`: a number sets a limit, a
 * `null` field clears it (back to the server default), `"limits": null` clears them all; absent fields are
 * kept. Returns undefined when no limit is left.
 */
export function parseLimitSettings(
  value: unknown,
  current: ProjectLimits | undefined = {},
): ProjectLimits | undefined {
  if (value === null) return undefined
  const body = objectOf(value, 'limits')
  checkKnown(body, PROJECT_FIELDS, 'limits')
  const out: ProjectLimits = { ...current }
  for (const f of PROJECT_FIELDS) {
    if (!(f.wire in body)) continue
    const v = body[f.wire]
    if (v === null) delete out[f.key]
    else out[f.key] = positive(v, `limits.${f.wire}`, f.max)
  }
  return Object.keys(out).length > 0 ? out : undefined
}

function viewOf<T>(limits: T | undefined, fields: Field<T>[]): Record<string, number> {
  const view: Record<string, number> = {}
  if (!limits) return view
  for (const f of fields) {
    const v = limits[f.key]
    if (typeof v === 'number') view[f.wire] = v
  }
  return view
}

/** The snake_case view of a key's limits (only those set). */
export function keyLimitsView(limits: KeyLimits | undefined): Record<string, number> {
  return viewOf(limits, KEY_FIELDS)
}

/** The snake_case view of a project's limits (only those set). */
export function projectLimitsView(limits: ProjectLimits | undefined): Record<string, number> {
  return viewOf(limits, PROJECT_FIELDS)
}

/** Which limit refused: the names used in `Retry-After` answers' audit events (`limit.refused`). */
export type LimitName =
  | 'requests_per_minute'
  | 'project_requests_per_minute'
  | 'grants_per_minute'
  | 'auth_failures_per_minute'
  | 'auth_failures_per_hour'
  | 'concurrent_streams_per_credential'
  | 'concurrent_streams_per_key'
  | 'concurrent_streams_per_end_user'
  | 'concurrent_streams_per_project'

/**
 * The environment that turns every rate and failed-authentication limit off (0): test servers that drive
 * heavy traffic from one key and one address, and the limits-off side of the benchmark.
 */
export const NO_LIMITS_ENV: Readonly<Record<string, string>> = {
  EARMARK_LIMIT_REQUESTS_PER_MINUTE: '0',
  EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: '0',
  EARMARK_LIMIT_GRANTS_PER_MINUTE: '0',
  EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: '0',
  EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR: '0',
}

/**
 * The limit a key's own value leaves in force over `fallback` (the project's, else the server's; 0: none). A
 * key may always tighten it; only an owner's key may loosen it, since the project's limits are an owner's to
 * set (`project:write:settings`) while any member with `keys:write` can create a key (docs/limits.md,
 * "Precedence").
 */
export function keyLimit(own: number | undefined, fallback: number, memberRole: Role): number {
  if (own === undefined) return fallback
  if (memberRole === 'owner' || fallback <= 0) return own
  return Math.min(own, fallback)
}
