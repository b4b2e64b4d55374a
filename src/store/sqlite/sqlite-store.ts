import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { KeyOptions, ProjectSettings } from '../../auth/credential-options.js'
import type { Role } from '../../auth/scopes.js'
import type {
  ApiKeyRecord,
  ApiKeyWithMember,
  AuditEvent,
  AuditFilter,
  Member,
  Project,
  RoleChange,
  SigningKey,
  Store,
  UsageFilter,
  UsageRecord,
} from '../store.js'
import { prepareDatabasePath } from './sqlite-file-modes.js'
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js'

/** How long a read of another process's commits is trusted, ms (see `credentialsVersion`). */
const VERSION_TRUST_MS = 1

export interface SqliteStoreOptions {
  /** Path of the database file; `:memory:` for a throwaway store. */
  path: string
}

interface KeyRow {
  id: string
  project_id: string
  member_id: string
  hash: string
  comment: string
  created_at: number
  expires_at: number | null
  deleted_at: number | null
  options: string
  disabled_at: number | null
  disabled_reason: string | null
  scopes: string
  tags: string
  member_role: Role
  member_email: string
}

interface MemberRow {
  id: string
  project_id: string
  email: string
  first_name: string | null
  last_name: string | null
  role: Role
  created_at: number
}

interface ProjectRow {
  id: string
  name: string
  company: string | null
  created_at: number
  settings: string
}

interface AuditRow {
  id: string
  project_id: string
  at: number
  type: string
  actor_key_id: string | null
  key_id: string | null
  end_user: string | null
  ip: string | null
  request_id: string | null
  detail: string
}

function toAudit(row: AuditRow): AuditEvent {
  return {
    id: row.id,
    projectId: row.project_id,
    at: row.at,
    type: row.type,
    actorKeyId: row.actor_key_id,
    keyId: row.key_id,
    endUser: row.end_user,
    ip: row.ip,
    requestId: row.request_id,
    detail: JSON.parse(row.detail) as Record<string, unknown>,
  }
}

