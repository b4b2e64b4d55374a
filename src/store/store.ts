import type { KeyOptions, ProjectSettings } from '../auth/credential-options.js'
import type { Role } from '../auth/scopes.js'

/** A project: the unit that owns members, keys and usage. */
export interface Project {
  id: string
  name: string
  company: string | null
  /** Epoch milliseconds. */
  createdAt: number
  /** Earmark's project-wide limits, quotas and policies (empty object when none are set). */
  settings: ProjectSettings
}

/** A member (an account) of one project, with its role there. */
export interface Member {
  id: string
  projectId: string
  email: string
  firstName: string | null
  lastName: string | null
  role: Role
  createdAt: number
}

/** An API key as stored: never the secret, only its SHA-256. */
export interface ApiKeyRecord {
  id: string
  projectId: string
  memberId: string
  /** Hex SHA-256 of the secret. */
  hash: string
  comment: string
  /** As granted: role names and/or single scopes, in the order given. */
  scopes: string[]
  tags: string[]
  createdAt: number
  /** Epoch milliseconds, or null for a key that never expires. */
  expiresAt: number | null
  /** Epoch milliseconds of deletion, or null while the key exists. */
  deletedAt: number | null
  /** Earmark's extensions (binding, listen constraints, limits, quotas); an empty object when none. */
  options: KeyOptions
  /** Epoch ms when the key was disabled (suspicious activity, an operator), or null. A disabled key is refused. */
  disabledAt: number | null
  /** Why it was disabled: a short, secret-free reason. */
  disabledReason: string | null
}

/** A key together with what authentication needs of its member. */
export interface ApiKeyWithMember extends ApiKeyRecord {
  memberRole: Role
  memberEmail: string
  /**
   * Set only by `findKeyByHash` when the hash matched a secret the key was rerolled away from: that old
   * secret works until this epoch ms (the reroll's grace period), then never again.
   */
  previousSecretExpiresAt?: number
}

/** A JWT signing secret. The newest one that is not retired signs; all that are not retired verify. */
export interface SigningKey {
  kid: string
  /** Raw HMAC secret. */
  secret: Buffer
  createdAt: number
  retiredAt: number | null
}

/** One metered request or stream (docs/deepgram-compat.md §4, `/requests` and `/usage`). */
export interface UsageRecord {
  /** The request id (`dg-request-id`). */
  id: string
  projectId: string
  /** The API key that paid: the caller's own, or for a grant token its parent. */
  keyId: string
  /** The app's end user, when the credential or request names one. */
  endUser: string | null
  /** Request tags (Deepgram's `tag` query parameter). */
  tags: string[]
  endpoint: 'listen' | 'speak'
  method: 'sync' | 'streaming'
  /** Request path without its query string. */
  path: string
  model: string | null
  startedAt: number
  /** Null while a stream is still open (or if the process died before it closed). */
  endedAt: number | null
  audioSeconds: number
  characters: number
  /** HTTP status, or for a stream the WebSocket close code; null while open. */
  status: number | null
  /** A short, secret-free reason for a failure. */
  detail: string | null
}

export interface UsageFilter {
  /** Epoch ms, inclusive. */
  start?: number
  /** Epoch ms, exclusive. */
  end?: number
  keyId?: string
  endUser?: string
  endpoint?: UsageRecord['endpoint']
  method?: UsageRecord['method']
  /** Records whose status says success (2xx or close 1000) or not. */
  succeeded?: boolean
  limit?: number
  offset?: number
}

export type RoleChange = 'updated' | 'not_found' | 'last_owner'

/**
 * One audit event (docs/audit.md). Never holds a secret: keys are named by id, tokens by `jti`.
 * `type` is dotted, e.g. `key.created`, `grant.issued`, `limit.refused`, `suspicious.distinct_ips`.
 */
export interface AuditEvent {
  id: string
  projectId: string
  /** Epoch ms. */
  at: number
  type: string
  /** The key that acted (the caller, or a grant token's parent), when there was one. */
  actorKeyId: string | null
  /** The key the event is about, when it is about one. */
  keyId: string | null
  endUser: string | null
  /** The client address, when the event came from a request. */
  ip: string | null
  requestId: string | null
  /** Event-specific fields, JSON-serialisable, secret-free. */
  detail: Record<string, unknown>
}

export interface AuditFilter {
  /** Epoch ms, inclusive. */
  start?: number
  /** Epoch ms, exclusive. */
  end?: number
  /** An exact type (`key.created`) or a prefix ending in a dot (`suspicious.`). */
  type?: string
  keyId?: string
  endUser?: string
  limit?: number
  offset?: number
}

/** How a usage summary is cut: per UTC day. */
export type UsageBucketSize = 'minute' | 'hour' | 'day'

/** What a usage summary may be split by besides time: the key (`key_id`) or the end user. */
export type UsageGroupBy = 'key' | 'end_user'

/** One bucket of a usage summary: sums over the records that started in it. */
export interface UsageBucket {
  /** Epoch ms of the bucket's start (a UTC midnight for a day). */
  start: number
  audioSeconds: number
  /** Records of every endpoint. */
  requests: number
  /** Characters of `speak` records. */
  speakCharacters: number
  /** Records of `speak`. */
  speakRequests: number
  /** With `groupBy`: the key id or end user of this row (null: records without an end user). */
  group?: string | null
  /** With `groupBy`: the records that ended and did not succeed (neither 2xx nor close 1000). */
  failed?: number
}

/** Sums of metered audio, for quotas: computed by the store, not by adding rows up in JavaScript. */
export interface AudioTotalFilter {
  keyId?: string
  endUser?: string
  /** Epoch ms, inclusive: records started at or after it. */
  start: number
}

