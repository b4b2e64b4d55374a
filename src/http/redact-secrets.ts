/**
 * Secrets never reach a log line (house rule): these find what a key or a grant token looks like in text
 * a client controls (a URL path, an error message that quotes input) and replace it.
 */
export const REDACTED = '[redacted]'

/** An Earmark key (`emk_` + hex) or anything a client pasted that starts the same way, in any case. */
const KEY = /emk_[A-Za-z0-9_\-.~+/=%]*/gi
/** A JWT: three base64url parts, the first a JSON header (`{"` is `eyJ`). */
const JWT = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.?[A-Za-z0-9_-]*/g
/** Any other long run of token characters: a Deepgram key (40 hex), a bearer token, a password. */
const LONG_SECRET = /[A-Za-z0-9_\-+/=~.]{32,}/g
/** A segment of 20+ characters, or a key or JWT prefix: what a path must contain to need a closer look. */
const MAYBE_SECRET = /[^/]{20}|emk_|emk%5f|eyJ/i
/** Earmark's own ids (projects, members, keys, requests) are UUIDs: 36 characters, kept. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** `text` with every key- or JWT-shaped run replaced by `[redacted]`. Cheap when there is none. */
export function redactSecrets(text: string): string {
  if (!/emk_|eyJ/i.test(text)) return text
  return text.replace(KEY, REDACTED).replace(JWT, REDACTED)
}

/**
 * A request path fit for the access log: no query string, and every segment that holds anything shaped
 * like a key, a JWT or another long secret (percent-encoded or not) replaced by `[redacted]`. UUIDs stay.
 */
export function redactPath(url: string): string {
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  // Most paths have no segment long enough to hide a secret: no per-segment work for them.
  if (!MAYBE_SECRET.test(path)) return path
  return path
    .split('/')
    .map((segment) => (looksSecret(segment) ? REDACTED : segment))
    .join('/')
}

function looksSecret(segment: string): boolean {
  if (segment.length < 4 || UUID.test(segment)) return false
  let text = segment
  if (segment.includes('%')) {
    try {
      text = decodeURIComponent(segment)
    } catch {
      // a malformed escape: judge the raw text
    }
  }
  if (/emk_|eyJ/i.test(text)) return true
  if (text.length < 32) return false
  return (text.match(LONG_SECRET) ?? []).some((run) => !UUID.test(run))
}
