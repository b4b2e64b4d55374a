import { LRUCache } from 'lru-cache'
import { ApiError } from '../errors.js'
import type { ApiKeyWithMember, Store } from '../store/index.js'
import { hashesEqual, hashKeySecret } from './api-keys.js'
import type { Clock } from './clock.js'
import type { GrantClaims, Grants } from './grants.js'
import { effectiveScopes, type Role, roleOf, USAGE_WRITE } from './scopes.js'

/** The two ways to present a credential (docs/deepgram-compat.md §1.1). */
export type Scheme = 'token' | 'bearer'

/** Who is calling, once authenticated. */
export interface Principal {
  scheme: Scheme
  projectId: string
  /** The API key: the caller's own, or for a grant token its parent (the accessor). */
  keyId: string
  memberId: string
  memberRole: Role
  /** What the credential may do, fully expanded. */
  scopes: ReadonlySet<string>
  /** The highest role those scopes make up (`roleOf(scopes)`), worked out once. */
  role: Role | undefined
  /** Epoch ms after which the credential is dead, or null. */
  expiresAt: number | null
  /** Present for a grant token. */
  grant?: GrantClaims
  /** Present for an API key. */
  key?: ApiKeyWithMember
  /**
   * The key that pays and whose limits, quotas and binding apply: the key itself, or a grant token's parent.
   * Its `options` are Earmark's extensions (docs/credential-options.md).
   */
  keyRecord: ApiKeyWithMember
}

export interface Authenticator {
  /** Checks a scheme and secret; throws `INVALID_AUTH` for anything that is not a live credential. */
  authenticate(scheme: Scheme, secret: string): Promise<Principal>
  /** Parses an `Authorization` header value (`Token …`, `token …` or `Bearer …`) and authenticates it. */
  authenticateHeader(header: string | undefined): Promise<Principal>
  /**
   * The principal of a header seen before, synchronously, when nothing it depends on has changed since
   * (same credentials version, not expired); undefined means "ask `authenticateHeader`", never "refused".
   */
  peekHeader(header: string | undefined): Principal | undefined
  /** `peekHeader` for a scheme and secret already parsed (a WebSocket upgrade's). */
  peek(scheme: Scheme, secret: string): Principal | undefined
}

export interface AuthenticatorOptions {
  store: Store
  grants: Grants
  clock: Clock
  /** How many keys to remember between requests (default 10 000). */
  cacheSize?: number
  /**
   * How many secrets and key ids that matched nothing to remember, apart from the keys (default 4 096): a
   * repeated unknown secret costs no store query while the credentials version holds, and unknown secrets
   * never push a real key out of its cache.
   */
  missingCacheSize?: number
  /**
   * Told about a refused credential that was recognised: a known key's secret after the key was deleted,
   * disabled, expired or rerolled away, or a grant token naming a key (docs/suspicious-activity.md). Never
   * given the secret; `error` is the very `INVALID_AUTH` thrown, so a later hook can tie the refusal to its
   * request. Unset, refusals cost nothing extra.
   */
  onRefused?: (reason: RefusalReason, credential: RefusedCredential, error: ApiError) => void
}

/** Why a recognised credential was refused. */
export type RefusalReason =
  | 'key_deleted'
  | 'key_disabled'
  | 'key_expired'
  | 'secret_rerolled'
  | 'parent_deleted'
  | 'parent_disabled'
  | 'parent_expired'
  /** A grant token that failed verification (signature, signing key retired, expired, malformed claims). */
  | 'token_unverified'

/** The credential behind a refusal: ids only, never a secret. */
export interface RefusedCredential {
  projectId: string
  keyId: string
  /** False when the ids were read from a grant token that did not verify: anyone can write those. */
  verified: boolean
  jti?: string
  endUser?: string
}

/** Why a key that is not live is refused. */
function deadReason(key: ApiKeyWithMember, prefix: 'key' | 'parent'): RefusalReason {
  if (key.deletedAt !== null) return `${prefix}_deleted`
  return key.disabledAt !== null ? `${prefix}_disabled` : `${prefix}_expired`
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

function isUuid(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value)
}

/**
 * The project, key and token ids a grant token claims, read without verifying it: only for telling a
 * refusal's listener which key a refused token names (it is told they are unverified).
 */
