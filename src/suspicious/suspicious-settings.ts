import type { ProjectSettings } from '../auth/index.js'
import { invalidField } from '../errors.js'

/**
 * The suspicious-activity policy (docs/suspicious-activity.md): the windows, the thresholds (a count
 * above one raises its finding; 0 turns the rule off) and whether a key that trips a key-level rule is
 * disabled. Server defaults come from `EARMARK_SUSPICIOUS_*`; a project overrides any field through the
 * `suspicious_activity` section of its settings.
 */
export interface SuspiciousPolicy {
  /** Disable a key automatically when a key-level rule fires. Off by default: a false positive takes an app down. */
  autoDisable: boolean
  /** The sliding window of the address, user-agent and failure rules, seconds. */
  windowSeconds: number
  /** Distinct client addresses one credential (a key presented itself, or one grant token) may show. */
  maxIpsPerCredential: number
  /** Distinct client addresses one end user (the `end_user` of grant tokens) may show. */
  maxIpsPerEndUser: number
  maxUserAgentsPerCredential: number
  maxUserAgentsPerEndUser: number
  /** The sliding window of the grant-burst rule, seconds. */
  grantWindowSeconds: number
  /** Grant requests one key may make within the grant window. */
  maxGrantsPerKey: number
  /** Refused authentications tied to one key (its own secret or its tokens) within the window. */
  maxAuthFailuresPerKey: number
  /** Raise `suspicious.new_origin` for a live stream from an origin the key's streams never came from. */
  newOrigin: boolean
}

/** Defaults that stay quiet on normal traffic (the reasoning is in docs/suspicious-activity.md). */
export const DEFAULT_SUSPICIOUS_POLICY: Readonly<SuspiciousPolicy> = Object.freeze({
  autoDisable: false,
  windowSeconds: 600,
  maxIpsPerCredential: 8,
  maxIpsPerEndUser: 8,
  maxUserAgentsPerCredential: 5,
  maxUserAgentsPerEndUser: 5,
  grantWindowSeconds: 60,
  maxGrantsPerKey: 600,
  maxAuthFailuresPerKey: 20,
  newOrigin: true,
})

interface Field {
  name: keyof SuspiciousPolicy
  /** The snake_case name on the wire and, upper-cased after `EARMARK_SUSPICIOUS_`, in the environment. */
  wire: string
  kind: 'boolean' | 'count' | 'seconds'
}

/** Every field, once: the settings parser, the environment reader and the view all walk this table. */
const FIELDS: readonly Field[] = [
  { name: 'autoDisable', wire: 'auto_disable', kind: 'boolean' },
  { name: 'windowSeconds', wire: 'window_seconds', kind: 'seconds' },
  { name: 'maxIpsPerCredential', wire: 'max_ips_per_credential', kind: 'count' },
  { name: 'maxIpsPerEndUser', wire: 'max_ips_per_end_user', kind: 'count' },
  { name: 'maxUserAgentsPerCredential', wire: 'max_user_agents_per_credential', kind: 'count' },
  { name: 'maxUserAgentsPerEndUser', wire: 'max_user_agents_per_end_user', kind: 'count' },
  { name: 'grantWindowSeconds', wire: 'grant_window_seconds', kind: 'seconds' },
  { name: 'maxGrantsPerKey', wire: 'max_grants_per_key', kind: 'count' },
  { name: 'maxAuthFailuresPerKey', wire: 'max_auth_failures_per_key', kind: 'count' },
  { name: 'newOrigin', wire: 'new_origin', kind: 'boolean' },
]

const MIN_SECONDS = 10
const MAX_SECONDS = 86_400
const MAX_COUNT = 1_000_000

/** Checks one value; returns a problem sentence, or undefined when it is good. */
function problemOf(field: Field, value: unknown): string | undefined {
  if (field.kind === 'boolean') return typeof value === 'boolean' ? undefined : 'must be true or false'
  const [min, max] = field.kind === 'seconds' ? [MIN_SECONDS, MAX_SECONDS] : [0, MAX_COUNT]
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max
    ? undefined
    : `must be an integer from ${min} to ${max}${field.kind === 'count' ? ' (0 turns the rule off)' : ''}`
}

/**
 * Applies the `suspicious_activity` section of `PATCH /v1/projects/:id/settings` to `current`: snake_case
 * fields, each optional; a value sets the field, `null` clears it (back to the server's), and
 * `"suspicious_activity": null` clears them all; absent fields are kept. An unknown field is refused, so a
 * misspelt threshold is never silently ignored. Returns the parsed (camelCase) fields as project settings
 * store them, or undefined when none is left.
 */
