export { type AppOptions, createApp } from './app.js'
export { REDACTED, redactPath, redactSecrets } from './redact-secrets.js'
export { createProxyTrust, type ProxyTrust } from './trusted-proxies.js'
