import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { type Credentials, createCredentials } from './credentials.js'
import { createHttpHandler } from './http-handler.js'
import { createListenProxy, type ProxyStats } from './listen-proxy.js'
import { type AppKitOptions, type ResolvedOptions, resolveOptions } from './options.js'
import { createUpstreamClient } from './upstream-client.js'

/**
 * The app-side module: credential routes (patterns 1 and 2) and the WebSocket proxy (pattern 3), all relative
 * to the prefix (default `/earmark`). Mount it on any Node HTTP server; see {@link earmarkAppKit} for Fastify.
 */
export interface AppKit {
  /**
   * Node `request` handler for `POST {prefix}/key`, `DELETE {prefix}/key/:id` and `POST {prefix}/token`
   * (and a 426 for a plain `GET {prefix}/listen`). Resolves true when it answered, false when the path is
   * not under the prefix (or the request is a CORS preflight), so the app's own routing can go on.
   */
  handleRequest(req: IncomingMessage, res: ServerResponse): Promise<boolean>
  /** Node `upgrade` handler for `GET {prefix}/listen`; returns true when the path was its own. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean
  /** Closes every proxied stream (1001 to both sides) and waits until they are gone. */
  close(): Promise<void>
  /** Live proxy figures, for tests and monitoring. */
  readonly stats: ProxyStats
}

/** What the Fastify plugin needs beyond the public surface. */
export interface AppKitInternals {
  kit: AppKit
  credentials: Credentials
  options: ResolvedOptions
}

/** Builds the kit and the shared credential operations (the Fastify plugin routes through the latter). */
export function createAppKitInternals(options: AppKitOptions): AppKitInternals {
  const resolved = resolveOptions(options)
  const upstream = createUpstreamClient({
    url: resolved.upstreamUrl,
    apiKey: resolved.apiKey,
    ...(resolved.projectId ? { projectId: resolved.projectId } : {}),
  })
  const credentials = createCredentials(resolved, upstream)
  const proxy = createListenProxy({
    path: `${resolved.prefix}/listen`,
    credentials,
    upstream,
    apiKey: resolved.apiKey,
    grantTtlSeconds: resolved.grantTtlSeconds,
    maxBufferedBytes: resolved.maxBufferedBytes,
  })
  const kit: AppKit = {
    handleRequest: createHttpHandler(resolved.prefix, credentials),
    handleUpgrade: (req, socket, head) => proxy.handleUpgrade(req, socket, head),
    close: () => proxy.close(),
    stats: proxy.stats,
  }
  return { kit, credentials, options: resolved }
}

/**
 * Creates the app kit. Options are checked here (a bad one throws a TypeError at start).
 *
 * @example
 * const kit = createAppKit({ upstream: { url, apiKey }, authorize: (req) => sessionUser(req) })
 * const server = http.createServer(async (req, res) => {
 *   if (await kit.handleRequest(req, res)) return
 *   // …the app's own routes
 * })
 * server.on('upgrade', (req, socket, head) => {
 *   if (!kit.handleUpgrade(req, socket, head)) socket.destroy()
 * })
 */
export function createAppKit(options: AppKitOptions): AppKit {
  return createAppKitInternals(options).kit
}
