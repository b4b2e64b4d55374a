import { BlockList, isIPv4 } from 'node:net'
import type { CredentialBinding, GrantOptions, Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { AccessRequest, AccessStage } from './access-gate.js'
import type { JtiLedger } from './jti-ledger.js'

/**
 * The binding a request is held to (docs/credential-options.md): a grant token's own options (narrowed from
 * its key's when it was minted, so they already hold the key's), else the key's. Undefined: no binding.
 */
export function credentialBinding(principal: Principal): (CredentialBinding & GrantOptions) | undefined {
  return principal.grant ? principal.grant.options : principal.keyRecord.options
}

/**
 * How a live stream is closed when its credential's `max_session_duration_seconds` is reached: 1008 with
 * `AUTH-0003`, next to revocation's `AUTH-0001`/`AUTH-0002` (docs/revocation.md).
 */
export const SESSION_LIMIT_CLOSE = { code: 1008, reason: 'AUTH-0003' } as const

/** The longest a live stream of `principal` may run, ms; undefined for no limit. */
export function maxSessionMs(principal: Principal): number | undefined {
  const seconds = credentialBinding(principal)?.maxSessionSeconds
  return seconds === undefined ? undefined : seconds * 1000
}

/** Compiled `allowed_ips` lists, by the list itself (a cached principal keeps the same array). */
const compiled = new WeakMap<readonly string[], BlockList>()

function blockListOf(entries: readonly string[]): BlockList {
  let list = compiled.get(entries)
  if (!list) {
    list = new BlockList()
    for (const entry of entries) {
      const slash = entry.indexOf('/')
      const address = slash < 0 ? entry : entry.slice(0, slash)
      const family = isIPv4(address) ? 'ipv4' : 'ipv6'
      const prefix = slash < 0 ? (family === 'ipv4' ? 32 : 128) : Number(entry.slice(slash + 1))
      list.addSubnet(address, prefix, family)
    }
    compiled.set(entries, list)
  }
  return list
}

/** True when `ip` (IPv4, IPv6, or IPv4-mapped IPv6 as Node reports it) falls in one of `entries`. */
export function ipAllowed(ip: string, entries: readonly string[]): boolean {
  if (ip === '') return false
  try {
    return blockListOf(entries).check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6')
  } catch {
    return false
  }
}

/**
 * Refuses a request whose origin or address the credential is not bound to, 403 `FORBIDDEN`. A key's binding
 * holds on every route it calls; a grant token's on the usage APIs (introspecting a token from a server, with
 * no `Origin`, stays possible). With origins bound, a request without `Origin` is refused: browsers always
 * send it on upgrades and cross-origin requests, so its absence means a client that is not a browser page.
 * The messages never echo what the client sent.
 */
export function checkBinding(principal: Principal, request: AccessRequest): void {
  if (principal.grant && request.kind !== 'usage') return
  const binding = credentialBinding(principal)
  if (!binding) return
  const origins = binding.allowedOrigins
  if (origins) {
    if (request.origin === undefined) {
      throw new ApiError(
        'FORBIDDEN',
        'This credential is bound to browser origins, and the request has no Origin header.',
      )
    }
    if (!origins.includes(request.origin)) {
      throw new ApiError('FORBIDDEN', "The request's Origin is not one this credential is bound to.")
    }
  }
  const ips = binding.allowedIps
  if (ips && !ipAllowed(request.ip, ips)) {
    throw new ApiError('FORBIDDEN', "The client's address is not one this credential is bound to.")
  }
}

/** The access stage of `allowed_origins` and `allowed_ips`: cheap and synchronous, so early in the list. */
export function createBindingStage(): AccessStage {
  return { name: 'binding', admit: checkBinding }
}

export interface RedeemStageOptions {
  ledger: JtiLedger
}

function usedUp(): ApiError {
  return new ApiError('INVALID_AUTH', 'Invalid credentials: this grant token has no uses left.')
}

/**
 * The access stage of `max_uses`: each use of a limited grant token on a usage API redeems one use from the
 * ledger, by `jti`; a token with none left is refused 401 `INVALID_AUTH`. It belongs last among the stages:
 * a use is spent only by a request every other check admitted (a rate-limited retry does not burn one).
 */
export function createRedeemStage(options: RedeemStageOptions): AccessStage {
  const { ledger } = options
  return {
    name: 'redeem',
    admit(principal, request) {
      if (request.kind !== 'usage') return
      const grant = principal.grant
      const maxUses = grant?.options?.maxUses
      if (!grant || maxUses === undefined) return
      const ok = ledger.redeem(grant.jti, maxUses, grant.exp * 1000, grant.iat * 1000)
      if (typeof ok === 'boolean') {
        if (!ok) throw usedUp()
        return
      }
      return ok.then((redeemed) => {
        if (!redeemed) throw usedUp()
      })
    },
  }
}
