import { setTimeout as sleep } from 'node:timers/promises'
import Database from 'better-sqlite3'
import type { Role } from '../../auth/scopes.js'
import type { ApiKeyRecord, AuditEvent, Member, Project, RoleChange, SigningKey, Store } from '../store.js'
import {
  audioTotalWhere,
  auditWhere,
  projectUpdate,
  usageSummaryQuery,
  usageWhere,
} from '../store-filters.js'
import {
  API_KEYS,
  AUDIT,
  columnsAs,
  insertSql,
  MEMBERS,
  PROJECTS,
  rowValues,
  SIGNING_KEYS,
  toAudit,
  toKey,
  toMember,
  toProject,
  toSigningKey,
  toUsage,
  toUsageBucket,
  USAGE,
} from '../store-rows.js'
import { prepareDatabasePath } from './sqlite-file-modes.js'
import { SQLITE_MIGRATIONS } from './sqlite-migrations.js'

/** How long a read of another process's commits is trusted, ms (see `credentialsVersion`). */
const VERSION_TRUST_MS = 1
/** An aggregate that adds doubles one at a time, in the order given (`usageSummaryQuery`). */
const PLAIN_SUM = 'earmark_plain_sum'

export interface SqliteStoreOptions {
  /** Path of the database file; `:memory:` for a throwaway store. */
  path: string
}

type Row = Record<string, unknown>

