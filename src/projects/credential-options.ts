import { BlockList, isIP } from 'node:net'
import type { CredentialBinding, GrantOptions, KeyOptions, ListenConstraints } from '../auth/index.js'
import { invalidField } from '../errors.js'
import { keyLimitsView, parseKeyLimits } from '../limits/index.js'
import { isListenModel } from '../listen/index.js'
import { parseKeyQuotas, quotasView } from '../quotas/quota-options.js'

/**
 * The wire forms of Earmark's credential options (docs/credential-options.md): parsing the snake_case fields
 * of `POST /v1/projects/:id/keys` and `POST /v1/auth/grant` into `KeyOptions` / `GrantOptions`, narrowing a
 * grant's options by its key's, and the views that show them. Every field is optional and strictly typed;
 * a body without any of them yields no options, so Deepgram's behaviour is unchanged.
 */

/** At most this many entries in each list (origins, addresses, models, languages). */
export const MAX_OPTION_ENTRIES = 32
/** Each entry of those lists is at most this long. */
export const MAX_OPTION_STRING = 256
/** The longest `max_session_duration_seconds` (a day). */
export const MAX_SESSION_SECONDS = 24 * 3600
/** The highest `listen.max_sample_rate` that can be set, Hz. */
export const MAX_SAMPLE_RATE_LIMIT = 384_000
/** The highest `max_uses` of a grant. */
export const MAX_USES_LIMIT = 1_000_000
/**
 * The most the options may weigh, as JSON: a token carries them in a claim, and a token must still fit in
 * an `Authorization` header or a WebSocket subprotocol (Node refuses headers over 16 KiB).
 */
export const MAX_OPTIONS_JSON = 4096

const LISTEN_FIELDS = new Set(['allowed_models', 'allowed_languages', 'max_sample_rate', 'interim_results'])

function present(v: unknown): boolean {
  return v !== undefined && v !== null
}

/** A list of distinct non-empty strings, or undefined when the field is absent. */
function stringList(value: unknown, field: string): string[] | undefined {
  if (!present(value)) return undefined
  if (
    !Array.isArray(value) ||
    !value.every((s) => typeof s === 'string' && s.length > 0 && s.length <= MAX_OPTION_STRING)
  ) {
    throw invalidField(
      field,
      `must be an array of non-empty strings of at most ${MAX_OPTION_STRING} characters`,
    )
  }
  if (value.length === 0)
    throw invalidField(field, 'must hold at least one entry (omit it for no restriction)')
  if (value.length > MAX_OPTION_ENTRIES)
    throw invalidField(field, `must hold at most ${MAX_OPTION_ENTRIES} entries`)
  return [...new Set(value as string[])]
}

function integer(value: unknown, field: string, min: number, max: number): number | undefined {
  if (!present(value)) return undefined
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalidField(field, `must be an integer from ${min} to ${max}`)
  }
  return value
}

/**
 * An origin as browsers send it (`https://app.example.com`, `http://localhost:5173`): scheme, host and
 * optional port, nothing else. A trailing slash is tolerated; the stored form is the serialised origin.
 */
