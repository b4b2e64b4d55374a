import { randomUUID } from 'node:crypto'
import type { AccessRequest } from '../access/index.js'
import { type AuditInput, auditContext } from '../audit/index.js'
import {
  effectiveScopes,
  expandScopes,
  generateKeySecret,
  hashKeySecret,
  isSubset,
  isValidScope,
  type KeyOptions,
  type Principal,
} from '../auth/index.js'
import { ApiError, invalidField } from '../errors.js'
import type { ApiKeyRecord, ApiKeyWithMember, Member } from '../store/index.js'
import { isoDate, requireProject, requireScope, type Services } from './context.js'
import { isEmptyOptions, keyOptionsView, narrowKeyOptions, parseKeyOptions } from './credential-options.js'

/** The longest lifetime `time_to_live_in_seconds` may ask for (ten years). */
export const MAX_KEY_TTL_SECONDS = 10 * 365 * 24 * 3600
const MAX_COMMENT = 1024
const MAX_TAGS = 32
const MAX_TAG = 128
const MAX_SCOPES = 64

/** What a new key asks for, validated. */
export interface KeySpec {
  comment: string
  scopes: string[]
  tags: string[]
  /** Epoch ms, or null for no expiry. */
  expiresAt: number | null
  /** Earmark's extensions (docs/credential-options.md); none when absent. */
  options?: KeyOptions
}

/** A newly created key: the only moment its secret exists outside the caller's hands. */
export interface CreatedKey {
  record: ApiKeyRecord
  secret: string
}

function stringArray(
  body: Record<string, unknown>,
  field: string,
  required: boolean,
  max: number,
  maxLen: number,
) {
  const v = body[field]
  if (v === undefined || v === null) {
    if (required) throw invalidField(field, 'is required')
    return []
  }
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.length > 0 && s.length <= maxLen)) {
    throw invalidField(field, `must be an array of non-empty strings of at most ${maxLen} characters`)
  }
  if (v.length > max) throw invalidField(field, `must hold at most ${max} entries`)
  return [...new Set(v as string[])]
}

/** Validates a create-key body (docs/deepgram-compat.md §3). Unknown fields are ignored, as Deepgram does. */
export function parseKeySpec(body: Record<string, unknown>, now: number): KeySpec {
  const comment = body.comment
  if (typeof comment !== 'string' || comment.length === 0 || comment.length > MAX_COMMENT) {
    throw invalidField('comment', `is required: a non-empty string of at most ${MAX_COMMENT} characters`)
  }
  const scopes = stringArray(body, 'scopes', true, MAX_SCOPES, 64)
  if (scopes.length === 0) throw invalidField('scopes', 'must name at least one scope')
  const unknown = scopes.find((s) => !isValidScope(s))
  if (unknown !== undefined) throw invalidField('scopes', `\`${unknown}\` is not a known role or scope`)
  const tags = stringArray(body, 'tags', false, MAX_TAGS, MAX_TAG)

  const ttl = body.time_to_live_in_seconds
  const date = body.expiration_date
  const hasTtl = ttl !== undefined && ttl !== null
  const hasDate = date !== undefined && date !== null
  if (hasTtl && hasDate) {
    throw invalidField('expiration_date', 'cannot be combined with `time_to_live_in_seconds`')
  }
  let expiresAt: number | null = null
  if (hasTtl) {
    if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > MAX_KEY_TTL_SECONDS) {
      throw invalidField('time_to_live_in_seconds', `must be an integer from 1 to ${MAX_KEY_TTL_SECONDS}`)
    }
    expiresAt = now + ttl * 1000
  } else if (hasDate) {
    const ms = typeof date === 'string' ? Date.parse(date) : Number.NaN
    if (!Number.isFinite(ms)) throw invalidField('expiration_date', 'must be an ISO-8601 date')
    if (ms <= now) throw invalidField('expiration_date', 'must be in the future')
    expiresAt = ms
  }
  // Earmark's extensions (docs/credential-options.md); a key without any carries none.
  const options = parseKeyOptions(body)
  return { comment, scopes, tags, expiresAt, ...(isEmptyOptions(options) ? {} : { options }) }
}

