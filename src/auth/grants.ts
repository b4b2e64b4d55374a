import { randomBytes, randomUUID } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import { LRUCache } from 'lru-cache'
import type { SigningKey, Store } from '../store/index.js'
import type { Clock } from './clock.js'
import { USAGE_WRITE } from './scopes.js'

/** Grant TTL bounds, seconds (docs/deepgram-compat.md §2). */
export const GRANT_DEFAULT_TTL = 30
export const GRANT_MAX_TTL = 3600

const ISSUER = 'earmark'
const ALG = 'HS256'

/** The claims of a grant token, as Earmark reads them. */
export interface GrantClaims {
  /** Token id. */
  jti: string
  /** The signing key that signed it (absent only on claims built before a token exists). */
  kid?: string
  projectId: string
  /** The parent key's id (Deepgram calls it the accessor). */
  accessor: string
  scopes: string[]
  /** The app's end user this token was minted for, if any. */
  endUser?: string
  /** Epoch seconds. */
  iat: number
  /** Epoch seconds. */
  exp: number
}

export interface MintedGrant {
  token: string
  claims: GrantClaims
}

/** Mints and verifies grant tokens (HS256 JWTs signed with a key kept in the store, named by `kid`). */
export interface Grants {
  /**
   * Signs a `usage:write` token for `accessor`. `exp` never passes `notAfterMs` (the parent key's expiry).
   * Synchronous: HMAC signing needs no I/O, and a promise per grant was measurable on the grant route.
   */
  mint(input: {
    projectId: string
    accessor: string
    ttlSeconds: number
    notAfterMs: number | null
    endUser?: string
  }): MintedGrant
  /** The token's claims, or undefined when it is malformed, forged, expired or signed by a retired key. */
  verify(token: string): Promise<GrantClaims | undefined>
  /** Makes a new signing key current; older ones keep verifying until retired. Returns the new kid. */
  rotate(): Promise<string>
  /**
   * Retires a signing key: tokens it signed are refused from now on. Retiring the current key makes a new
   * one current. False when no such key is live.
   */
  retire(kid: string): Promise<boolean>
  /** Every signing key, oldest first, without its secret; `current` marks the one that signs. */
  list(): Promise<SigningKeyInfo[]>
  /** Reads the signing keys again (another process rotated or retired one). */
  reload(): Promise<void>
}

/** A signing key as shown to operators: never its secret. */
export interface SigningKeyInfo {
  kid: string
  createdAt: number
  retiredAt: number | null
  current: boolean
}

export interface GrantsOptions {
  store: Store
  clock: Clock
  /** How many verified tokens to remember, so a hot token is not re-verified on every request. */
  cacheSize?: number
}

function newSigningKey(now: number): SigningKey {
  return { kid: randomUUID(), secret: randomBytes(32), createdAt: now, retiredAt: null }
}

type Sign = (payload: Record<string, unknown>) => string
type Verify = (token: string) => Record<string, unknown>

/** A signing key with its signer and verifier built once (fast-jwt signs with node:crypto, synchronously). */
interface LoadedKey {
  kid: string
  sign: Sign
  verify: Verify
}

function loadKey(key: SigningKey): LoadedKey {
  return {
    kid: key.kid,
    // The payload carries its own iat (from the injected clock), which fast-jwt keeps.
    sign: createSigner({ key: key.secret, algorithm: ALG, kid: key.kid }) as Sign,
    // Expiry is checked against the injected clock below, not fast-jwt's own.
    verify: createVerifier({
      key: key.secret,
      algorithms: [ALG],
      allowedIss: ISSUER,
      ignoreExpiration: true,
      ignoreNotBefore: true,
      requiredClaims: ['jti', 'sub', 'iat', 'exp', 'project_id', 'scopes'],
    }) as Verify,
  }
}

/** The `kid` of a compact JWS, read from its header alone; undefined for anything malformed. */
function kidOf(token: string): string | undefined {
  const dot = token.indexOf('.')
  if (dot <= 0) return undefined
  try {
    const header = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown
    if (typeof header !== 'object' || header === null) return undefined
    const { kid, alg } = header as { kid?: unknown; alg?: unknown }
    return alg === ALG && typeof kid === 'string' ? kid : undefined
  } catch {
    return undefined
  }
}