export function parseSuspiciousSettings(
  value: unknown,
  current: Partial<SuspiciousPolicy> | Record<string, number | boolean> = {},
): Partial<SuspiciousPolicy> | undefined {
  if (value === null) return undefined
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw invalidField('suspicious_activity', 'must be an object or null')
  }
  const body = value as Record<string, unknown>
  const known = new Map(FIELDS.map((f) => [f.wire, f]))
  const parsed: Record<string, number | boolean> = { ...(current as Record<string, number | boolean>) }
  for (const [wire, v] of Object.entries(body)) {
    const field = known.get(wire)
    if (!field) {
      throw invalidField(
        `suspicious_activity.${wire}`,
        `is not a setting (known: ${FIELDS.map((f) => f.wire).join(', ')})`,
      )
    }
    if (v === null) {
      delete parsed[field.name]
      continue
    }
    const problem = problemOf(field, v)
    if (problem) throw invalidField(`suspicious_activity.${wire}`, problem)
    parsed[field.name] = v as number | boolean
  }
  return Object.keys(parsed).length > 0 ? (parsed as Partial<SuspiciousPolicy>) : undefined
}

/**
 * The `suspicious_activity` section of the project settings routes (src/projects/project-settings.ts): how
 * a PATCH changes the stored settings, and how GET shows them.
 */
export const suspiciousSettingsSection = {
  apply(settings: ProjectSettings, value: unknown): ProjectSettings {
    const { suspiciousActivity: old, ...rest } = settings
    const parsed = parseSuspiciousSettings(value, old)
    return parsed ? { ...rest, suspiciousActivity: parsed as Record<string, number | boolean> } : rest
  },
  view: (settings: ProjectSettings): Record<string, unknown> =>
    suspiciousSettingsView(settings.suspiciousActivity ?? {}),
}

/** The wire (snake_case) form of stored or effective settings, for the settings routes. */
export function suspiciousSettingsView(
  settings: Partial<SuspiciousPolicy> | Record<string, number | boolean>,
): Record<string, number | boolean> {
  const view: Record<string, number | boolean> = {}
  const given = settings as Record<string, number | boolean | undefined>
  for (const f of FIELDS) {
    const v = given[f.name]
    if (v !== undefined) view[f.wire] = v
  }
  return view
}

/**
 * The server's policy from `EARMARK_SUSPICIOUS_<FIELD>` variables (`EARMARK_SUSPICIOUS_AUTO_DISABLE=true`,
 * `EARMARK_SUSPICIOUS_MAX_IPS_PER_CREDENTIAL=8`, ...) over the defaults. Throws naming every bad variable.
 */
export function suspiciousPolicyFromEnv(env: NodeJS.ProcessEnv): SuspiciousPolicy {
  const policy: Record<string, number | boolean> = { ...DEFAULT_SUSPICIOUS_POLICY }
  const problems: string[] = []
  for (const f of FIELDS) {
    const name = `EARMARK_SUSPICIOUS_${f.wire.toUpperCase()}`
    const raw = env[name]?.trim()
    if (raw === undefined || raw === '') continue
    const value =
      f.kind === 'boolean'
        ? raw === 'true' || raw === '1'
          ? true
          : raw === 'false' || raw === '0'
            ? false
            : raw
        : /^\d+$/.test(raw)
          ? Number(raw)
          : raw
    const problem = problemOf(f, value)
    if (problem) problems.push(`${name}: ${problem}`)
    else policy[f.name] = value as number | boolean
  }
  if (problems.length > 0) throw new Error(`Invalid configuration: ${problems.join('; ')}`)
  return policy as unknown as SuspiciousPolicy
}

/** The policy in force for a project: its own settings over the server's. */
export function effectivePolicy(
  server: SuspiciousPolicy,
  project: Record<string, number | boolean> | undefined,
): SuspiciousPolicy {
  if (!project) return server
  const merged: Record<string, number | boolean> = { ...server }
  for (const f of FIELDS) {
    const v = project[f.name]
    // Only values of the right kind: settings written by an older or newer version are not trusted blindly.
    if (v !== undefined && problemOf(f, v) === undefined) merged[f.name] = v
  }
  return merged as unknown as SuspiciousPolicy
}