/** A key record for `member`, not yet stored; `secret` defaults to a fresh one. Only the hash is kept. */
export function newKeyRecord(
  member: Member,
  spec: KeySpec,
  now: number,
  secret = generateKeySecret(),
): CreatedKey {
  const record: ApiKeyRecord = {
    id: randomUUID(),
    projectId: member.projectId,
    memberId: member.id,
    hash: hashKeySecret(secret),
    comment: spec.comment,
    scopes: spec.scopes,
    tags: spec.tags,
    createdAt: now,
    expiresAt: spec.expiresAt,
    deletedAt: null,
    options: spec.options ?? {},
    disabledAt: null,
    disabledReason: null,
  }
  return { record, secret }
}

/** Who acted, for an audit event: an authenticated request, or an operator at the CLI (docs/audit.md). */
export type KeyActor = Pick<AuditInput, 'actorKeyId' | 'endUser' | 'ip' | 'requestId'> & {
  /** The API, an operator's CLI command, or the server's expired-key sweeper. */
  via: 'api' | 'cli' | 'sweeper'
}

/** The actor of an API request. */
export function apiActor(principal: Principal, access?: AccessRequest | null): KeyActor {
  const { projectId: _, ...who } = auditContext(principal, access)
  return { ...who, via: 'api' }
}

/** The actor of a CLI command: an operator with the data directory, no key. */
export const CLI_ACTOR: KeyActor = { via: 'cli' }

/** Records an audit event about `key` (docs/audit.md): keys by id, never a secret. */
export function auditKeyEvent(
  services: Services,
  type: string,
  key: Pick<ApiKeyRecord, 'projectId' | 'id'>,
  actor: KeyActor,
  detail: Record<string, unknown> = {},
): void {
  const { via, ...who } = actor
  services.audit?.record({
    ...who,
    projectId: key.projectId,
    type,
    keyId: key.id,
    detail: { ...detail, via },
  })
}

/** `key.created`: what the key may do and for how long, and which extensions it carries (their names only). */
export function auditKeyCreated(services: Services, record: ApiKeyRecord, actor: KeyActor): void {
  auditKeyEvent(services, 'key.created', record, actor, {
    scopes: record.scopes,
    tags: record.tags,
    expires_at: record.expiresAt === null ? null : isoDate(record.expiresAt),
    options: Object.keys(record.options).sort(),
  })
}

/** Stores a new key for `member`. No permission check: callers (API, CLI) do their own. */
export async function insertKey(services: Services, member: Member, spec: KeySpec): Promise<CreatedKey> {
  const created = newKeyRecord(member, spec, services.clock.now())
  await services.store.insertKey(created.record)
  return created
}

/** The key fields of Deepgram's key shapes. */
export function apiKeyView(k: ApiKeyRecord) {
  return {
    api_key_id: k.id,
    comment: k.comment,
    scopes: k.scopes,
    tags: k.tags,
    created: isoDate(k.createdAt),
    ...(k.expiresAt !== null ? { expiration_date: isoDate(k.expiresAt) } : {}),
    // Earmark's options (binding, limits, quotas), only when set (docs/credential-options.md).
    ...keyOptionsView(k.options),
    // Only on a disabled key (docs/suspicious-activity.md): Deepgram's shapes are unchanged otherwise.
    ...(k.disabledAt !== null
      ? { disabled_at: isoDate(k.disabledAt), disabled_reason: k.disabledReason }
      : {}),
  }
}

function memberView(k: ApiKeyWithMember) {
  return { member_id: k.memberId, email: k.memberEmail }
}

/**
 * Owners see every key of the project; admins and members only their own member's
 * (docs/deepgram-compat.md §3).
 */
function canSee(principal: Principal, key: ApiKeyWithMember): boolean {
  return key.memberId === principal.memberId || principal.role === 'owner'
}

async function visibleKey(services: Services, principal: Principal, projectId: string, keyId: string) {
  const key = await services.store.getKey(projectId, keyId)
  if (!key || key.deletedAt !== null || !canSee(principal, key)) throw new ApiError('KEY_NOT_FOUND')
  return key
}