/**
 * Everything Earmark keeps. Routes and use cases see only this interface, so a backend (SQLite now,
 * PostgreSQL later) can change without touching them. Every method that writes more than one row does
 * so in one transaction: a crash leaves either all of it or none.
 */
export interface Store {
  /** The backend's name, e.g. `sqlite`. */
  readonly kind: string

  /**
   * A number that changes whenever projects, members, keys or signing keys may have changed, through this
   * store or any other process sharing the data. Synchronous and cheap: authentication calls it per request
   * to know whether what it cached is still true. The contract: a change any process's store has
   * acknowledged (its write promise resolved) shows in the version of every call made after that.
   */
  credentialsVersion(): number

  /** True while no project exists (first start). */
  isEmpty(): Promise<boolean>
  /** Creates a project, its first owner and that owner's key, all or nothing. */
  createProjectWithOwner(project: Project, owner: Member, key: ApiKeyRecord): Promise<void>

  listProjects(): Promise<Project[]>
  getProject(id: string): Promise<Project | undefined>
  updateProject(id: string, patch: { name?: string; company?: string | null }): Promise<boolean>
  /** Replaces a project's settings; false when there is no such project. A credential write. */
  setProjectSettings(id: string, settings: ProjectSettings): Promise<boolean>

  createMember(member: Member): Promise<void>
  listMembers(projectId: string): Promise<Member[]>
  getMember(projectId: string, memberId: string): Promise<Member | undefined>
  getMemberByEmail(projectId: string, email: string): Promise<Member | undefined>
  /** Changes a member's role; refuses to leave a project without an owner. */
  setMemberRole(projectId: string, memberId: string, role: Role): Promise<RoleChange>

  /** Inserts a key with its scopes and tags, all or nothing. */
  insertKey(key: ApiKeyRecord): Promise<void>
  /** The key whose secret hashes to `hash`, deleted or not, with its member; the auth hot path. */
  findKeyByHash(hash: string): Promise<ApiKeyWithMember | undefined>
  /** A key by id, deleted or not, with its member. */
  getKey(projectId: string, keyId: string): Promise<ApiKeyWithMember | undefined>
  /** Keys of a project that are not deleted, oldest first; optionally only one member's. */
  listKeys(projectId: string, filter?: { memberId?: string }): Promise<ApiKeyWithMember[]>
  /** Marks a key deleted; false when it did not exist or was already deleted. */
  deleteKey(projectId: string, keyId: string, at: number): Promise<boolean>
  /**
   * Disables (`at` set) or re-enables (`at` null) a key that is not deleted; false when there is no such
   * key. A disabled key is refused like a deleted one, but stays listed and can be enabled again.
   */
  setKeyDisabled(projectId: string, keyId: string, at: number | null, reason: string | null): Promise<boolean>
  /**
   * Gives a live key a new secret hash, all or nothing. The old hash keeps authenticating until
   * `previousExpiresAt` (epoch ms; a value at or before now ends it at once). Earlier secrets whose grace
   * ended by `now` are forgotten. False when the key does not exist or is deleted.
   */
  rerollKey(
    projectId: string,
    keyId: string,
    newHash: string,
    previousExpiresAt: number,
    now: number,
  ): Promise<boolean>
  /**
   * Keys, across projects, that expired at or before `before` and are not deleted, oldest expiry first;
   * with `pendingOnly`, only those with work left for a sweeper: expiry not yet noted, or expired at or
   * before `pendingOnly.sweepBefore` (past their retention).
   */
  listExpiredKeys(
    before: number,
    limit: number,
    pendingOnly?: { sweepBefore: number },
  ): Promise<ApiKeyWithMember[]>
  /**
   * Records, once, that a key's expiry was noticed (its `key.expired` audit event written): true only for
   * the first caller, so two sweepers never both record it.
   */
  noteKeyExpired(projectId: string, keyId: string, at: number): Promise<boolean>

  /** Signing keys, oldest first (insertion order breaks ties). */
  listSigningKeys(): Promise<SigningKey[]>
  insertSigningKey(key: SigningKey): Promise<void>
  retireSigningKey(kid: string, at: number): Promise<boolean>

  /** Records the start of a metered request. */
  insertUsage(record: UsageRecord): Promise<void>
  /** Records how a metered request ended. */
  finishUsage(
    projectId: string,
    id: string,
    end: Pick<UsageRecord, 'endedAt' | 'audioSeconds' | 'characters' | 'status' | 'detail'>,
  ): Promise<boolean>
  getUsage(projectId: string, id: string): Promise<UsageRecord | undefined>
  /** Usage records, newest first. */
  listUsage(projectId: string, filter: UsageFilter): Promise<UsageRecord[]>
  /**
   * Per-bucket sums of a project's usage records matching `filter` (its limit and offset ignored), open ones
   * included, oldest bucket first; a bucket without records is absent. Computed by the store in one query.
   * With `groupBy`, one row per bucket and key (or end user), ordered by bucket then group (null first),
   * each with its `group` and `failed` count.
   */
  summarizeUsage(
    projectId: string,
    filter: UsageFilter,
    options: { bucket: UsageBucketSize; groupBy?: UsageGroupBy },
  ): Promise<UsageBucket[]>
  /** Total audio seconds of a project's usage records matching `filter`, open ones included. */
  sumAudioSeconds(projectId: string, filter: AudioTotalFilter): Promise<number>

  /** Appends audit events, all or nothing. */
  insertAuditEvents(events: readonly AuditEvent[]): Promise<void>
  /** A project's audit events, newest first. */
  listAuditEvents(projectId: string, filter: AuditFilter): Promise<AuditEvent[]>

  close(): Promise<void>
}