/** Loads (or, on first start, creates) the signing keys and returns the grant service. */
export async function createGrants(options: GrantsOptions): Promise<Grants> {
  const { store, clock } = options
  let keys = new Map<string, LoadedKey>()
  let current: LoadedKey | undefined
  let loadedVersion = store.credentialsVersion()
  let reloading: Promise<unknown> | undefined

  const load = async () => {
    loadedVersion = store.credentialsVersion()
    const all = (await store.listSigningKeys()).filter((k) => k.retiredAt === null)
    keys = new Map(all.map((k) => [k.kid, keys.get(k.kid) ?? loadKey(k)]))
    const newest = all.at(-1)
    current = newest && keys.get(newest.kid)
    return current !== undefined
  }

  if (!(await load())) {
    await store.insertSigningKey(newSigningKey(clock.now()))
    await load()
  }

  /** One reload at a time, shared by everyone who noticed the change. */
  const refresh = (): Promise<unknown> => {
    reloading ??= load().finally(() => {
      reloading = undefined
    })
    return reloading
  }

  // Verified tokens by their exact text. An entry is only a signature check saved: expiry is checked
  // against the clock on every use, and the caller still checks the parent key is alive.
  const verified = new LRUCache<string, GrantClaims>({ max: options.cacheSize ?? 10_000 })

  const keyFor = async (kid: string | undefined): Promise<LoadedKey | undefined> => {
    if (!kid) return undefined
    if (!keys.has(kid)) await load() // rotated by another process (the CLI) since we loaded
    return keys.get(kid)
  }

  return {
    mint({ projectId, accessor, ttlSeconds, notAfterMs, endUser }) {
      // Another process rotated or retired a key: signing is synchronous, so the keys are read again in the
      // background and this token is signed with what is loaded (the next ones, within a second, are not).
      if (store.credentialsVersion() !== loadedVersion) refresh().catch(() => {})
      if (!current) throw new Error('no signing key')
      const nowMs = clock.now()
      const iat = Math.floor(nowMs / 1000)
      let exp = iat + ttlSeconds
      if (notAfterMs !== null) exp = Math.min(exp, Math.floor(notAfterMs / 1000))
      const claims: GrantClaims = {
        jti: randomUUID(),
        kid: current.kid,
        projectId,
        accessor,
        scopes: [USAGE_WRITE],
        iat,
        exp,
      }
      if (endUser !== undefined) claims.endUser = endUser
      const token = current.sign({
        iss: ISSUER,
        sub: accessor,
        jti: claims.jti,
        iat,
        exp,
        project_id: projectId,
        accessor,
        scopes: claims.scopes,
        ...(endUser !== undefined ? { end_user: endUser } : {}),
      })
      return { token, claims }
    },

    async verify(token) {
      const nowSec = Math.floor(clock.now() / 1000)
      // Another process retired or rotated a key since we loaded: read them again (once per change).
      if (store.credentialsVersion() !== loadedVersion) await refresh()
      const hit = verified.get(token)
      // A retired key drops out of `keys` at once, and its tokens with it, cached or not.
      if (hit) return hit.exp > nowSec && hit.kid !== undefined && keys.has(hit.kid) ? hit : undefined
      const key = await keyFor(kidOf(token))
      if (!key) return undefined
      let payload: Record<string, unknown>
      try {
        payload = key.verify(token)
      } catch {
        return undefined
      }
      const { jti, sub, iat, exp, project_id: projectId, scopes, end_user: endUser } = payload
      if (
        typeof jti !== 'string' ||
        typeof sub !== 'string' ||
        typeof iat !== 'number' ||
        typeof exp !== 'number' ||
        typeof projectId !== 'string' ||
        !Array.isArray(scopes) ||
        !scopes.every((s) => typeof s === 'string') ||
        (endUser !== undefined && typeof endUser !== 'string')
      ) {
        return undefined
      }
      // A token is dead from its exp second on.
      if (exp <= nowSec) return undefined
      const claims: GrantClaims = {
        jti,
        kid: key.kid,
        projectId,
        accessor: sub,
        scopes,
        iat,
        exp,
        ...(typeof endUser === 'string' ? { endUser } : {}),
      }
      verified.set(token, claims)
      return claims
    },

    async rotate() {
      const key = newSigningKey(clock.now())
      await store.insertSigningKey(key)
      await load()
      return key.kid
    },

    async retire(kid) {
      const wasCurrent = current?.kid === kid
      if (!(await store.retireSigningKey(kid, clock.now()))) return false
      // A leaked current key is replaced by a fresh one, not by an older key that may have leaked with it.
      if (!(await load()) || wasCurrent) {
        await store.insertSigningKey(newSigningKey(clock.now()))
        await load()
      }
      return true
    },

    async list() {
      const all = await store.listSigningKeys()
      return all.map((k) => ({
        kid: k.kid,
        createdAt: k.createdAt,
        retiredAt: k.retiredAt,
        current: k.kid === current?.kid,
      }))
    },

    async reload() {
      await load()
    },
  }
}