export async function createKey(
  services: Services,
  principal: Principal,
  projectId: string,
  body: Record<string, unknown>,
  access?: AccessRequest | null,
) {
  requireScope(principal, 'keys:write')
  await requireProject(services, principal, projectId)
  const spec = parseKeySpec(body, services.clock.now())
  // A key can never mint a key with a scope it does not hold itself...
  const missing = [...expandScopes(spec.scopes)].find((s) => !principal.scopes.has(s))
  if (missing !== undefined) {
    throw new ApiError(
      'FORBIDDEN',
      `Insufficient permissions: cannot grant \`${missing}\`, which this key lacks.`,
    )
  }
  // ...nor one that outlives it.
  if (principal.expiresAt !== null && (spec.expiresAt === null || spec.expiresAt > principal.expiresAt)) {
    spec.expiresAt = principal.expiresAt
  }
  // ...nor one that escapes its binding (docs/credential-options.md, "Keys and the tokens they mint").
  if (!isEmptyOptions(principal.keyRecord.options)) {
    const options = narrowKeyOptions(principal.keyRecord.options, spec.options ?? {})
    if (isEmptyOptions(options)) delete spec.options
    else spec.options = options
  }
  const member = await services.store.getMember(projectId, principal.memberId)
  if (!member) throw new ApiError('FORBIDDEN')
  const { record, secret } = await insertKey(services, member, spec)
  auditKeyCreated(services, record, apiActor(principal, access))
  return { key: secret, ...apiKeyView(record) }
}

export async function listKeys(
  services: Services,
  principal: Principal,
  projectId: string,
  query: Record<string, unknown>,
) {
  requireScope(principal, 'keys:read')
  await requireProject(services, principal, projectId)
  const status = query.status
  if (status !== undefined && status !== 'active' && status !== 'expired') {
    throw invalidField('status', "must be 'active' or 'expired'")
  }
  const now = services.clock.now()
  const all = await services.store.listKeys(
    projectId,
    principal.role === 'owner' ? {} : { memberId: principal.memberId },
  )
  const keys = all.filter((k) => {
    const expired = k.expiresAt !== null && k.expiresAt <= now
    return status === undefined || (status === 'expired') === expired
  })
  return { api_keys: keys.map((k) => ({ member: memberView(k), api_key: apiKeyView(k) })) }
}

export async function getKey(services: Services, principal: Principal, projectId: string, keyId: string) {
  requireScope(principal, 'keys:read')
  await requireProject(services, principal, projectId)
  const key = await visibleKey(services, principal, projectId, keyId)
  const member = memberView(key)
  const apiKey = apiKeyView(key)
  // Both typed access paths the SDKs use (docs/deepgram-compat.md §3, the get-key shapes).
  return { member, api_key: apiKey, item: { member: { ...member, api_key: apiKey } } }
}

/** A key the caller may change (delete, reroll): visible to it, and no wider than what it could create. */
async function changeableKey(services: Services, principal: Principal, projectId: string, keyId: string) {
  requireScope(principal, 'keys:write')
  await requireProject(services, principal, projectId)
  const key = await visibleKey(services, principal, projectId, keyId)
  // A key may only delete what it could have created.
  if (!isSubset(effectiveScopes(key.scopes, key.memberRole), principal.scopes)) {
    throw new ApiError('FORBIDDEN', 'Insufficient permissions: the key holds scopes this key lacks.')
  }
  return key
}

export async function deleteKey(
  services: Services,
  principal: Principal,
  projectId: string,
  keyId: string,
  access?: AccessRequest | null,
) {
  const key = await changeableKey(services, principal, projectId, keyId)
  if (!(await services.store.deleteKey(projectId, keyId, services.clock.now())))
    throw new ApiError('KEY_NOT_FOUND')
  services.revocations?.publish({ type: 'key-revoked', projectId, keyId, reason: 'deleted' })
  auditKeyEvent(services, 'key.deleted', key, apiActor(principal, access))
  return { message: 'Successfully deleted the API key!' }
}

/** The grace period of a reroll when the body names none: an hour to roll the new secret out (docs/audit.md). */
export const DEFAULT_REROLL_GRACE_SECONDS = 3600
/** The longest grace period a reroll may give the old secret: a day. */
export const MAX_REROLL_GRACE_SECONDS = 86_400

/** `grace_period_seconds` of a reroll body: an integer from 0 (the old secret dies at once) to a day. */
export function parseGracePeriod(body: Record<string, unknown>): number {
  const v = body.grace_period_seconds
  if (v === undefined || v === null) return DEFAULT_REROLL_GRACE_SECONDS
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_REROLL_GRACE_SECONDS) {
    throw invalidField('grace_period_seconds', `must be an integer from 0 to ${MAX_REROLL_GRACE_SECONDS}`)
  }
  return v
}

/**
 * Gives a key a new secret (same id, scopes, tags, expiry, options); the old secret keeps working for the
 * grace period, then never again. No permission check: callers do their own. Returns the new secret, once.
 */