const KEY_SELECT = `
  SELECT ${columnsAs(API_KEYS, 'k')},
         (SELECT json_group_array(scope) FROM (SELECT scope FROM api_key_scopes WHERE key_id = k.id ORDER BY position)) AS scopes,
         (SELECT json_group_array(tag) FROM (SELECT tag FROM api_key_tags WHERE key_id = k.id ORDER BY position)) AS tags,
         m.role AS member_role, m.email AS member_email
  FROM api_keys k JOIN members m ON m.id = k.member_id`

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
  // SQLite's sum() compensates rounding errors (Kahan-Babuska-Neumaier, since 3.43); PostgreSQL's sum and the
  // usage summaries of earlier versions add plainly, and at a half-millisecond tie that decides the rounding.
  db.aggregate(PLAIN_SUM, {
    start: 0,
    step: (total: number, value: number) => total + value,
    deterministic: true,
  })

  const q = {
    anyProject: db.prepare('SELECT 1 FROM projects LIMIT 1'),
    insertProject: db.prepare(insertSql(PROJECTS)),
    setSettings: db.prepare('UPDATE projects SET settings = ? WHERE id = ?'),
    listProjects: db.prepare(`SELECT ${PROJECTS.columns} FROM projects ORDER BY created_at, id`),
    getProject: db.prepare(`SELECT ${PROJECTS.columns} FROM projects WHERE id = ?`),
    insertMember: db.prepare(insertSql(MEMBERS)),
    listMembers: db.prepare(
      `SELECT ${MEMBERS.columns} FROM members WHERE project_id = ? ORDER BY created_at, id`,
    ),
    getMember: db.prepare(`SELECT ${MEMBERS.columns} FROM members WHERE project_id = ? AND id = ?`),
    getMemberByEmail: db.prepare(`SELECT ${MEMBERS.columns} FROM members WHERE project_id = ? AND email = ?`),
    countOwners: db.prepare("SELECT count(*) AS n FROM members WHERE project_id = ? AND role = 'owner'"),
    setRole: db.prepare('UPDATE members SET role = ? WHERE project_id = ? AND id = ?'),
    insertKey: db.prepare(insertSql(API_KEYS)),
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
    insertAudit: db.prepare(insertSql(AUDIT)),
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
    listSigning: db.prepare(`SELECT ${SIGNING_KEYS.columns} FROM signing_keys ORDER BY created_at, rowid`),
    insertSigning: db.prepare(insertSql(SIGNING_KEYS)),
    retireSigning: db.prepare('UPDATE signing_keys SET retired_at = ? WHERE kid = ? AND retired_at IS NULL'),
    insertUsage: db.prepare(insertSql(USAGE)),
    finishUsage: db.prepare(
      `UPDATE usage_requests SET ended_at = ?, audio_seconds = ?, characters = ?, status = ?, detail = ?
       WHERE project_id = ? AND id = ?`,
    ),
    getUsage: db.prepare(`SELECT ${USAGE.columns} FROM usage_requests WHERE project_id = ? AND id = ?`),
  }
  // Statements whose text depends on a filter, prepared once per text (a few dozen at most).
  const prepared = new Map<string, Database.Statement>()
  const statement = (sql: string) => {
    let s = prepared.get(sql)
    if (s === undefined) {
      s = db.prepare(sql)
      prepared.set(sql, s)
    }
    return s
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
    q.insertKey.run(...rowValues(API_KEYS, key))
    for (const [i, scope] of key.scopes.entries()) q.insertScope.run(key.id, i, scope)
    for (const [i, tag] of key.tags.entries()) q.insertTag.run(key.id, i, tag)
  })

  const insertMember = (m: Member) => q.insertMember.run(...rowValues(MEMBERS, m))

  const createProjectWithOwnerTx = db.transaction((project: Project, owner: Member, key: ApiKeyRecord) => {
    q.insertProject.run(...rowValues(PROJECTS, project))
    insertMember(owner)
    insertKeyTx(key)
  })

  const setRoleTx = db.transaction((projectId: string, memberId: string, role: Role): RoleChange => {
    const current = q.getMember.get(projectId, memberId) as Pick<Member, 'role'> | undefined
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
    for (const e of events) q.insertAudit.run(...rowValues(AUDIT, e))
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
    listProjects: async () => (q.listProjects.all() as Row[]).map(toProject),
    getProject: async (id) => {
      const row = q.getProject.get(id) as Row | undefined
      return row && toProject(row)
    },
    updateProject: async (id, patch) => {
      const update = projectUpdate(id, patch)
      if (!update) return q.getProject.get(id) !== undefined
      return wrote(statement(update.sql).run(...update.values).changes === 1)
    },
    createMember: async (member) => {
      await wrote(insertMember(member))
    },
    listMembers: async (projectId) => (q.listMembers.all(projectId) as Row[]).map(toMember),
    getMember: async (projectId, memberId) => {
      const row = q.getMember.get(projectId, memberId) as Row | undefined
      return row && toMember(row)
    },
    getMemberByEmail: async (projectId, email) => {
      const row = q.getMemberByEmail.get(projectId, email) as Row | undefined
      return row && toMember(row)
    },
    setMemberRole: async (projectId, memberId, role) => wrote(setRoleTx.immediate(projectId, memberId, role)),
    insertKey: async (key) => {
      await wrote(insertKeyTx.immediate(key))
    },
    findKeyByHash: async (hash) => {
      const row = q.keyByHash.get(hash) as Row | undefined
      if (row) return toKey(row)
      const previous = q.keyByPreviousHash.get(hash) as Row | undefined
      if (!previous) return undefined
      const expiresAt = q.previousExpiry.get(hash) as number
      return { ...toKey(previous), previousSecretExpiresAt: expiresAt }
    },
    getKey: async (projectId, keyId) => {
      const row = q.keyById.get(projectId, keyId) as Row | undefined
      return row && toKey(row)
    },
    listKeys: async (projectId, filter) => {
      const rows = (
        filter?.memberId ? q.listMemberKeys.all(projectId, filter.memberId) : q.listKeys.all(projectId)
      ) as Row[]
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
          : q.listExpired.all(before, limit)) as Row[]
      ).map(toKey),
    noteKeyExpired: async (projectId, keyId, at) => q.noteExpired.run(at, projectId, keyId).changes === 1,
    listSigningKeys: async () => (q.listSigning.all() as Row[]).map(toSigningKey),
    insertSigningKey: async (key: SigningKey) => {
      await wrote(q.insertSigning.run(...rowValues(SIGNING_KEYS, key)))
    },
    retireSigningKey: async (kid, at) => wrote(q.retireSigning.run(at, kid).changes === 1),
    insertUsage: async (r) => {
      q.insertUsage.run(...rowValues(USAGE, r))
    },
    finishUsage: async (projectId, id, e) =>
      q.finishUsage.run(e.endedAt, e.audioSeconds, e.characters, e.status, e.detail, projectId, id)
        .changes === 1,
    getUsage: async (projectId, id) => {
      const row = q.getUsage.get(projectId, id) as Row | undefined
      return row && toUsage(row)
    },
    listUsage: async (projectId, filter) => {
      const { sql, values } = usageWhere(projectId, filter)
      const rows = statement(
        `SELECT ${USAGE.columns} FROM usage_requests WHERE ${sql} ORDER BY started_at DESC, id LIMIT ? OFFSET ?`,
      ).all(...values, filter.limit ?? -1, filter.offset ?? 0) as Row[]
      return rows.map(toUsage)
    },
    summarizeUsage: async (projectId, filter, { bucket, groupBy }) => {
      const { sql, values } = usageSummaryQuery(projectId, filter, bucket, PLAIN_SUM, groupBy)
      return (statement(sql).all(...values) as Row[]).map(toUsageBucket)
    },
    sumAudioSeconds: async (projectId, f) => {
      const { sql, values } = audioTotalWhere(projectId, f)
      return statement(`SELECT coalesce(sum(audio_seconds), 0) FROM usage_requests WHERE ${sql}`)
        .pluck()
        .get(...values) as number
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
      const rows = statement(
        `SELECT ${AUDIT.columns} FROM audit_events WHERE ${sql} ORDER BY at DESC, rowid DESC LIMIT ? OFFSET ?`,
      ).all(...values, filter.limit ?? -1, filter.offset ?? 0) as Row[]
      return rows.map(toAudit)
    },
    close: async () => {
      db.close()
    },
  }
}