/** WHERE clause and values for an audit filter. */
function auditWhere(projectId: string, f: AuditFilter): { sql: string; values: (string | number)[] } {
  const where = whereBuilder(projectId)
  if (f.start !== undefined) where.add('at >= ?', f.start)
  if (f.end !== undefined) where.add('at < ?', f.end)
  if (f.type !== undefined) {
    // A prefix ends in a dot; LIKE's wildcards in it are escaped.
    if (f.type.endsWith('.')) where.add("type LIKE ? ESCAPE '\\'", `${f.type.replace(/[\\%_]/g, '\\$&')}%`)
    else where.add('type = ?', f.type)
  }
  if (f.keyId !== undefined) where.add('(key_id = ? OR actor_key_id = ?)', f.keyId, f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  return where.done()
}

/** Builds `project_id = ? AND …` with its values, one condition at a time. */
function whereBuilder(projectId: string) {
  const parts = ['project_id = ?']
  const values: (string | number)[] = [projectId]
  return {
    add(sql: string, ...more: (string | number)[]) {
      parts.push(sql)
      values.push(...more)
    },
    done: () => ({ sql: parts.join(' AND '), values }),
  }
}

const KEY_SELECT = `
  SELECT k.id, k.project_id, k.member_id, k.hash, k.comment, k.created_at, k.expires_at, k.deleted_at,
         k.options, k.disabled_at, k.disabled_reason,
         (SELECT json_group_array(scope) FROM (SELECT scope FROM api_key_scopes WHERE key_id = k.id ORDER BY position)) AS scopes,
         (SELECT json_group_array(tag) FROM (SELECT tag FROM api_key_tags WHERE key_id = k.id ORDER BY position)) AS tags,
         m.role AS member_role, m.email AS member_email
  FROM api_keys k JOIN members m ON m.id = k.member_id`

interface UsageRow {
  id: string
  project_id: string
  key_id: string
  end_user: string | null
  tags: string
  endpoint: UsageRecord['endpoint']
  method: UsageRecord['method']
  path: string
  model: string | null
  started_at: number
  ended_at: number | null
  audio_seconds: number
  characters: number
  status: number | null
  detail: string | null
}

function toUsage(row: UsageRow): UsageRecord {
  return {
    id: row.id,
    projectId: row.project_id,
    keyId: row.key_id,
    endUser: row.end_user,
    tags: JSON.parse(row.tags) as string[],
    endpoint: row.endpoint,
    method: row.method,
    path: row.path,
    model: row.model,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    audioSeconds: row.audio_seconds,
    characters: row.characters,
    status: row.status,
    detail: row.detail,
  }
}

/** WHERE clause and values for a usage filter. */
function usageWhere(projectId: string, f: UsageFilter): { sql: string; values: (string | number)[] } {
  const where = whereBuilder(projectId)
  if (f.start !== undefined) where.add('started_at >= ?', f.start)
  if (f.end !== undefined) where.add('started_at < ?', f.end)
  if (f.keyId !== undefined) where.add('key_id = ?', f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  if (f.endpoint !== undefined) where.add('endpoint = ?', f.endpoint)
  if (f.method !== undefined) where.add('method = ?', f.method)
  if (f.succeeded === true) where.add('((status >= 200 AND status < 300) OR status = 1000)')
  if (f.succeeded === false) where.add('NOT ((status >= 200 AND status < 300) OR status = 1000)')
  return where.done()
}

function toKey(row: KeyRow): ApiKeyWithMember {
  return {
    id: row.id,
    projectId: row.project_id,
    memberId: row.member_id,
    hash: row.hash,
    comment: row.comment,
    scopes: JSON.parse(row.scopes) as string[],
    tags: JSON.parse(row.tags) as string[],
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    deletedAt: row.deleted_at,
    options: JSON.parse(row.options) as KeyOptions,
    disabledAt: row.disabled_at,
    disabledReason: row.disabled_reason,
    memberRole: row.member_role,
    memberEmail: row.member_email,
  }
}

function toMember(row: MemberRow): Member {
  return {
    id: row.id,
    projectId: row.project_id,
    email: row.email,
    firstName: row.first_name,
    lastName: row.last_name,
    role: row.role,
    createdAt: row.created_at,
  }
}

function toProject(row: ProjectRow): Project {
  return {
    id: row.id,
    name: row.name,
    company: row.company,
    createdAt: row.created_at,
    settings: JSON.parse(row.settings) as ProjectSettings,
  }
}

/** Applies the migrations this database has not seen yet. */
export function migrateSqlite(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`)
  const applied = new Set(
    (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
      (r) => r.version,
    ),
  )
  for (const m of SQLITE_MIGRATIONS) {
    if (applied.has(m.version)) continue
    db.transaction(() => {
      db.exec(m.sql)
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        m.version,
        m.name,
        Date.now(),
      )
    }).immediate()
  }
}

/** The embedded store: one SQLite file in WAL mode. */
export function createSqliteStore(options: SqliteStoreOptions): Store {
  // The file holds the grant-signing secrets: created owner-only before SQLite opens it.
  if (options.path !== ':memory:') prepareDatabasePath(options.path)
  const db = new Database(options.path)
  db.pragma('journal_mode = WAL')
  // FULL: a committed key creation or deletion survives power loss, not only a process crash.
  db.pragma('synchronous = FULL')
  db.pragma('foreign_keys = ON')
  db.pragma('busy_timeout = 5000')
  migrateSqlite(db)

  const q = {
    anyProject: db.prepare('SELECT 1 FROM projects LIMIT 1'),
    insertProject: db.prepare(
      'INSERT INTO projects (id, name, company, created_at, settings) VALUES (?, ?, ?, ?, ?)',
    ),
    setSettings: db.prepare('UPDATE projects SET settings = ? WHERE id = ?'),
    listProjects: db.prepare('SELECT * FROM projects ORDER BY created_at, id'),
    getProject: db.prepare('SELECT * FROM projects WHERE id = ?'),
    insertMember: db.prepare(
      'INSERT INTO members (id, project_id, email, first_name, last_name, role, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    listMembers: db.prepare('SELECT * FROM members WHERE project_id = ? ORDER BY created_at, id'),
    getMember: db.prepare('SELECT * FROM members WHERE project_id = ? AND id = ?'),
    getMemberByEmail: db.prepare('SELECT * FROM members WHERE project_id = ? AND email = ?'),
    countOwners: db.prepare("SELECT count(*) AS n FROM members WHERE project_id = ? AND role = 'owner'"),
    setRole: db.prepare('UPDATE members SET role = ? WHERE project_id = ? AND id = ?'),
    insertKey: db.prepare(
      `INSERT INTO api_keys (id, project_id, member_id, hash, comment, created_at, expires_at, deleted_at, options,
         disabled_at, disabled_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertScope: db.prepare('INSERT INTO api_key_scopes (key_id, position, scope) VALUES (?, ?, ?)'),
    insertTag: db.prepare('INSERT INTO api_key_tags (key_id, position, tag) VALUES (?, ?, ?)'),
    keyByHash: db.prepare(`${KEY_SELECT} WHERE k.hash = ?`),
    keyByPreviousHash: db.prepare(
      `${KEY_SELECT} JOIN api_key_previous_secrets p ON p.key_id = k.id WHERE p.hash = ?`,
    ),
    previousExpiry: db.prepare('SELECT expires_at FROM api_key_previous_secrets WHERE hash = ?').pluck(),
    setDisabled: db.prepare(
      'UPDATE api_keys SET disabled_at = ?, disabled_reason = ? WHERE project_id = ? AND id = ? AND deleted_at IS NULL',
    ),
    liveKeyHash: db
      .prepare('SELECT hash FROM api_keys WHERE project_id = ? AND id = ? AND deleted_at IS NULL')
      .pluck(),
    setHash: db.prepare('UPDATE api_keys SET hash = ? WHERE id = ?'),
    insertPrevious: db.prepare(
      'INSERT OR REPLACE INTO api_key_previous_secrets (hash, key_id, expires_at) VALUES (?, ?, ?)',
    ),
    dropOldPrevious: db.prepare('DELETE FROM api_key_previous_secrets WHERE key_id = ? AND expires_at <= ?'),
    listExpired: db.prepare(
      `${KEY_SELECT} WHERE k.expires_at IS NOT NULL AND k.expires_at <= ? AND k.deleted_at IS NULL
       ORDER BY k.expires_at, k.id LIMIT ?`,
    ),
    listExpiredPending: db.prepare(
      `${KEY_SELECT} WHERE k.expires_at IS NOT NULL AND k.expires_at <= ? AND k.deleted_at IS NULL
         AND (k.expiry_noted_at IS NULL OR k.expires_at <= ?)
       ORDER BY k.expires_at, k.id LIMIT ?`,
    ),
    noteExpired: db.prepare(
      'UPDATE api_keys SET expiry_noted_at = ? WHERE project_id = ? AND id = ? AND expiry_noted_at IS NULL',
    ),
    sumByKey: db
      .prepare(
        'SELECT coalesce(sum(audio_seconds), 0) FROM usage_requests WHERE project_id = ? AND key_id = ? AND started_at >= ?',
      )
      .pluck(),
    sumByEndUser: db
      .prepare(
        'SELECT coalesce(sum(audio_seconds), 0) FROM usage_requests WHERE project_id = ? AND end_user = ? AND started_at >= ?',
      )
      .pluck(),
    sumByKeyAndEndUser: db
      .prepare(
        'SELECT coalesce(sum(audio_seconds), 0) FROM usage_requests WHERE project_id = ? AND key_id = ? AND end_user = ? AND started_at >= ?',
      )
      .pluck(),
    sumAll: db
      .prepare(
        'SELECT coalesce(sum(audio_seconds), 0) FROM usage_requests WHERE project_id = ? AND started_at >= ?',
      )
      .pluck(),
    insertAudit: db.prepare(
      `INSERT INTO audit_events (id, project_id, at, type, actor_key_id, key_id, end_user, ip, request_id, detail)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    keyById: db.prepare(`${KEY_SELECT} WHERE k.project_id = ? AND k.id = ?`),
    listKeys: db.prepare(
      `${KEY_SELECT} WHERE k.project_id = ? AND k.deleted_at IS NULL ORDER BY k.created_at, k.id`,
    ),
    listMemberKeys: db.prepare(
      `${KEY_SELECT} WHERE k.project_id = ? AND k.member_id = ? AND k.deleted_at IS NULL ORDER BY k.created_at, k.id`,
    ),
    deleteKey: db.prepare(
      'UPDATE api_keys SET deleted_at = ? WHERE project_id = ? AND id = ? AND deleted_at IS NULL',
    ),
    listSigning: db.prepare('SELECT * FROM signing_keys ORDER BY created_at, rowid'),
    insertSigning: db.prepare(
      'INSERT INTO signing_keys (kid, secret, created_at, retired_at) VALUES (?, ?, ?, ?)',
    ),
    retireSigning: db.prepare('UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL'),
    insertUsage: db.prepare(
      `INSERT INTO usage_requests (id, project_id, key_id, end_user, tags, endpoint, method, path, model, started_at,
         ended_at, audio_seconds, characters, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    finishUsage: db.prepare(
      `UPDATE usage_requests SET ended_at = ?, audio_seconds = ?, characters = ?, status = ?, detail = ?
       WHERE project_id = ? AND id = ?`,
    ),
    getUsage: db.prepare('SELECT * FROM usage_requests WHERE project_id = ? AND id = ?'),
  }

  // Our own credential writes bump `localWrites` at once; other connections' commits (the CLI, another
  // server on the same file) change SQLite's data_version. Reading data_version costs a read transaction
  // (about 1.5 µs, a tenth of a cheap request), so a read is trusted for VERSION_TRUST_MS, and every
  // credential write waits as long after its commit before it is acknowledged. Together: a change any
  // process has acknowledged is seen by every request sent after it (a request that raced the write may go
  // either way, as it could anyway), on one machine's monotonic clock.
  let localWrites = 0
  const dataVersion = db.prepare('PRAGMA data_version').pluck()
  let otherVersion = 0
  let otherVersionReadAt = Number.NEGATIVE_INFINITY
  const otherWrites = (): number => {
    const now = performance.now()
    if (now - otherVersionReadAt >= VERSION_TRUST_MS) {
      otherVersionReadAt = now
      otherVersion = dataVersion.get() as number
    }
    return otherVersion
  }
  const wrote = async <T>(result: T): Promise<T> => {
    localWrites++
    const committedAt = performance.now()
    while (performance.now() - committedAt < VERSION_TRUST_MS) await sleep(VERSION_TRUST_MS)
    return result
  }

  const insertKeyTx = db.transaction((key: ApiKeyRecord) => {
    q.insertKey.run(
      key.id,
      key.projectId,
      key.memberId,
      key.hash,
      key.comment,
      key.createdAt,
      key.expiresAt,
      key.deletedAt,
      JSON.stringify(key.options),
      key.disabledAt,
      key.disabledReason,
    )
    for (const [i, scope] of key.scopes.entries()) q.insertScope.run(key.id, i, scope)
    for (const [i, tag] of key.tags.entries()) q.insertTag.run(key.id, i, tag)
  })

  const insertMember = (m: Member) =>
    q.insertMember.run(m.id, m.projectId, m.email, m.firstName, m.lastName, m.role, m.createdAt)

  const createProjectWithOwnerTx = db.transaction((project: Project, owner: Member, key: ApiKeyRecord) => {
    q.insertProject.run(
      project.id,
      project.name,
      project.company,
      project.createdAt,
      JSON.stringify(project.settings),
    )
    insertMember(owner)
    insertKeyTx(key)
  })

  const setRoleTx = db.transaction((projectId: string, memberId: string, role: Role): RoleChange => {
    const current = q.getMember.get(projectId, memberId) as MemberRow | undefined
    if (!current) return 'not_found'
    if (current.role === 'owner' && role !== 'owner') {
      const { n } = q.countOwners.get(projectId) as { n: number }
      if (n <= 1) return 'last_owner'
    }
    q.setRole.run(role, projectId, memberId)
    return 'updated'
  })

  const rerollTx = db.transaction(
    (projectId: string, keyId: string, newHash: string, previousExpiresAt: number, now: number) => {
      const old = q.liveKeyHash.get(projectId, keyId) as string | undefined
      if (old === undefined) return false
      q.dropOldPrevious.run(keyId, now)
      q.insertPrevious.run(old, keyId, previousExpiresAt)
      q.setHash.run(newHash, keyId)
      return true
    },
  )

  const setSync = {
    normal: db.prepare('PRAGMA synchronous = NORMAL'),
    full: db.prepare('PRAGMA synchronous = FULL'),
  }
  const insertAuditTx = db.transaction((events: readonly AuditEvent[]) => {
    for (const e of events) {
      q.insertAudit.run(
        e.id,
        e.projectId,
        e.at,
        e.type,
        e.actorKeyId,
        e.keyId,
        e.endUser,
        e.ip,
        e.requestId,
        JSON.stringify(e.detail),
      )
    }
  })

  return {
    kind: 'sqlite',
    credentialsVersion: () => localWrites * 1_000_000_007 + otherWrites(),
    isEmpty: async () => q.anyProject.get() === undefined,
    createProjectWithOwner: async (project, owner, key) => {
      await wrote(createProjectWithOwnerTx.immediate(project, owner, key))
    },
    setProjectSettings: async (id, settings) =>
      wrote(q.setSettings.run(JSON.stringify(settings), id).changes === 1),
    listProjects: async () => (q.listProjects.all() as ProjectRow[]).map(toProject),
    getProject: async (id) => {
      const row = q.getProject.get(id) as ProjectRow | undefined
      return row && toProject(row)
    },
    updateProject: async (id, patch) => {
      const sets: string[] = []
      const values: (string | null)[] = []
      if (patch.name !== undefined) {
        sets.push('name = ?')
        values.push(patch.name)
      }
      if (patch.company !== undefined) {
        sets.push('company = ?')
        values.push(patch.company)
      }
      if (sets.length === 0) return q.getProject.get(id) !== undefined
      return wrote(
        db.prepare(`UPDATE projects SET ${sets.join(', ')} WHERE id = ?`).run(...values, id).changes === 1,
      )
    },
    createMember: async (member) => {
      await wrote(insertMember(member))
    },
    listMembers: async (projectId) => (q.listMembers.all(projectId) as MemberRow[]).map(toMember),
    getMember: async (projectId, memberId) => {
      const row = q.getMember.get(projectId, memberId) as MemberRow | undefined
      return row && toMember(row)
    },
    getMemberByEmail: async (projectId, email) => {
      const row = q.getMemberByEmail.get(projectId, email) as MemberRow | undefined
      return row && toMember(row)
    },
    setMemberRole: async (projectId, memberId, role) => wrote(setRoleTx.immediate(projectId, memberId, role)),
    insertKey: async (key) => {
      await wrote(insertKeyTx.immediate(key))
    },
    findKeyByHash: async (hash) => {
      const row = q.keyByHash.get(hash) as KeyRow | undefined
      if (row) return toKey(row)
      const previous = q.keyByPreviousHash.get(hash) as KeyRow | undefined
      if (!previous) return undefined
      const expiresAt = q.previousExpiry.get(hash) as number
      return { ...toKey(previous), previousSecretExpiresAt: expiresAt }
    },
    getKey: async (projectId, keyId) => {
      const row = q.keyById.get(projectId, keyId) as KeyRow | undefined
      return row && toKey(row)
    },
    listKeys: async (projectId, filter) => {
      const rows = (
        filter?.memberId ? q.listMemberKeys.all(projectId, filter.memberId) : q.listKeys.all(projectId)
      ) as KeyRow[]
      return rows.map(toKey)
    },
    deleteKey: async (projectId, keyId, at) => wrote(q.deleteKey.run(at, projectId, keyId).changes === 1),
    setKeyDisabled: async (projectId, keyId, at, reason) =>
      wrote(q.setDisabled.run(at, at === null ? null : reason, projectId, keyId).changes === 1),
    rerollKey: async (projectId, keyId, newHash, previousExpiresAt, now) =>
      wrote(rerollTx.immediate(projectId, keyId, newHash, previousExpiresAt, now)),
    listExpiredKeys: async (before, limit, pendingOnly) =>
      (
        (pendingOnly
          ? q.listExpiredPending.all(before, pendingOnly.sweepBefore, limit)
          : q.listExpired.all(before, limit)) as KeyRow[]
      ).map(toKey),
    noteKeyExpired: async (projectId, keyId, at) => q.noteExpired.run(at, projectId, keyId).changes === 1,
    listSigningKeys: async () =>
      (
        q.listSigning.all() as {
          kid: string
          secret: Buffer
          created_at: number
          retired_at: number | null
        }[]
      ).map((r) => ({ kid: r.kid, secret: r.secret, createdAt: r.created_at, retiredAt: r.retired_at })),
    insertSigningKey: async (key: SigningKey) => {
      await wrote(q.insertSigning.run(key.kid, key.secret, key.createdAt, key.retiredAt))
    },
    retireSigningKey: async (kid, at) => wrote(q.retireSigning.run(at, kid).changes === 1),
    insertUsage: async (r) => {
      q.insertUsage.run(
        r.id,
        r.projectId,
        r.keyId,
        r.endUser,
        JSON.stringify(r.tags),
        r.endpoint,
        r.method,
        r.path,
        r.model,
        r.startedAt,
        r.endedAt,
        r.audioSeconds,
        r.characters,
        r.status,
        r.detail,
      )
    },
    finishUsage: async (projectId, id, e) =>
      q.finishUsage.run(e.endedAt, e.audioSeconds, e.characters, e.status, e.detail, projectId, id)
        .changes === 1,
    getUsage: async (projectId, id) => {
      const row = q.getUsage.get(projectId, id) as UsageRow | undefined
      return row && toUsage(row)
    },
    listUsage: async (projectId, filter) => {
      const { sql, values } = usageWhere(projectId, filter)
      const rows = db
        .prepare(`SELECT * FROM usage_requests WHERE ${sql} ORDER BY started_at DESC, id LIMIT ? OFFSET ?`)
        .all(...values, filter.limit ?? -1, filter.offset ?? 0) as UsageRow[]
      return rows.map(toUsage)
    },
    sumAudioSeconds: async (projectId, f) => {
      if (f.keyId !== undefined && f.endUser !== undefined)
        return q.sumByKeyAndEndUser.get(projectId, f.keyId, f.endUser, f.start) as number
      if (f.keyId !== undefined) return q.sumByKey.get(projectId, f.keyId, f.start) as number
      if (f.endUser !== undefined) return q.sumByEndUser.get(projectId, f.endUser, f.start) as number
      return q.sumAll.get(projectId, f.start) as number
    },
    insertAuditEvents: async (events) => {
      if (events.length === 0) return
      // The audit trail is written in batches off the request path (src/audit/audit-log.ts), and each batch
      // is committed without waiting for the disk: it survives a process crash at once and power loss at the
      // next FULL commit or checkpoint. A flush to disk per batch cost every grant about 2 µs.
      setSync.normal.run()
      try {
        insertAuditTx.immediate(events)
      } finally {
        setSync.full.run()
      }
    },
    listAuditEvents: async (projectId, filter) => {
      const { sql, values } = auditWhere(projectId, filter)
      const rows = db
        .prepare(`SELECT * FROM audit_events WHERE ${sql} ORDER BY at DESC, rowid DESC LIMIT ? OFFSET ?`)
        .all(...values, filter.limit ?? -1, filter.offset ?? 0) as AuditRow[]
      return rows.map(toAudit)
    },
    close: async () => {
      db.close()
    },
  }
}