function parseOrigin(entry: string, field: string): string {
  let url: URL
  try {
    url = new URL(entry)
  } catch {
    throw invalidField(field, 'must hold origins like `https://app.example.com`')
  }
  if (
    (url.protocol !== 'https:' && url.protocol !== 'http:') ||
    url.username !== '' ||
    url.password !== '' ||
    url.pathname !== '/' ||
    url.search !== '' ||
    url.hash !== '' ||
    !/^https?:\/\/[^/?#]+\/?$/i.test(entry)
  ) {
    throw invalidField(
      field,
      'must hold origins (scheme, host and optional port; no path) like `https://app.example.com`',
    )
  }
  return url.origin
}

/** One `allowed_ips` entry: an address or a CIDR range, IPv4 or IPv6. */
export interface IpRange {
  address: string
  prefix: number
  family: 'ipv4' | 'ipv6'
}

/** Parses `10.0.0.0/8`, `::1`, `2001:db8::/32`; undefined when it is none of those. */
export function parseIpRange(entry: string): IpRange | undefined {
  const slash = entry.indexOf('/')
  const address = slash < 0 ? entry : entry.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const family = version === 4 ? 'ipv4' : 'ipv6'
  const bits = version === 4 ? 32 : 128
  if (slash < 0) return { address, prefix: bits, family }
  const text = entry.slice(slash + 1)
  if (!/^\d{1,3}$/.test(text)) return undefined
  const prefix = Number(text)
  if (prefix > bits) return undefined
  return { address, prefix, family }
}

function ipList(value: unknown, field: string): string[] | undefined {
  const list = stringList(value, field)
  if (!list) return undefined
  for (const entry of list) {
    if (!parseIpRange(entry)) {
      throw invalidField(
        field,
        'must hold IPv4 or IPv6 addresses or CIDR ranges like `10.0.0.0/8` or `2001:db8::/32`',
      )
    }
  }
  return list
}

function parseListen(value: unknown, field: string): ListenConstraints | undefined {
  if (!present(value)) return undefined
  if (typeof value !== 'object' || Array.isArray(value)) throw invalidField(field, 'must be an object')
  const body = value as Record<string, unknown>
  const unknown = Object.keys(body).find((k) => !LISTEN_FIELDS.has(k))
  if (unknown !== undefined) {
    // A plain field name is named; anything else the client sent is not repeated.
    throw invalidField(
      /^[a-z_]{1,64}$/.test(unknown) ? `${field}.${unknown}` : field,
      `holds a field that is not a listen constraint (known: ${[...LISTEN_FIELDS].join(', ')})`,
    )
  }
  const out: ListenConstraints = {}
  // Stored lower case: `/v1/listen` compares models and languages case-insensitively.
  const models = stringList(body.allowed_models, `${field}.allowed_models`)
  if (models) {
    const unknownModel = models.find((m) => !isListenModel(m))
    if (unknownModel !== undefined) {
      throw invalidField(
        `${field}.allowed_models`,
        'must name models `/v1/listen` serves (docs/deepgram-compat.md §6)',
      )
    }
    out.allowedModels = [...new Set(models.map((m) => m.toLowerCase()))]
  }
  const languages = stringList(body.allowed_languages, `${field}.allowed_languages`)
  if (languages) out.allowedLanguages = [...new Set(languages.map((l) => l.toLowerCase()))]
  const rate = integer(body.max_sample_rate, `${field}.max_sample_rate`, 1, MAX_SAMPLE_RATE_LIMIT)
  if (rate !== undefined) out.maxSampleRate = rate
  const interim = body.interim_results
  if (present(interim)) {
    if (typeof interim !== 'boolean') throw invalidField(`${field}.interim_results`, 'must be a boolean')
    out.interimResults = interim
  }
  return Object.keys(out).length > 0 ? out : undefined
}

/** The binding fields shared by keys and grants; only the fields that are set. */
function parseBinding(body: Record<string, unknown>): CredentialBinding {
  const out: CredentialBinding = {}
  const origins = stringList(body.allowed_origins, 'allowed_origins')
  if (origins) out.allowedOrigins = [...new Set(origins.map((o) => parseOrigin(o, 'allowed_origins')))]
  const ips = ipList(body.allowed_ips, 'allowed_ips')
  if (ips) out.allowedIps = ips
  const session = integer(
    body.max_session_duration_seconds,
    'max_session_duration_seconds',
    1,
    MAX_SESSION_SECONDS,
  )
  if (session !== undefined) out.maxSessionSeconds = session
  const listen = parseListen(body.listen, 'listen')
  if (listen) out.listen = listen
  // Most bodies (every Deepgram-shaped one) set nothing: nothing to weigh.
  if (!isEmptyOptions(out)) checkOptionsSize(out)
  return out
}

/**
 * The Earmark options of a create-key body (docs/credential-options.md). `max_uses` is a grant's alone; a
 * key that asks for it is refused rather than silently unlimited.
 */
export function parseKeyOptions(body: Record<string, unknown>): KeyOptions {
  if (present(body.max_uses)) throw invalidField('max_uses', 'applies to grant tokens only, not to keys')
  const options: KeyOptions = parseBinding(body)
  const limits = parseKeyLimits(body.limits) // docs/limits.md, "Per key"
  if (limits) options.limits = limits
  const quotas = parseKeyQuotas(body.quotas) // docs/quotas.md, "Where quotas are set"
  if (quotas) options.quotas = quotas
  return options
}

/** The Earmark options of a grant body, before narrowing by the key's; empty when none is set. */
export function parseGrantOptions(body: Record<string, unknown>): GrantOptions {
  const options: GrantOptions = parseBinding(body)
  const uses = integer(body.max_uses, 'max_uses', 1, MAX_USES_LIMIT)
  if (uses !== undefined) options.maxUses = uses
  return options
}

/** True when `inner` lies wholly inside `outer` (CIDR blocks are nested or disjoint). */
function rangeWithin(inner: IpRange, outer: IpRange): boolean {
  if (inner.family !== outer.family || inner.prefix < outer.prefix) return false
  const list = new BlockList()
  list.addSubnet(outer.address, outer.prefix, outer.family)
  return list.check(inner.address, inner.family)
}

function narrowList(
  key: string[] | undefined,
  asked: string[] | undefined,
  field: string,
  within: (entry: string, allowed: string[]) => boolean = (e, allowed) => allowed.includes(e),
): string[] | undefined {
  if (!key) return asked
  if (!asked) return key
  // Named by position, not quoted: an error message never repeats what the client sent.
  const wider = asked.findIndex((e) => !within(e, key))
  if (wider >= 0) {
    throw invalidField(field, `entry ${wider + 1} is outside what the key that mints it allows`)
  }
  return asked
}

function narrowMax(key: number | undefined, asked: number | undefined, field: string): number | undefined {
  if (key === undefined) return asked
  if (asked === undefined) return key
  if (asked > key) throw invalidField(field, `cannot exceed the key's ${key}`)
  return asked
}

function narrowListen(key: ListenConstraints | undefined, asked: ListenConstraints | undefined) {
  if (!key) return asked
  if (!asked) return key
  const out: ListenConstraints = {}
  const models = narrowList(key.allowedModels, asked.allowedModels, 'listen.allowed_models')
  if (models) out.allowedModels = models
  const languages = narrowList(key.allowedLanguages, asked.allowedLanguages, 'listen.allowed_languages')
  if (languages) out.allowedLanguages = languages
  const rate = narrowMax(key.maxSampleRate, asked.maxSampleRate, 'listen.max_sample_rate')
  if (rate !== undefined) out.maxSampleRate = rate
  if (key.interimResults === false && asked.interimResults === true) {
    throw invalidField(
      'listen.interim_results',
      'cannot be true: the key that mints it forbids interim results',
    )
  }
  const interim = key.interimResults === false ? false : asked.interimResults
  if (interim !== undefined) out.interimResults = interim
  return out
}

/**
 * A grant's effective options: what it asked for, within its key's binding. The token inherits every
 * binding of its key and may only narrow it; asking for anything wider is a 400 naming the field.
 */
export function narrowGrantOptions(key: KeyOptions, asked: GrantOptions): GrantOptions {
  const out: GrantOptions = {}
  const origins = narrowList(key.allowedOrigins, asked.allowedOrigins, 'allowed_origins')
  if (origins) out.allowedOrigins = origins
  const ips = narrowList(key.allowedIps, asked.allowedIps, 'allowed_ips', (entry, allowed) => {
    const inner = parseIpRange(entry)
    return (
      inner !== undefined &&
      allowed.some((a) => {
        const outer = parseIpRange(a)
        return outer !== undefined && rangeWithin(inner, outer)
      })
    )
  })
  if (ips) out.allowedIps = ips
  const session = narrowMax(key.maxSessionSeconds, asked.maxSessionSeconds, 'max_session_duration_seconds')
  if (session !== undefined) out.maxSessionSeconds = session
  const listen = narrowListen(key.listen, asked.listen)
  if (listen && Object.keys(listen).length > 0) out.listen = listen
  if (asked.maxUses !== undefined) out.maxUses = asked.maxUses
  return out
}

/**
 * Refuses options too large to carry in a token ({@link MAX_OPTIONS_JSON}), naming the list that weighs most:
 * a key's binding must leave room for the tokens that inherit it.
 */
export function checkOptionsSize(options: GrantOptions): void {
  const view = bindingView(options)
  const size = JSON.stringify(view).length
  if (size <= MAX_OPTIONS_JSON) return
  const lists: [string, unknown][] = [
    ['allowed_origins', options.allowedOrigins],
    ['allowed_ips', options.allowedIps],
    ['listen.allowed_models', options.listen?.allowedModels],
    ['listen.allowed_languages', options.listen?.allowedLanguages],
  ]
  let field = 'allowed_origins'
  let most = -1
  for (const [name, list] of lists) {
    const weight = list === undefined ? 0 : JSON.stringify(list).length
    if (weight > most) [field, most] = [name, weight]
  }
  throw invalidField(
    field,
    `the options take ${size} bytes as JSON, and at most ${MAX_OPTIONS_JSON} fit in a token; bind fewer or shorter entries`,
  )
}

/**
 * A new key's options when `parent` creates it through the API: like a grant, the new key inherits its
 * creator's binding and may only narrow it (a bound key must not mint an unbound one to escape its
 * binding); its other options (limits, quotas) are its own.
 */
export function narrowKeyOptions(parent: KeyOptions, asked: KeyOptions): KeyOptions {
  const { allowedOrigins, allowedIps, maxSessionSeconds, listen, ...rest } = asked
  const binding = narrowGrantOptions(parent, { allowedOrigins, allowedIps, maxSessionSeconds, listen })
  return { ...rest, ...binding }
}

/** True when `options` sets nothing (a credential that behaves exactly as Deepgram's). */
export function isEmptyOptions(options: object): boolean {
  return Object.values(options).every((v) => v === undefined)
}

/**
 * The snake_case view of a credential's binding (and `max_uses`), with only the fields that are set: shown
 * in `GET /v1/auth/token` and the key views. `limits` and `quotas` are shown by their own views.
 */
export function bindingView(options: GrantOptions) {
  const view: Record<string, unknown> = {}
  if (options.allowedOrigins) view.allowed_origins = options.allowedOrigins
  if (options.allowedIps) view.allowed_ips = options.allowedIps
  if (options.maxSessionSeconds !== undefined) view.max_session_duration_seconds = options.maxSessionSeconds
  if (options.maxUses !== undefined) view.max_uses = options.maxUses
  const l = options.listen
  if (l) {
    const listen: Record<string, unknown> = {}
    if (l.allowedModels) listen.allowed_models = l.allowedModels
    if (l.allowedLanguages) listen.allowed_languages = l.allowedLanguages
    if (l.maxSampleRate !== undefined) listen.max_sample_rate = l.maxSampleRate
    if (l.interimResults !== undefined) listen.interim_results = l.interimResults
    if (Object.keys(listen).length > 0) view.listen = listen
  }
  return view
}

/**
 * The snake_case view of everything a key carries beyond Deepgram's fields (binding, listen constraints,
 * limits, quotas), only what is set: a key without options shows Deepgram's shape unchanged.
 */
export function keyOptionsView(options: KeyOptions): Record<string, unknown> {
  const view = bindingView(options)
  const limits = keyLimitsView(options.limits)
  if (Object.keys(limits).length > 0) view.limits = limits
  const quotas = quotasView(options.quotas)
  if (Object.keys(quotas).length > 0) view.quotas = quotas
  return view
}
