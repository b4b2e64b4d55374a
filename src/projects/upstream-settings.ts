import type { ProjectSettings, ProjectUpstream } from '../auth/index.js'
import { invalidField } from '../errors.js'
import type { Services } from './context.js'

/**
 * What a server allows of per-project upstreams (docs/gateway.md "Per project"): the hosts a project may relay
 * to, and the box that seals their keys for the store. Absent from `Services`: per-project upstreams are off.
 */
export interface UpstreamPolicy {
  /** `host` or `host:port`, lower case: a project's upstream URL must name one (no other host is reached). */
  allowedHosts: readonly string[]
  seal(key: string): string
}

const FIELDS = new Set(['url', 'key', 'scheme', 'models'])
const MODEL_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}\*?$/
const MAX_MODELS = 32
const MAX_KEY = 4096

function field(name: string, message: string) {
  return invalidField(`upstream.${name}`, message)
}

/** The URL of a project's upstream, checked against the server's allowed hosts. */
function upstreamUrl(value: unknown, policy: UpstreamPolicy): string {
  if (typeof value !== 'string' || value.length > 2048) throw field('url', 'must be a URL')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw field('url', 'must be a URL')
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol))
    throw field('url', 'must be http(s) or ws(s)')
  if (url.username || url.password || url.search || url.hash)
    throw field('url', 'must not hold credentials, a query or a fragment')
  const host = url.host.toLowerCase()
  if (!policy.allowedHosts.includes(host) && !policy.allowedHosts.includes(url.hostname.toLowerCase()))
    throw field('url', 'names a host this server does not relay to (EARMARK_UPSTREAM_ALLOWED_HOSTS)')
  return url.href.replace(/\/+$/, '')
}

function models(value: unknown): string[] {
  if (value === undefined) return []
  if (!Array.isArray(value) || value.length > MAX_MODELS)
    throw field('models', `must be a list of at most ${MAX_MODELS} model names or patterns`)
  return value.map((m) => {
    const model = typeof m === 'string' ? m.trim().toLowerCase() : ''
    if (!MODEL_PATTERN.test(model))
      throw field('models', "must be model names, each optionally ending in '*' (e.g. nova-*)")
    return model
  })
}

/** A PATCH's `upstream`: an object to set or change, `null` to remove. */
function parseUpstream(
  value: unknown,
  old: ProjectUpstream | undefined,
  services: Services,
): ProjectUpstream | undefined {
  if (value === null) return undefined
  const policy = services.upstreams
  if (!policy) {
    throw invalidField(
      'upstream',
      'per-project upstreams are not enabled on this server (EARMARK_UPSTREAM_ALLOWED_HOSTS)',
    )
  }
  if (typeof value !== 'object' || Array.isArray(value))
    throw invalidField('upstream', 'must be an object or null')
  const body = value as Record<string, unknown>
  for (const name of Object.keys(body)) {
    if (!FIELDS.has(name)) throw field(name, 'is not an upstream field (url, key, scheme, models)')
  }
  const url = body.url === undefined && old ? old.url : upstreamUrl(body.url, policy)
  let sealedKey: string
  if (body.key === undefined) {
    // A key never follows its URL to another host: a new URL needs its key again.
    if (!old || old.url !== url) throw field('key', 'is required with a new upstream URL')
    sealedKey = old.sealedKey
  } else {
    const key = body.key
    if (
      typeof key !== 'string' ||
      key.length === 0 ||
      key.length > MAX_KEY ||
      ![...key].every((c) => c > ' ' && c !== '\u007f')
    )
      throw field('key', `must be a printable string of at most ${MAX_KEY} characters`)
    sealedKey = policy.seal(key)
  }
  const scheme = body.scheme ?? old?.scheme ?? 'token'
  if (scheme !== 'token' && scheme !== 'bearer') throw field('scheme', "must be 'token' or 'bearer'")
  return {
    url,
    sealedKey,
    scheme,
    models: body.models === undefined ? (old?.models ?? []) : models(body.models),
  }
}

/**
 * The `upstream` section of `/v1/projects/:id/settings`: the project's own Deepgram-compatible service and key
 * (docs/gateway.md "Per project"). The key is write-only: stored sealed, shown only as `key_set`.
 */
export const upstreamSettingsSection = {
  apply(settings: ProjectSettings, value: unknown, services: Services): ProjectSettings {
    const { upstream: old, ...rest } = settings
    const upstream = parseUpstream(value, old, services)
    return upstream ? { ...rest, upstream } : rest
  },
  view(settings: ProjectSettings): Record<string, unknown> {
    const u = settings.upstream
    return u ? { url: u.url, scheme: u.scheme, models: u.models, key_set: true } : {}
  },
}
