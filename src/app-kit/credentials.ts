import type { IncomingMessage } from 'node:http'
import { AppKitError } from './errors.js'
import type { ResolvedOptions } from './options.js'
import { type UpstreamClient, UpstreamRefusal } from './upstream-client.js'

/** The key tag that names the end user a key was minted for (Earmark reads it into usage records). */
export const END_USER_TAG_PREFIX = 'end_user:'
/** Earmark's tags hold at most 128 characters, so an end-user id holds at most 128 minus the prefix. */
export const MAX_END_USER_LENGTH = 128 - END_USER_TAG_PREFIX.length
const KEY_ID = /^[A-Za-z0-9_.-]{1,128}$/

/** Pattern 1's answer to `POST {prefix}/key`. */
export interface KeyCredential {
  key: string
  api_key_id: string
  expiration_date: string | null
  end_user: string
  scheme: 'token'
}

/** Pattern 2's answer to `POST {prefix}/token`. */
export type TokenCredential =
  | { access_token: string; expires_in: number; end_user: string; scheme: 'bearer'; kind: 'grant' }
  | { key: string; api_key_id: string; expires_in: number; end_user: string; scheme: 'token'; kind: 'key' }

/** A grant minted for an end user; `carriesEndUser` when the upstream put the `end_user` claim in it. */
export interface EndUserGrant {
  token: string
  expiresIn: number
  carriesEndUser: boolean
}

/** The operations every transport (node:http handler, Fastify plugin, WebSocket proxy) shares. */
export interface Credentials {
  /** Runs the app's `authorize` hook: the end-user id, or an AppKitError (401, or the hook's own 403). */
  identify(request: IncomingMessage): Promise<string>
  createKey(endUser: string): Promise<KeyCredential>
  deleteKey(endUser: string, keyId: string): Promise<{ message: string }>
  createToken(endUser: string, body: unknown): Promise<TokenCredential>
  /** A grant for `endUser`; falls back to a claim-less grant when the upstream refuses the extension. */
  grantFor(endUser: string, ttlSeconds: number): Promise<EndUserGrant>
  /** Whether grants from the upstream are known to carry `end_user` (undefined: not tried yet). */
  readonly grantsCarryEndUser: boolean | undefined
}

/** The `end_user` claim of a compact JWT, read without verifying (the kit only checks what it was given). */
export function jwtEndUser(token: string): string | undefined {
  const payload = token.split('.')[1]
  if (!payload) return undefined
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown
    if (typeof claims !== 'object' || claims === null) return undefined
    const endUser = (claims as { end_user?: unknown }).end_user
    return typeof endUser === 'string' ? endUser : undefined
  } catch {
    return undefined
  }
}

/**
 * An upstream refusal as the browser should see it. A 429 stays a 429 (the browser can retry); anything
 * about the server-held key (401, 403) or the upstream itself becomes a 502: it is not the browser's fault.
 */
export function fromUpstream(err: unknown): unknown {
  if (!(err instanceof UpstreamRefusal)) return err
  if (err.status === 429) {
    return new AppKitError('TOO_MANY_REQUESTS', undefined, { errCode: err.errCode ?? 'TOO_MANY_REQUESTS' })
  }
  return new AppKitError(
    'UPSTREAM_ERROR',
    `The speech server refused the request (${err.status}${err.errCode ? ` ${err.errCode}` : ''}).`,
  )
}

function checkEndUser(identity: unknown): string {
  const endUser =
    typeof identity === 'object' && identity !== null
      ? (identity as { endUser?: unknown }).endUser
      : undefined
  if (
    typeof endUser !== 'string' ||
    endUser.length === 0 ||
    endUser.length > MAX_END_USER_LENGTH ||
    /[^\x20-\x7e]/.test(endUser)
  ) {
    // The app's bug, not the browser's: a 500 whose message names the hook, never the value.
    throw new AppKitError(
      'INTERNAL_ERROR',
      `authorize() returned an invalid end user id (1 to ${MAX_END_USER_LENGTH} printable ASCII characters).`,
    )
  }
  return endUser
}

