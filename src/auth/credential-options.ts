/**
 * Earmark's extensions to credentials (docs/credential-options.md): what a key or a grant token may be bound
 * to and limited by, beyond Deepgram's scopes and expiry. Every field is optional; a credential without any
 * behaves exactly as Deepgram's does. The wire names are snake_case; these are the parsed forms.
 */

/** Constraints on the listen options a credential may ask for; the server enforces them whatever the client asks. */
export interface ListenConstraints {
  /** Models the credential may use (`model`); absent means any. */
  allowedModels?: string[]
  /** Languages the credential may ask for (`language`); absent means any. */
  allowedLanguages?: string[]
  /** The highest `sample_rate` it may declare, Hz. */
  maxSampleRate?: number
  /** False: the credential may not ask for interim results. */
  interimResults?: boolean
}

/** Where a credential may be used from, and for how long a stream may run. */
export interface CredentialBinding {
  /** Exact origins (`https://app.example.com`) a browser request or upgrade must come from. */
  allowedOrigins?: string[]
  /** Client addresses or CIDR ranges (IPv4 or IPv6) the request must come from. */
  allowedIps?: string[]
  /** A live stream opened with the credential is closed after this many seconds. */
  maxSessionSeconds?: number
  listen?: ListenConstraints
}

/** Per-key rate and concurrency limits; unset fields fall back to the project's, then the server's. */
export interface KeyLimits {
  /** Authenticated requests per minute by this key (its grant tokens included). */
  requestsPerMinute?: number
  /** Grant tokens minted by this key per minute. */
  grantsPerMinute?: number
  /** Live streams and pre-recorded requests this key (its tokens included) may hold at once. */
  concurrentStreams?: number
}

/** Audio-second quotas of a key, and of each end user of the key. */
export interface KeyQuotas {
  audioSecondsPerDay?: number
  audioSecondsPerMonth?: number
  endUserAudioSecondsPerDay?: number
  endUserAudioSecondsPerMonth?: number
}

/** What a key carries beyond Deepgram's fields: stored with it, fixed at creation. */
export interface KeyOptions extends CredentialBinding {
  limits?: KeyLimits
  quotas?: KeyQuotas
}

/** What a grant token carries beyond Deepgram's claims: its binding, narrowed by its parent key's, and its use count. */
export interface GrantOptions extends CredentialBinding {
  /** How many requests or streams the token may open; 1 is single use. Absent: unlimited until it expires. */
  maxUses?: number
}

/** Project-wide settings (`/v1/projects/:id/settings`): defaults for every key of the project. */
export interface ProjectSettings {
  limits?: {
    /** Default per-key request rate. */
    requestsPerMinute?: number
    /** The whole project's request rate. */
    projectRequestsPerMinute?: number
    grantsPerMinute?: number
    concurrentStreamsPerKey?: number
    concurrentStreamsPerEndUser?: number
    concurrentStreamsPerProject?: number
  }
  quotas?: KeyQuotas
  /** Suspicious-activity thresholds and whether a key that trips one is disabled. */
  suspiciousActivity?: Record<string, number | boolean>
  /** The project's own upstream service for `/v1/listen` (docs/gateway.md "Per project"). */
  upstream?: ProjectUpstream
}

/** A project's upstream: its URL, its key sealed by the server's secrets key, and the models it serves. */
export interface ProjectUpstream {
  url: string
  /** The key as `SecretBox.seal` wrote it: never the key itself. */
  sealedKey: string
  scheme: 'token' | 'bearer'
  /** Model names or `prefix*` patterns it serves; empty: every model. */
  models: string[]
}
