/**
 * Earmark's app kit: what an app server mounts so a browser never holds a long-lived speech key
 * (docs/app-kit.md). Pattern 1, on-demand keys; pattern 2, expiring credentials; pattern 3, a WebSocket proxy.
 */
export { type AppKit, createAppKit } from './app-kit.js'
export type { KeyCredential, TokenCredential } from './credentials.js'
export { END_USER_TAG_PREFIX, MAX_END_USER_LENGTH } from './credentials.js'
export { APP_KIT_ERRORS, AppKitError, type AppKitErrorCode } from './errors.js'
export { type EarmarkAppKitPluginOptions, earmarkAppKit } from './fastify-plugin.js'
export type { ProxyStats } from './listen-proxy.js'
export type { AppKitOptions, EndUserIdentity } from './options.js'
