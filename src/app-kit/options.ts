import type { IncomingMessage } from 'node:http'

/** Who the end user behind a request is, as the app's `authorize` hook says. */
export interface EndUserIdentity {
  /** The app's own id for the end user (1 to 119 printable characters): carried into every credential. */
  endUser: string
}

/** How the app kit reaches the speech server, who the end user is, and how long credentials live. */
export interface AppKitOptions {
  /** The Deepgram-compatible speech server (Earmark, or Deepgram's hosted API) and the server-held key. */
  upstream: {
    /** Base URL, e.g. `http://127.0.0.1:8080` or `https://api.deepgram.com` (WebSocket URL derived from it). */
    url: string
    /** Server-held key: needs `keys:write` for pattern 1 and the member role or higher for grants. */
    apiKey: string
    /** The project keys are created in; found via `GET /v1/projects` (the first one) when omitted. */
    projectId?: string
  }
  /**
   * Who the end user is, or `null` (or a throw) to refuse with 401; throw `AppKitError('FORBIDDEN')` for a 403.
   * Called for every route, the WebSocket upgrade included. Check `Origin` here when the app authenticates
   * by cookie (see docs/app-kit.md, security notes).
   */
  authorize(request: IncomingMessage): Promise<EndUserIdentity | null> | EndUserIdentity | null
  /** Where the routes live (default `/earmark`). The Fastify plugin uses its registration prefix instead. */
  prefix?: string
  /** Pattern-1 keys also expire as a safety net, seconds; default 3600. */
  keyTtlSeconds?: number
  /** Pattern-2 `key` kind lifetime, seconds; default 10. */
  tokenKeyTtlSeconds?: number
  /** Pattern-2 grant lifetime, seconds (1..3600); default 30. Also the lifetime of the proxy's per-stream grant. */
  grantTtlSeconds?: number
  /** Pattern-3 proxy limits. */
  proxy?: {
    /**
     * Outgoing bytes buffered per direction before the other side stops being read; default 1 MiB. Also the
     * largest single frame accepted from either side (a larger one closes the stream with 1009).
     */
    maxBufferedBytes?: number
  }
}

/** The options with defaults applied and checked once. */
export interface ResolvedOptions {
  upstreamUrl: URL
  apiKey: string
  projectId: string | undefined
  authorize: AppKitOptions['authorize']
  prefix: string
  keyTtlSeconds: number
  tokenKeyTtlSeconds: number
  grantTtlSeconds: number
  maxBufferedBytes: number
}

const MAX_KEY_TTL = 10 * 365 * 24 * 3600

function positiveInt(name: string, value: number | undefined, fallback: number, max: number): number {
  const n = value ?? fallback
  if (!Number.isInteger(n) || n < 1 || n > max) {
    throw new TypeError(`app-kit: ${name} must be an integer from 1 to ${max}`)
  }
  return n
}

/** Normalises a route prefix: leading slash, no trailing slash; `''` for the root. */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/\/+$/, '')
  if (trimmed === '') return ''
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`
}

/** Validates the options once (a misconfiguration throws at start, not at the first request). */
export function resolveOptions(o: AppKitOptions): ResolvedOptions {
  if (typeof o.authorize !== 'function') throw new TypeError('app-kit: authorize must be a function')
  if (!o.upstream || typeof o.upstream.apiKey !== 'string' || o.upstream.apiKey.length === 0) {
    throw new TypeError('app-kit: upstream.apiKey is required')
  }
  let upstreamUrl: URL
  try {
    upstreamUrl = new URL(o.upstream.url)
  } catch {
    throw new TypeError('app-kit: upstream.url must be an absolute URL')
  }
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(upstreamUrl.protocol)) {
    throw new TypeError('app-kit: upstream.url must be http(s) or ws(s)')
  }
  return {
    upstreamUrl,
    apiKey: o.upstream.apiKey,
    projectId: o.upstream.projectId,
    authorize: o.authorize,
    prefix: normalizePrefix(o.prefix ?? '/earmark'),
    keyTtlSeconds: positiveInt('keyTtlSeconds', o.keyTtlSeconds, 3600, MAX_KEY_TTL),
    tokenKeyTtlSeconds: positiveInt('tokenKeyTtlSeconds', o.tokenKeyTtlSeconds, 10, MAX_KEY_TTL),
    grantTtlSeconds: positiveInt('grantTtlSeconds', o.grantTtlSeconds, 30, 3600),
    maxBufferedBytes: positiveInt(
      'proxy.maxBufferedBytes',
      o.proxy?.maxBufferedBytes,
      1024 * 1024,
      256 * 1024 * 1024,
    ),
  }
}