/** Minting and revoking per-end-user credentials against the upstream. */
export function createCredentials(o: ResolvedOptions, upstream: UpstreamClient): Credentials {
  let grantsCarryEndUser: boolean | undefined

  const usageKey = async (endUser: string, ttlSeconds: number, pattern: string) =>
    upstream.createKey({
      comment: `earmark app-kit ${pattern} key for end user ${endUser}`,
      scopes: ['usage:write'],
      tags: [`${END_USER_TAG_PREFIX}${endUser}`],
      time_to_live_in_seconds: ttlSeconds,
    })

  const grantFor = async (endUser: string, ttlSeconds: number): Promise<EndUserGrant> => {
    if (grantsCarryEndUser !== false) {
      try {
        const g = await upstream.grant({ ttl_seconds: ttlSeconds, end_user: endUser })
        const carries = jwtEndUser(g.access_token) === endUser
        grantsCarryEndUser = carries
        return { token: g.access_token, expiresIn: g.expires_in, carriesEndUser: carries }
      } catch (err) {
        // `end_user` is an Earmark extension; an upstream that refuses the field (400) gets plain grants.
        if (!(err instanceof UpstreamRefusal) || err.status !== 400) throw err
        grantsCarryEndUser = false
      }
    }
    const g = await upstream.grant({ ttl_seconds: ttlSeconds })
    return { token: g.access_token, expiresIn: g.expires_in, carriesEndUser: false }
  }

  return {
    get grantsCarryEndUser() {
      return grantsCarryEndUser
    },
    async identify(request) {
      let identity: unknown
      try {
        identity = await o.authorize(request)
      } catch (err) {
        if (err instanceof AppKitError) throw err
        throw new AppKitError('INVALID_AUTH')
      }
      if (identity === null || identity === undefined) throw new AppKitError('INVALID_AUTH')
      return checkEndUser(identity)
    },

    async createKey(endUser) {
      try {
        const k = await usageKey(endUser, o.keyTtlSeconds, 'on-demand')
        return {
          key: k.key,
          api_key_id: k.api_key_id,
          expiration_date: k.expiration_date ?? null,
          end_user: endUser,
          scheme: 'token',
        }
      } catch (err) {
        throw fromUpstream(err)
      }
    },

    async deleteKey(endUser, keyId) {
      if (!KEY_ID.test(keyId)) throw new AppKitError('KEY_NOT_FOUND')
      try {
        // Only a key minted for this very end user may be deleted by them; any other key, whether it
        // exists or not, gets the same 404 (no oracle for other users' key ids).
        const key = await upstream.getKey(keyId)
        if (!key?.tags.includes(`${END_USER_TAG_PREFIX}${endUser}`)) throw new AppKitError('KEY_NOT_FOUND')
        return await upstream.deleteKey(keyId)
      } catch (err) {
        if (err instanceof UpstreamRefusal && err.status === 404) throw new AppKitError('KEY_NOT_FOUND')
        throw fromUpstream(err)
      }
    },

    async createToken(endUser, body) {
      const kind = typeof body === 'object' && body !== null ? (body as { kind?: unknown }).kind : undefined
      if (kind !== undefined && kind !== 'grant' && kind !== 'key') {
        throw new AppKitError('INVALID_FIELD', "Invalid field `kind`: must be 'grant' or 'key'.")
      }
      try {
        if (kind === 'key') {
          const k = await usageKey(endUser, o.tokenKeyTtlSeconds, 'expiring')
          const expiresAt = k.expiration_date ? Date.parse(k.expiration_date) : Number.NaN
          const expiresIn = Number.isFinite(expiresAt)
            ? Math.max(0, Math.round((expiresAt - Date.now()) / 1000))
            : o.tokenKeyTtlSeconds
          return {
            key: k.key,
            api_key_id: k.api_key_id,
            expires_in: expiresIn,
            end_user: endUser,
            scheme: 'token',
            kind: 'key',
          }
        }
        const g = await grantFor(endUser, o.grantTtlSeconds)
        return {
          access_token: g.token,
          expires_in: g.expiresIn,
          end_user: endUser,
          scheme: 'bearer',
          kind: 'grant',
        }
      } catch (err) {
        throw fromUpstream(err)
      }
    },

    grantFor,
  }
}