export async function rerollKeySecret(
  services: Services,
  key: ApiKeyRecord,
  graceSeconds: number,
  actor: KeyActor,
): Promise<{ secret: string; record: ApiKeyRecord; previousSecretExpiresAt: number }> {
  const now = services.clock.now()
  if (key.expiresAt !== null && key.expiresAt <= now) {
    throw new ApiError('CONFLICT', 'The key has expired: create a new one instead.')
  }
  const secret = generateKeySecret()
  const previousSecretExpiresAt = now + graceSeconds * 1000
  if (
    !(await services.store.rerollKey(
      key.projectId,
      key.id,
      hashKeySecret(secret),
      previousSecretExpiresAt,
      now,
    ))
  ) {
    throw new ApiError('KEY_NOT_FOUND')
  }
  // Streams opened with the old secret must close when its grace ends: the stream guard re-reads their keys,
  // sees the new hash and arms that deadline (docs/revocation.md).
  services.revocations?.publish({ type: 'credentials-changed' })
  auditKeyEvent(services, 'key.rerolled', key, actor, {
    grace_period_seconds: graceSeconds,
    previous_secret_expires_at: isoDate(previousSecretExpiresAt),
  })
  return { secret, record: { ...key, hash: hashKeySecret(secret) }, previousSecretExpiresAt }
}

/**
 * `POST /v1/projects/:id/keys/:key_id/reroll` (an Earmark extension, docs/audit.md): the same visibility and
 * scope rules as delete. A credential that will die (an expiring key, or a secret in its own grace period)
 * cannot give a longer-lived key a fresh secret: that would outlive it, as a key it created may not.
 */
export async function rerollKey(
  services: Services,
  principal: Principal,
  projectId: string,
  keyId: string,
  body: Record<string, unknown>,
  access?: AccessRequest | null,
) {
  const key = await changeableKey(services, principal, projectId, keyId)
  const grace = parseGracePeriod(body)
  if (principal.expiresAt !== null && (key.expiresAt === null || key.expiresAt > principal.expiresAt)) {
    throw new ApiError(
      'FORBIDDEN',
      'Insufficient permissions: a credential that expires cannot reroll a key that outlives it.',
    )
  }
  const { secret, record, previousSecretExpiresAt } = await rerollKeySecret(
    services,
    key,
    grace,
    apiActor(principal, access),
  )
  return {
    key: secret,
    ...apiKeyView(record),
    previous_key_expiration_date: isoDate(previousSecretExpiresAt),
  }
}

/** A key's disabled state as the enable and disable routes answer it (docs/suspicious-activity.md). */
export function keyStateView(k: Pick<ApiKeyRecord, 'id' | 'disabledAt' | 'disabledReason'>) {
  return {
    api_key_id: k.id,
    disabled: k.disabledAt !== null,
    disabled_at: k.disabledAt === null ? null : isoDate(k.disabledAt),
    disabled_reason: k.disabledReason,
  }
}

/**
 * Disables a key (refused at once with every token it minted; their live streams close) or enables it
 * again; recorded as `key.disabled` / `key.enabled`. No permission check: callers (API, CLI) do their own.
 * A key already in the asked state is left as it is (a disable keeps its first reason). Returns the state,
 * or undefined when there is no such key or it is deleted.
 */
export async function setKeyDisabledState(
  services: Services,
  key: ApiKeyRecord,
  disabled: boolean,
  actor: KeyActor,
  reason = 'operator',
): Promise<ReturnType<typeof keyStateView> | undefined> {
  if ((key.disabledAt !== null) === disabled) return keyStateView(key)
  const { projectId, id: keyId } = key
  const at = disabled ? services.clock.now() : null
  const why = disabled ? reason : null
  if (!(await services.store.setKeyDisabled(projectId, keyId, at, why))) return undefined
  if (disabled) services.revocations?.publish({ type: 'key-revoked', projectId, keyId, reason: 'disabled' })
  auditKeyEvent(services, disabled ? 'key.disabled' : 'key.enabled', key, actor, disabled ? { reason } : {})
  return keyStateView({ id: keyId, disabledAt: at, disabledReason: why })
}

/**
 * `POST /v1/projects/:id/keys/:key_id/disable` and `.../enable` (Earmark extensions,
 * docs/suspicious-activity.md): the same visibility and scope rules as delete.
 */
export async function changeKeyState(
  services: Services,
  principal: Principal,
  projectId: string,
  keyId: string,
  disabled: boolean,
  access?: AccessRequest | null,
) {
  const key = await changeableKey(services, principal, projectId, keyId)
  const state = await setKeyDisabledState(services, key, disabled, apiActor(principal, access))
  if (!state) throw new ApiError('KEY_NOT_FOUND')
  return state
}
