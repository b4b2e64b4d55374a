import { fetchJson } from './log.js'

/** 1: on-demand key, 2: auto-expiring grant token or key, 3: the app server proxies the stream. */
export type Pattern = 'key' | 'token' | 'proxy'
/** What pattern 2 asks for. */
export type TokenKind = 'grant' | 'key'

/** A credential the browser holds for one stream (patterns 1 and 2). */
export interface Credential {
  /** The subprotocol scheme: `token` (an API key) or `bearer` (a grant JWT). */
  scheme: 'token' | 'bearer'
  secret: string
  /** When it stops opening streams (epoch ms). */
  expiresAt: number
  /** What it is, for the page. */
  label: string
  /** A key's id: pattern 1 deletes it at Stop. */
  apiKeyId?: string
}

interface KeyResponse {
  key: string
  api_key_id: string
  expiration_date: string
  end_user: string
  scheme: 'token'
}

type TokenResponse =
  | { kind: 'grant'; access_token: string; expires_in: number; end_user: string; scheme: 'bearer' }
  | { kind: 'key'; key: string; api_key_id: string; expires_in: number; end_user: string; scheme: 'token' }

const JSON_POST = { method: 'POST', headers: { 'content-type': 'application/json' } } as const

/** Pattern 1: `POST {prefix}/key`, a `usage:write` key made for this user, deleted again at Stop. */
export async function onDemandKey(prefix: string): Promise<Credential> {
  const body = await fetchJson<KeyResponse>(`${prefix}/key`, { ...JSON_POST, body: '{}' })
  return {
    scheme: 'token',
    secret: body.key,
    expiresAt: Date.parse(body.expiration_date),
    label: `usage:write key ${body.api_key_id.slice(0, 8)}… for ${body.end_user}`,
    apiKeyId: body.api_key_id,
  }
}

/** Pattern 2: `POST {prefix}/token`, a credential that lapses on its own after `expires_in` seconds. */
export async function autoExpiring(prefix: string, kind: TokenKind): Promise<Credential> {
  const receivedAt = Date.now()
  const body = await fetchJson<TokenResponse>(`${prefix}/token`, {
    ...JSON_POST,
    body: JSON.stringify({ kind }),
  })
  const expiresAt = receivedAt + body.expires_in * 1000
  if (body.kind === 'grant') {
    return {
      scheme: 'bearer',
      secret: body.access_token,
      expiresAt,
      label: `grant token (bearer) for ${body.end_user}`,
    }
  }
  return {
    scheme: 'token',
    secret: body.key,
    expiresAt,
    label: `short-lived key ${body.api_key_id.slice(0, 8)}… for ${body.end_user}`,
  }
}

/** Pattern 1 at Stop: `DELETE {prefix}/key/:id`. */
export async function deleteKey(prefix: string, apiKeyId: string): Promise<void> {
  await fetchJson(`${prefix}/key/${encodeURIComponent(apiKeyId)}`, { method: 'DELETE' })
}
