import { randomBytes, randomUUID } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import { LRUCache } from 'lru-cache'
import type { SigningKey, Store } from '../store/index.js'
import type { Clock } from './clock.js'
import type { GrantOptions } from './credential-options.js'
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
  /**
   * Earmark's options (docs/credential-options.md): the token's binding, already narrowed by its key's, and
   * its use count. Absent on a token minted without any.
   */
  options?: GrantOptions
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
    /** Effective options; carried in one compact claim, only when some are set. */
    options?: GrantOptions
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
  /**
   * How many `kid`s that named no live signing key to remember (default 1 024): a token naming an unknown or
   * retired key is then refused without reading the signing keys again, until a credential changes.
   */
  missingKidCacheSize?: number
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

/**
 * The one compact claim (`opt`) that carries a token's options, with short names: tokens are sent on every
 * request, and a token without options carries no claim at all (its shape is Deepgram's).
 */
interface OptionsClaim {
  /** allowed origins */
  o?: string[]
  /** allowed addresses or CIDR ranges */
  ip?: string[]
  /** max session seconds */
  sd?: number
  /** max uses */
  mu?: number
  /** listen: allowed models, languages, max sample rate, interim results */
  lm?: string[]
  ll?: string[]
  lr?: number
  li?: boolean
}

/** The `opt` claim of `options`, or undefined when none is set. */
function optionsClaim(options: GrantOptions | undefined): OptionsClaim | undefined {
  if (!options) return undefined
  const c: OptionsClaim = {}
  if (options.allowedOrigins) c.o = options.allowedOrigins
  if (options.allowedIps) c.ip = options.allowedIps
  if (options.maxSessionSeconds !== undefined) c.sd = options.maxSessionSeconds
  if (options.maxUses !== undefined) c.mu = options.maxUses
  const l = options.listen
  if (l?.allowedModels) c.lm = l.allowedModels
  if (l?.allowedLanguages) c.ll = l.allowedLanguages
  if (l?.maxSampleRate !== undefined) c.lr = l.maxSampleRate
  if (l?.interimResults !== undefined) c.li = l.interimResults
  return Object.keys(c).length > 0 ? c : undefined
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string')
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0

/**
 * The options an `opt` claim carries; null when it is malformed (the token is then refused: a claim this
 * server did not write must not loosen or silently drop a binding).
 */
function readOptionsClaim(value: unknown): GrantOptions | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
  const c = value as Record<string, unknown>
  const options: GrantOptions = {}
  const listen: NonNullable<GrantOptions['listen']> = {}
  for (const [name, v] of Object.entries(c)) {
    if (name === 'o' && isStrings(v)) options.allowedOrigins = v
    else if (name === 'ip' && isStrings(v)) options.allowedIps = v
    else if (name === 'sd' && isInt(v)) options.maxSessionSeconds = v
    else if (name === 'mu' && isInt(v)) options.maxUses = v
    else if (name === 'lm' && isStrings(v)) listen.allowedModels = v
    else if (name === 'll' && isStrings(v)) listen.allowedLanguages = v
    else if (name === 'lr' && isInt(v)) listen.maxSampleRate = v
    else if (name === 'li' && typeof v === 'boolean') listen.interimResults = v
    else return null
  }
  if (Object.keys(listen).length > 0) options.listen = listen
  return options
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

  // `kid`s that named no live signing key, with the credentials version of the read that did not find
  // them: apart from the keys, so made-up `kid`s cost one read each at most and push out nothing real.
  const missingKids = new LRUCache<string, number>({ max: options.missingKidCacheSize ?? 1024 })

  const keyFor = async (kid: string | undefined): Promise<LoadedKey | undefined> => {
    if (!kid) return undefined
    const known = keys.get(kid)
    if (known) return known
    if (missingKids.get(kid) === store.credentialsVersion()) return undefined
    // Perhaps rotated by another process whose change this one has not heard of yet (PostgreSQL's
    // notification is on its way): read the keys again, once, shared with whoever else is waiting.
    await refresh()
    const key = keys.get(kid)
    // `loadedVersion` was read before the keys were: the kid was missing at that version at least.
    if (!key) missingKids.set(kid, loadedVersion)
    return key
  }

  return {
    mint({ projectId, accessor, ttlSeconds, notAfterMs, endUser, options }) {
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
      const opt = optionsClaim(options)
      if (opt && options) claims.options = options
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
        ...(opt ? { opt } : {}),
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
      const { jti, sub, iat, exp, project_id: projectId, scopes, end_user: endUser, opt } = payload
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
      const options = opt === undefined ? undefined : readOptionsClaim(opt)
      if (options === null) return undefined
      const claims: GrantClaims = {
        jti,
        kid: key.kid,
        projectId,
        accessor: sub,
        scopes,
        iat,
        exp,
        ...(typeof endUser === 'string' ? { endUser } : {}),
        ...(options ? { options } : {}),
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
