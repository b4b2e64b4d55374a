import { randomBytes, randomUUID, type webcrypto } from 'node:crypto'
import { errors as joseErrors, jwtVerify, SignJWT } from 'jose'
import { LRUCache } from 'lru-cache'
import type { SigningKey, Store } from '../store/index.js'
import type { Clock } from './clock.js'
import { USAGE_WRITE } from './scopes.js'

/** Grant TTL bounds, seconds (deepgram-api.md §2). */
export const GRANT_DEFAULT_TTL = 30
export const GRANT_MAX_TTL = 3600

const ISSUER = 'earmark'
const ALG = 'HS256'
/** The WebCrypto algorithm of HS256 keys. */
const HMAC_SHA256 = { name: 'HMAC', hash: 'SHA-256' } as const

/** The claims of a grant token, as Earmark reads them. */
export interface GrantClaims {
  /** Token id. */
  jti: string
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
  /** Signs a `usage:write` token for `accessor`. `exp` never passes `notAfterMs` (the parent key's expiry). */
  mint(input: {
    projectId: string
    accessor: string
    ttlSeconds: number
    notAfterMs: number | null
  }): Promise<MintedGrant>
  /** The token's claims, or undefined when it is malformed, forged, expired or signed by a retired key. */
  verify(token: string): Promise<GrantClaims | undefined>
  /** Makes a new signing key current; older ones keep verifying until retired. Returns the new kid. */
  rotate(): Promise<string>
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

/** Loads (or, on first start, creates) the signing keys and returns the grant service. */
export async function createGrants(options: GrantsOptions): Promise<Grants> {
  const { store, clock } = options
  let keys = new Map<string, SigningKey>()
  let current: SigningKey

  // Each signing key's secret imported once as a non-extractable HMAC CryptoKey: handed a raw secret, jose
  // re-imports it on every sign and verify. Keyed by kid and pruned by `load`, so a key leaves this cache
  // exactly when it leaves `keys`.
  let imported = new Map<string, webcrypto.CryptoKey>()
  const cryptoKeyOf = async (key: SigningKey): Promise<webcrypto.CryptoKey> => {
    const hit = imported.get(key.kid)
    if (hit) return hit
    const cryptoKey = await crypto.subtle.importKey('raw', key.secret, HMAC_SHA256, false, ['sign', 'verify'])
    if (keys.has(key.kid)) imported.set(key.kid, cryptoKey)
    return cryptoKey
  }

  const load = async () => {
    const all = (await store.listSigningKeys()).filter((k) => k.retiredAt === null)
    keys = new Map(all.map((k) => [k.kid, k]))
    imported = new Map([...imported].filter(([kid]) => keys.has(kid)))
    const newest = all.at(-1)
    if (!newest) return false
    current = newest
    return true
  }

  if (!(await load())) {
    await store.insertSigningKey(newSigningKey(clock.now()))
    await load()
  }

  // Verified tokens by their exact text. An entry is only a signature check saved: expiry is checked
  // against the clock on every use, and the caller still checks the parent key is alive.
  const verified = new LRUCache<string, GrantClaims>({ max: options.cacheSize ?? 10_000 })

  const secretFor = async (kid: string | undefined): Promise<webcrypto.CryptoKey | undefined> => {
    if (!kid) return undefined
    if (!keys.has(kid)) await load() // rotated by another process (the CLI) since we loaded
    const key = keys.get(kid)
    return key && cryptoKeyOf(key)
  }

  return {
    async mint({ projectId, accessor, ttlSeconds, notAfterMs }) {
      const nowMs = clock.now()
      const iat = Math.floor(nowMs / 1000)
      let exp = iat + ttlSeconds
      if (notAfterMs !== null) exp = Math.min(exp, Math.floor(notAfterMs / 1000))
      const claims: GrantClaims = { jti: randomUUID(), projectId, accessor, scopes: [USAGE_WRITE], iat, exp }
      const token = await new SignJWT({ project_id: projectId, accessor, scopes: claims.scopes })
        .setProtectedHeader({ alg: ALG, kid: current.kid, typ: 'JWT' })
        .setIssuer(ISSUER)
        .setSubject(accessor)
        .setJti(claims.jti)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .sign(await cryptoKeyOf(current))
      return { token, claims }
    },

    async verify(token) {
      const nowSec = Math.floor(clock.now() / 1000)
      const hit = verified.get(token)
      if (hit) return hit.exp > nowSec ? hit : undefined
      try {
        const { payload } = await jwtVerify(
          token,
          async (header) => {
            const secret = await secretFor(header.kid)
            if (!secret) throw new joseErrors.JWKSNoMatchingKey()
            return secret
          },
          { algorithms: [ALG], issuer: ISSUER, currentDate: new Date(clock.now()), clockTolerance: 0 },
        )
        const { jti, sub, iat, exp, project_id: projectId, scopes } = payload
        if (
          typeof jti !== 'string' ||
          typeof sub !== 'string' ||
          typeof iat !== 'number' ||
          typeof exp !== 'number' ||
          typeof projectId !== 'string' ||
          !Array.isArray(scopes) ||
          !scopes.every((s) => typeof s === 'string')
        ) {
          return undefined
        }
        // jose accepts exp == now; a token is dead from its exp second on.
        if (exp <= nowSec) return undefined
        const claims: GrantClaims = { jti, projectId, accessor: sub, scopes, iat, exp }
        verified.set(token, claims)
        return claims
      } catch {
        return undefined
      }
    },

    async rotate() {
      const key = newSigningKey(clock.now())
      await store.insertSigningKey(key)
      await load()
      return key.kid
    },
  }
}