function claimedIds(token: string): RefusedCredential | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || (parts[1]?.length ?? 0) > 4096) return undefined
  try {
    const payload = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as unknown
    if (typeof payload !== 'object' || payload === null) return undefined
    const { project_id: projectId, sub, jti } = payload as Record<string, unknown>
    // Ids Earmark would have written (UUIDs), nothing else: whatever a forger put there is not repeated on.
    if (!isUuid(projectId) || !isUuid(sub)) return undefined
    return { projectId, keyId: sub, verified: false, ...(isUuid(jti) ? { jti } : {}) }
  } catch {
    return undefined
  }
}

/** Whitespace as `\s` sees it, in the Latin-1 range header values are read in. */
function isSpace(code: number): boolean {
  return code === 32 || (code >= 9 && code <= 13) || code === 160
}

/**
 * Splits `Token abc` into scheme (case-insensitive) and secret; undefined when it is not one of ours.
 * Written out rather than a regular expression: a grant token is ~470 characters, and matching `\S+` over it
 * on every request cost a fifth of a microsecond. A secret with whitespace inside is passed on as it is and
 * matches no credential.
 */
export function parseAuthorization(
  header: string | undefined,
): { scheme: Scheme; secret: string } | undefined {
  if (!header) return undefined
  const value = header.trim()
  let end = 0
  while (end < value.length && end <= 6 && !isSpace(value.charCodeAt(end))) end++
  const scheme = value.slice(0, end).toLowerCase()
  if (scheme !== 'token' && scheme !== 'bearer') return undefined
  const secret = value.slice(end).trimStart()
  return secret === '' ? undefined : { scheme, secret }
}

/** True while a key is neither deleted, disabled nor expired. */
export function isLive(key: ApiKeyWithMember, now: number): boolean {
  return key.deletedAt === null && key.disabledAt === null && (key.expiresAt === null || key.expiresAt > now)
}

/** The principal of an API key, acting as itself. */
export function keyPrincipal(key: ApiKeyWithMember): Principal {
  const scopes = effectiveScopes(key.scopes, key.memberRole)
  return {
    scheme: 'token',
    projectId: key.projectId,
    keyId: key.id,
    memberId: key.memberId,
    memberRole: key.memberRole,
    scopes,
    role: roleOf(scopes),
    expiresAt: key.expiresAt,
    key,
    keyRecord: key,
  }
}

