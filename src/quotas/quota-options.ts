import type { KeyQuotas, ProjectSettings } from '../auth/index.js'
import { invalidField } from '../errors.js'

/**
 * The wire form of audio quotas (docs/quotas.md): the `quotas` object of a create-key body and the `quotas`
 * section of a project's settings. Same four snake_case fields in both; each is optional, and a quota that
 * is absent is no quota.
 */

/** The largest quota that can be set, seconds (about 31 years of audio: far above any real period). */
export const MAX_QUOTA_SECONDS = 1_000_000_000

/** Wire name → field of `KeyQuotas`, in the order they are documented. */
const FIELDS = {
  audio_seconds_per_day: 'audioSecondsPerDay',
  audio_seconds_per_month: 'audioSecondsPerMonth',
  end_user_audio_seconds_per_day: 'endUserAudioSecondsPerDay',
  end_user_audio_seconds_per_month: 'endUserAudioSecondsPerMonth',
} as const satisfies Record<string, keyof KeyQuotas>

type WireName = keyof typeof FIELDS

function isWireName(name: string): name is WireName {
  return Object.hasOwn(FIELDS, name)
}

function objectOf(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalidField(field, `must be an object with any of ${Object.keys(FIELDS).join(', ')}`)
  }
  return value as Record<string, unknown>
}

function seconds(value: unknown, field: string): number {
  // A quota of 0 would refuse every request: disabling the key says that more plainly.
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_QUOTA_SECONDS) {
    throw invalidField(field, `must be a number of seconds above 0, at most ${MAX_QUOTA_SECONDS}`)
  }
  return value
}

/**
 * Applies a `quotas` object to `current`: a number sets a quota, a `null` field clears it, an absent one is
 * kept; unknown fields are a 400 naming them. Undefined when no quota is left.
 */
function applyQuotas(value: unknown, current: KeyQuotas): KeyQuotas | undefined {
  const body = objectOf(value, 'quotas')
  const out: KeyQuotas = { ...current }
  for (const [name, v] of Object.entries(body)) {
    if (!isWireName(name)) {
      throw invalidField(`quotas.${name}`, `is not a quota (known: ${Object.keys(FIELDS).join(', ')})`)
    }
    if (v === null) delete out[FIELDS[name]]
    else out[FIELDS[name]] = seconds(v, `quotas.${name}`)
  }
  return Object.keys(out).length > 0 ? out : undefined
}

/**
 * The `quotas` of a create-key body (docs/quotas.md): absent or null, none. The `end_user_*` ones apply to
 * each end user of the key.
 */
export function parseKeyQuotas(value: unknown): KeyQuotas | undefined {
  if (value === undefined || value === null) return undefined
  return applyQuotas(value, {})
}

/**
 * The `quotas` section of `PATCH /v1/projects/:id/settings` applied to `current` (docs/quotas.md): `null`
 * clears every quota, a `null` field clears one, absent fields are kept. The key fields are the default of
 * every key of the project without its own; the `end_user_*` ones apply to every end user of the project.
 */
export function parseQuotaSettings(value: unknown, current: KeyQuotas = {}): KeyQuotas | undefined {
  if (value === null) return undefined
  return applyQuotas(value, current)
}

/** The snake_case view of quotas: only the fields set (an empty object when none is). */
export function quotasView(quotas: KeyQuotas | undefined): Record<string, number> {
  const view: Record<string, number> = {}
  if (!quotas) return view
  for (const [name, key] of Object.entries(FIELDS)) {
    const v = quotas[key]
    if (v !== undefined) view[name] = v
  }
  return view
}

/** The `quotas` section of the project settings route (`src/projects/project-settings.ts`). */
export const quotaSettingsSection = {
  apply(settings: ProjectSettings, value: unknown): ProjectSettings {
    const { quotas: old, ...rest } = settings
    const quotas = parseQuotaSettings(value, old)
    return quotas ? { ...rest, quotas } : rest
  },
  view: (settings: ProjectSettings): Record<string, unknown> => quotasView(settings.quotas),
}