export function createAuthenticator({
  store,
  grants,
  clock,
  cacheSize,
  missingCacheSize,
  onRefused,
}: AuthenticatorOptions): Authenticator {
  const invalid = () => new ApiError('INVALID_AUTH')
  /** The refusal of a recognised credential, told to `onRefused` (only ever called when it is set). */
  const refusal = (reason: RefusalReason, credential: RefusedCredential) => {
    const err = invalid()
    onRefused?.(reason, credential, err)
    return err
  }

  // Keys read from the store, with the principal built from them, valid only while the store's
  // credentials version is unchanged: any key, member or project write, here or in another process,
  // drops them all, so a deleted key is refused on its very next request. Expiry is checked every time.
  interface Cached {
    version: number
    key: ApiKeyWithMember | undefined
    principal: Principal | undefined
  }
  const cache = new LRUCache<string, Cached>({ max: cacheSize ?? 10_000 })
  // Lookups that found nothing, with the credentials version they were made at, in a cache of their own:
  // random secrets only ever push out other random secrets, never a real key, and the same unknown secret
  // sent again costs no store query until a credential changes (a key created since is then found at once).
  // A secret never seen before still costs one indexed lookup; the failed-authentication limits bound
  // those per address (docs/limits.md).
  const missing = new LRUCache<string, number>({ max: missingCacheSize ?? 4096 })
  // One store read per cache key and version, however many requests wait for it: a hot key right after a
  // credential change, or the same unknown secret sent many times at once.
  const reading = new Map<string, { version: number; entry: Promise<Cached> }>()
  const cached = (cacheKey: string, read: () => Promise<ApiKeyWithMember | undefined>): Promise<Cached> => {
    const version = store.credentialsVersion()
    const hit = cache.get(cacheKey)
    if (hit && hit.version === version) return Promise.resolve(hit)
    if (missing.get(cacheKey) === version)
      return Promise.resolve({ version, key: undefined, principal: undefined })
    const running = reading.get(cacheKey)
    if (running && running.version === version) return running.entry
    const entry = read()
      .then((key): Cached => {
        if (!key) {
          cache.delete(cacheKey)
          missing.set(cacheKey, version)
          return { version, key: undefined, principal: undefined }
        }
        const found = { version, key, principal: keyPrincipal(key) }
        cache.set(cacheKey, found)
        return found
      })
      .finally(() => {
        if (reading.get(cacheKey)?.entry === entry) reading.delete(cacheKey)
      })
    reading.set(cacheKey, { version, entry })
    return entry
  }

  // Principals that authenticated, for the synchronous fast path: keys by their hash, grant tokens by their
  // signature (the JWS's last part) with the whole token kept and compared, since hashing a ~300-character
  // token as a map key on every request cost more than the rest of the lookup. Valid while the credentials
  // version holds; expiry is checked on every use.
  interface Known {
    version: number
    principal: Principal
    /** For a grant token: the whole token the signature belongs to. */
    token?: string
  }
  const knownKeys = new LRUCache<string, Known>({ max: cacheSize ?? 10_000 })
  const knownTokens = new LRUCache<string, Known>({ max: cacheSize ?? 10_000 })
  const signatureOf = (token: string) => token.slice(token.lastIndexOf('.') + 1)

  const byKey = async (secret: string): Promise<Principal> => {
    const hash = hashKeySecret(secret)
    const { version, key, principal } = await cached(`h:${hash}`, () => store.findKeyByHash(hash))
    if (!key || !principal) throw invalid()
    if (!isLive(key, clock.now())) {
      if (!onRefused) throw invalid()
      throw refusal(deadReason(key, 'key'), { projectId: key.projectId, keyId: key.id, verified: true })
    }
    // A secret the key was rerolled away from works until its grace period ends, never after.
    const graceEnds = key.previousSecretExpiresAt
    if (graceEnds !== undefined) {
      if (graceEnds <= clock.now()) {
        if (!onRefused) throw invalid()
        throw refusal('secret_rerolled', { projectId: key.projectId, keyId: key.id, verified: true })
      }
      const limited: Principal = {
        ...principal,
        expiresAt: principal.expiresAt === null ? graceEnds : Math.min(principal.expiresAt, graceEnds),
      }
      knownKeys.set(hash, { version, principal: limited })
      return limited
    }
    // The lookup is by hash; the compare is constant-time anyway so the check never depends on timing.
    if (!hashesEqual(key.hash, hash)) throw invalid()
    knownKeys.set(hash, { version, principal })
    return principal
  }

  const byGrant = async (token: string): Promise<Principal> => {
    const claims = await grants.verify(token)
    if (!claims) {
      const named = onRefused && claimedIds(token)
      throw named ? refusal('token_unverified', named) : invalid()
    }
    // A grant dies with its parent: deleting the key revokes every token it minted.
    const { version, key: parent } = await cached(`k:${claims.projectId}/${claims.accessor}`, () =>
      store.getKey(claims.projectId, claims.accessor),
    )
    if (!parent) throw invalid()
    if (!isLive(parent, clock.now())) {
      if (!onRefused) throw invalid()
      throw refusal(deadReason(parent, 'parent'), {
        projectId: parent.projectId,
        keyId: parent.id,
        verified: true,
        jti: claims.jti,
        ...(claims.endUser !== undefined ? { endUser: claims.endUser } : {}),
      })
    }
    const parentScopes = effectiveScopes(parent.scopes, parent.memberRole)
    const scopes = new Set(claims.scopes.filter((s) => s === USAGE_WRITE && parentScopes.has(s)))
    const principal: Principal = {
      scheme: 'bearer',
      projectId: claims.projectId,
      keyId: parent.id,
      memberId: parent.memberId,
      memberRole: parent.memberRole,
      scopes,
      role: roleOf(scopes),
      expiresAt: claims.exp * 1000,
      grant: claims,
      keyRecord: parent,
    }
    knownTokens.set(signatureOf(token), { version, principal, token })
    return principal
  }

  const authenticate = (scheme: Scheme, secret: string) =>
    scheme === 'token' ? byKey(secret) : byGrant(secret)

  const peek = (scheme: Scheme, secret: string): Principal | undefined => {
    const hit =
      scheme === 'token' ? knownKeys.get(hashKeySecret(secret)) : knownTokens.get(signatureOf(secret))
    if (!hit || hit.version !== store.credentialsVersion()) return undefined
    // Same signature, other header or payload: not the token that was verified.
    if (scheme === 'bearer' && hit.token !== secret) return undefined
    const { expiresAt } = hit.principal
    return expiresAt === null || expiresAt > clock.now() ? hit.principal : undefined
  }

  return {
    authenticate,
    async authenticateHeader(header) {
      const parsed = parseAuthorization(header)
      if (!parsed) throw invalid()
      return authenticate(parsed.scheme, parsed.secret)
    },
    peekHeader(header) {
      const parsed = parseAuthorization(header)
      return parsed ? peek(parsed.scheme, parsed.secret) : undefined
    },
    peek,
  }
}
