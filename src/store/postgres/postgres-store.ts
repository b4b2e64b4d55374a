import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Role } from '../../auth/scopes.js'
import { ApiError } from '../../errors.js'
import type {
  ApiKeyRecord,
  ApiKeyWithMember,
  AuditEvent,
  AuditFilter,
  Member,
  Project,
  RoleChange,
  Store,
  UsageFilter,
  UsageRecord,
} from '../store.js'
import { POSTGRES_MIGRATIONS } from './postgres-migrations.js'

/** The channel every credential-writing transaction notifies (docs/store.md). */
export const CREDENTIALS_CHANNEL = 'earmark_credentials'
/** The advisory lock key held while migrations run, so two nodes starting at once apply each one once. */
const MIGRATION_LOCK_KEY = 0x4561726d // "Earm"
/** How long a credential write waits for its own notification to come back before it is acknowledged anyway. */
const ECHO_TIMEOUT_MS = 1000
/**
 * After its own notification came back, a write waits this long more before it is acknowledged, so other
 * stores' LISTEN connections (signalled by the server at the same commit) have received theirs too.
 */
const ECHO_GRACE_MS = 2
/**
 * How often the LISTEN connection proves it is alive, ms: a connection that died without a word (a network
 * cut, no RST) would otherwise leave this node deaf, and its caches stale, for good.
 */
const LISTEN_HEARTBEAT_MS = 2000
/** `application_name` of the LISTEN connection (the pool's connections have none). */
export const LISTEN_APPLICATION_NAME = 'earmark-listen'
/** Reconnect delays of the LISTEN connection, ms: doubles from the first to the last. */
const LISTEN_RETRY_MS = [100, 5000] as const

export interface PostgresStoreOptions {
  /** A `postgres://` connection URL. */
  url: string
  /** Pooled connections (default 10). */
  poolSize?: number
  /** How long a request waits for a connection before it gets 503 (default 5000 ms). */
  connectTimeoutMs?: number
  /** A connection-level failure (a dropped LISTEN or idle pooled connection); the store recovers by itself. */
  onError?: (err: unknown) => void
}

/** A PostgreSQL store; `ready` settles when migrations ran and the change feed listens. */
export interface PostgresStore extends Store {
  readonly ready: Promise<void>
}

// BIGINT columns hold epoch milliseconds, well inside a double's exact range: read them as numbers.
const INT8_OID = 20
const parseInt8 = (value: string): number => Number(value)
const TYPES = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID && format !== 'binary'
      ? parseInt8
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
}

const CONNECTION_CODES = new Set([
  '57P01', // admin_shutdown (a restart, pg_terminate_backend)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up)
  '53300', // too_many_connections
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
])

/** True for an error that says the database could not be reached, not that a statement was wrong. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  const { code, severity } = err as { code?: unknown; severity?: unknown }
  if (typeof code === 'string' && (code.startsWith('08') || CONNECTION_CODES.has(code))) return true
  // FATAL ends the session: the server refused or dropped it (shutting down, not accepting connections).
  if (severity === 'FATAL') return true
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(
    err.message,
  )
}

/**
 * The one place PostgreSQL failures become client-visible: an unreachable database is a 503 the caller may
 * retry (docs/store.md); anything else (a constraint, a bug) is passed on as it is.
 */
function toStoreError(err: unknown): unknown {
  if (err instanceof ApiError || !isConnectionError(err)) return err
  return new ApiError('SERVICE_UNAVAILABLE', 'The database is unreachable. Please try again later.', {
    headers: { 'Retry-After': '1' },
  })
}

const KEY_COLUMNS = `k.id, k.project_id, k.member_id, k.hash, k.comment, k.created_at, k.expires_at, k.deleted_at,
  k.options, k.disabled_at, k.disabled_reason,
  ARRAY(SELECT scope FROM api_key_scopes WHERE key_id = k.id ORDER BY position) AS scopes,
  ARRAY(SELECT tag FROM api_key_tags WHERE key_id = k.id ORDER BY position) AS tags,
  m.role AS member_role, m.email AS member_email`
const KEY_FROM = 'api_keys k JOIN members m ON m.id = k.member_id'
const KEY_SELECT = `SELECT ${KEY_COLUMNS} FROM ${KEY_FROM}`

function toKey(row: Record<string, unknown>): ApiKeyWithMember {
  // Set only for a secret the key was rerolled away from (Store.findKeyByHash), absent otherwise.
  const { previous_expires_at: previous, ...rest } = row
  const key = camelRow<ApiKeyWithMember>(rest, ['options'])
  if (previous != null) key.previousSecretExpiresAt = previous as number
  return key
}

// Every table's columns are its record's fields in snake_case; the JSON columns are named. Rows and records
// convert by that rule, so a column list is the only place a table's fields are spelled out.
const fieldOf = (column: string) => column.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
const columnsOf = (list: string) => list.split(',').map((c) => c.trim())

/** Row → record. */
function camelRow<T>(row: Record<string, unknown>, json: readonly string[] = []): T {
  const out: Record<string, unknown> = {}
  for (const [column, value] of Object.entries(row)) {
    out[fieldOf(column)] = json.includes(column) ? JSON.parse(value as string) : value
  }
  return out as T
}

/** Record → the values of `columns`, in order, JSON columns serialised. */
function rowValues(record: object, columns: string, json: readonly string[] = []): unknown[] {
  return columnsOf(columns).map((column) => {
    const value = (record as Record<string, unknown>)[fieldOf(column)]
    return json.includes(column) ? JSON.stringify(value) : value
  })
}

/** `INSERT INTO table (columns) VALUES ($1, …)`. */
function insertSql(table: string, columns: string): string {
  const placeholders = columnsOf(columns).map((_, i) => `$${i + 1}`)
  return `INSERT INTO ${table} (${columns}) VALUES (${placeholders.join(', ')})`
}
const toProject = (row: Record<string, unknown>) => camelRow<Project>(row, ['settings'])
const toMember = (row: Record<string, unknown>) => camelRow<Member>(row)
const toUsage = (row: Record<string, unknown>) => camelRow<UsageRecord>(row, ['tags'])
const toAudit = (row: Record<string, unknown>) => camelRow<AuditEvent>(row, ['detail'])

const PROJECT_COLUMNS = 'id, name, company, created_at, settings'
const KEY_ROW_COLUMNS =
  'id, project_id, member_id, hash, comment, created_at, expires_at, deleted_at, options, disabled_at, disabled_reason'
const MEMBER_COLUMNS = 'id, project_id, email, first_name, last_name, role, created_at'
const USAGE_COLUMNS = `id, project_id, key_id, end_user, tags, endpoint, method, path, model, started_at, ended_at,
  audio_seconds, characters, status, detail`
const AUDIT_COLUMNS = 'id, project_id, at, type, actor_key_id, key_id, end_user, ip, request_id, detail'

/** Builds `project_id = $1 AND …` with numbered placeholders, one condition at a time. */
function whereBuilder(projectId: string) {
  const parts = ['project_id = $1']
  const values: (string | number | null)[] = [projectId]
  return {
    /** `sql` uses `?` for each value; they are numbered here. */
    add(sql: string, ...more: (string | number)[]) {
      parts.push(sql.replace(/\?/g, () => `$${values.push(more.shift() as string | number)}`))
    },
    /** The next placeholder, for what follows the WHERE clause. */
    next(value: string | number | null) {
      return `$${values.push(value)}`
    },
    sql: () => parts.join(' AND '),
    values,
  }
}

function usageWhere(projectId: string, f: UsageFilter) {
  const where = whereBuilder(projectId)
  if (f.start !== undefined) where.add('started_at >= ?', f.start)
  if (f.end !== undefined) where.add('started_at < ?', f.end)
  if (f.keyId !== undefined) where.add('key_id = ?', f.keyId)
  if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
  if (f.endpoint !== undefined) where.add('endpoint = ?', f.endpoint)
  if (f.method !== undefined) where.add('method = ?', f.method)
  if (f.succeeded === true) where.add('((status >= 200 AND status < 300) OR status = 1000)')
  // As on SQLite, a record still open (status null) is neither a success nor a failure.
  if (f.succeeded === false) where.add('NOT ((status >= 200 AND status < 300) OR status = 1000)')
  return where
}

function auditWhere(projectId: string, f: AuditFilter) {
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
  return where
}

const statementNames = new Map<string, string>()
/** A prepared statement's name: the same for the same text (the dynamic filters make a few dozen at most). */
function statementName(sql: string): string {
  let name = statementNames.get(sql)
  if (name === undefined) {
    name = `earmark_${statementNames.size}`
    statementNames.set(sql, name)
  }
  return name
}

/** Applies the migrations this database has not seen yet, under an advisory lock (docs/store.md). */
export async function migratePostgres(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`)
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations')
    const applied = new Set(rows.map((r) => r.version))
    for (const m of POSTGRES_MIGRATIONS) {
      if (applied.has(m.version)) continue
      await client.query('BEGIN')
      try {
        await client.query(m.sql)
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          m.version,
          m.name,
          Date.now(),
        ])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
    }
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {})
  }
}

/**
 * The shared store: PostgreSQL through a pool that reconnects by itself. Returned at once (the `Store`
 * contract is synchronous to open); every call waits for `ready`. Use `openPostgresStore` to wait and fail
 * early.
 */
export function createPostgresStore(options: PostgresStoreOptions): PostgresStore {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
    types: TYPES,
  })
  // An idle pooled connection that dies (a database restart) is dropped by the pool; without a listener
  // the error would end the process.
  pool.on('error', (err) => options.onError?.(err))

  // The credential-change feed (docs/store.md). `localWrites` moves at once with this store's own writes;
  // `remoteChanges` with every notification of another store, and on every call while the LISTEN
  // connection is down (nothing may be cached while changes cannot be heard).
  const storeId = randomUUID()
  let localWrites = 0
  let remoteChanges = 0
  let writeSeq = 0
  const echoes = new Map<number, () => void>()
  let listener: pg.Client | undefined
  let closed = false
  let retryTimer: NodeJS.Timeout | undefined
  let retryMs: number = LISTEN_RETRY_MS[0]

  let heartbeat: NodeJS.Timeout | undefined
  const dropListener = (client: pg.Client) => {
    if (listener !== client) return
    listener = undefined
    clearInterval(heartbeat)
    remoteChanges++
    for (const resolve of echoes.values()) resolve()
    echoes.clear()
    void client.end().catch(() => {})
    scheduleListen()
  }
  const scheduleListen = () => {
    if (closed || retryTimer) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      listen().catch((err) => {
        options.onError?.(err)
        retryMs = Math.min(retryMs * 2, LISTEN_RETRY_MS[1])
        scheduleListen()
      })
    }, retryMs)
    retryTimer.unref()
  }
  const listen = async () => {
    const client = new pg.Client({
      connectionString: options.url,
      types: TYPES,
      keepAlive: true,
      // Named in pg_stat_activity, so an operator can tell it from the pool.
      application_name: LISTEN_APPLICATION_NAME,
      // A heartbeat that gets no answer within this long counts as a dead connection.
      query_timeout: LISTEN_HEARTBEAT_MS,
    })
    client.on('notification', (n) => {
      if (n.channel !== CREDENTIALS_CHANNEL) return
      const [from, seq] = (n.payload ?? '').split(' ')
      if (from === storeId) {
        echoes.get(Number(seq))?.()
        echoes.delete(Number(seq))
      } else remoteChanges++
    })
    client.on('error', (err) => {
      options.onError?.(err)
      dropListener(client)
    })
    client.on('end', () => dropListener(client))
    try {
      await client.connect()
      await client.query(`LISTEN ${CREDENTIALS_CHANNEL}`)
    } catch (err) {
      await client.end().catch(() => {})
      throw err
    }
    if (closed) {
      await client.end().catch(() => {})
      return
    }
    listener = client
    retryMs = LISTEN_RETRY_MS[0]
    clearInterval(heartbeat)
    heartbeat = setInterval(() => {
      client.query('SELECT 1').catch((err: unknown) => {
        options.onError?.(err)
        dropListener(client)
      })
    }, LISTEN_HEARTBEAT_MS)
    heartbeat.unref()
    // Changes made while nothing listened were not heard: whatever was cached then is dropped.
    remoteChanges++
  }

  /**
   * A pooled connection for several statements. While it is checked out the pool does not listen for its
   * errors, and a connection the server ends (a restart, pg_terminate_backend) emits an 'error' event as well
   * as failing its statement: unheard, that event would end the process. `release` destroys a connection
   * that failed, so the next request gets a fresh one.
   */
  const checkOut = async () => {
    const client = await pool.connect()
    let failed = false
    const onError = (err: unknown) => {
      failed = true
      options.onError?.(err)
    }
    client.on('error', onError)
    return {
      client,
      release(broken: boolean) {
        client.off('error', onError)
        client.release(failed || broken)
      },
    }
  }

  const ready = (async () => {
    const { client, release } = await checkOut()
    let broken = false
    try {
      await migratePostgres(client)
    } catch (err) {
      broken = isConnectionError(err)
      throw err
    } finally {
      release(broken)
    }
    await listen()
  })().catch((err) => {
    throw toStoreError(err)
  })
  // Callers see the failure through the first call (or `openPostgresStore`), not as an unhandled rejection.
  ready.catch(() => {})

  const query = async <R extends pg.QueryResultRow>(sql: string, values?: unknown[]) => {
    await ready
    try {
      // Named, so each connection parses and plans a statement once, then only binds and runs it.
      return await pool.query<R>({ name: statementName(sql), text: sql, values: values ?? [] })
    } catch (err) {
      throw toStoreError(err)
    }
  }

  /** Runs `fn` in one transaction: all of it or none. */
  const transaction = async <T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    await ready
    let connection: Awaited<ReturnType<typeof checkOut>>
    try {
      connection = await checkOut()
    } catch (err) {
      throw toStoreError(err)
    }
    const { client, release } = connection
    let broken = false
    try {
      await client.query('BEGIN')
      const out = await fn(client)
      await client.query('COMMIT')
      return out
    } catch (err) {
      broken = isConnectionError(err)
      if (!broken) await client.query('ROLLBACK').catch(() => {})
      throw toStoreError(err)
    } finally {
      release(broken)
    }
  }

  /**
   * A credential write: `fn` and a notification of it in one transaction. The local version moves as soon
   * as it committed; the promise resolves once its own notification came back (so other stores' LISTEN
   * connections have been sent theirs), or after ECHO_TIMEOUT_MS if it does not come.
   */
  const credentialWrite = async <T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> => {
    const seq = ++writeSeq
    let echo = undefined as Promise<void> | undefined
    const out = await transaction(async (c) => {
      const result = await fn(c)
      if (listener) {
        echo = new Promise<void>((resolve) => {
          echoes.set(seq, resolve)
        })
      }
      await c.query('SELECT pg_notify($1, $2)', [CREDENTIALS_CHANNEL, `${storeId} ${seq}`])
      return result
    }).catch((err) => {
      echoes.get(seq)?.()
      echoes.delete(seq)
      throw err
    })
    localWrites++
    if (echo) {
      const timeout = sleep(ECHO_TIMEOUT_MS, undefined, { ref: false })
      await Promise.race([echo, timeout])
      echoes.delete(seq)
      await sleep(ECHO_GRACE_MS)
    }
    return out
  }

  const insertKeyRows = async (c: pg.ClientBase, key: ApiKeyRecord) => {
    await c.query(insertSql('api_keys', KEY_ROW_COLUMNS), rowValues(key, KEY_ROW_COLUMNS, ['options']))
    // Arrays in one statement each: a key with many scopes is still two round trips.
    await c.query(
      'INSERT INTO api_key_scopes (key_id, position, scope) SELECT $1, p - 1, s FROM unnest($2::text[]) WITH ORDINALITY AS t(s, p)',
      [key.id, key.scopes],
    )
    await c.query(
      'INSERT INTO api_key_tags (key_id, position, tag) SELECT $1, p - 1, s FROM unnest($2::text[]) WITH ORDINALITY AS t(s, p)',
      [key.id, key.tags],
    )
  }
  const insertMemberRow = (c: pg.ClientBase, m: Member) =>
    c.query(insertSql('members', MEMBER_COLUMNS), rowValues(m, MEMBER_COLUMNS))
  const changedOne = (r: pg.QueryResult) => r.rowCount === 1
  /** The first row of `sql` as a record, or undefined. */
  const one = async <T>(map: (row: Record<string, unknown>) => T, sql: string, values: unknown[]) => {
    const { rows } = await query(sql, values)
    return rows[0] && map(rows[0])
  }
  const keys = async (sql: string, values: unknown[]) =>
    (await query(`${KEY_SELECT} ${sql}`, values)).rows.map(toKey)

  return {
    kind: 'postgres',
    ready,
    credentialsVersion: () => {
      if (!listener) remoteChanges++
      return localWrites * 1_000_000_007 + remoteChanges
    },
    isEmpty: async () => (await query('SELECT 1 FROM projects LIMIT 1')).rowCount === 0,
    createProjectWithOwner: async (project, owner, key) => {
      await credentialWrite(async (c) => {
        await c.query(
          insertSql('projects', PROJECT_COLUMNS),
          rowValues(project, PROJECT_COLUMNS, ['settings']),
        )
        await insertMemberRow(c, owner)
        await insertKeyRows(c, key)
      })
    },
    setProjectSettings: (id, settings) =>
      credentialWrite(async (c) =>
        changedOne(
          await c.query('UPDATE projects SET settings = $1 WHERE id = $2', [JSON.stringify(settings), id]),
        ),
      ),
    listProjects: async () =>
      (await query(`SELECT ${PROJECT_COLUMNS} FROM projects ORDER BY created_at, id`)).rows.map(toProject),
    getProject: (id) => one(toProject, `SELECT ${PROJECT_COLUMNS} FROM projects WHERE id = $1`, [id]),
    updateProject: async (id, patch) => {
      const sets: string[] = []
      const values: (string | null)[] = []
      if (patch.name !== undefined) sets.push(`name = $${values.push(patch.name)}`)
      if (patch.company !== undefined) sets.push(`company = $${values.push(patch.company)}`)
      if (sets.length === 0) return (await query('SELECT 1 FROM projects WHERE id = $1', [id])).rowCount === 1
      return credentialWrite(async (c) =>
        changedOne(
          await c.query(`UPDATE projects SET ${sets.join(', ')} WHERE id = $${values.length + 1}`, [
            ...values,
            id,
          ]),
        ),
      )
    },
    createMember: async (member) => {
      await credentialWrite((c) => insertMemberRow(c, member))
    },
    listMembers: async (projectId) =>
      (
        await query(`SELECT ${MEMBER_COLUMNS} FROM members WHERE project_id = $1 ORDER BY created_at, id`, [
          projectId,
        ])
      ).rows.map(toMember),
    getMember: (projectId, memberId) =>
      one(toMember, `SELECT ${MEMBER_COLUMNS} FROM members WHERE project_id = $1 AND id = $2`, [
        projectId,
        memberId,
      ]),
    getMemberByEmail: (projectId, email) =>
      one(toMember, `SELECT ${MEMBER_COLUMNS} FROM members WHERE project_id = $1 AND email = $2`, [
        projectId,
        email,
      ]),
    setMemberRole: (projectId, memberId, role) =>
      credentialWrite(async (c): Promise<RoleChange> => {
        // The project row is locked first, so two demotions at once cannot both see a second owner.
        await c.query('SELECT 1 FROM projects WHERE id = $1 FOR UPDATE', [projectId])
        const current = (
          await c.query<{ role: Role }>('SELECT role FROM members WHERE project_id = $1 AND id = $2', [
            projectId,
            memberId,
          ])
        ).rows[0]
        if (!current) return 'not_found'
        if (current.role === 'owner' && role !== 'owner') {
          const { rows } = await c.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM members WHERE project_id = $1 AND role = 'owner'",
            [projectId],
          )
          if ((rows[0]?.n ?? 0) <= 1) return 'last_owner'
        }
        await c.query('UPDATE members SET role = $1 WHERE project_id = $2 AND id = $3', [
          role,
          projectId,
          memberId,
        ])
        return 'updated'
      }),
    insertKey: async (key) => {
      await credentialWrite((c) => insertKeyRows(c, key))
    },
    findKeyByHash: async (hash) => {
      // The current secret first, then a secret the key was rerolled away from: one round trip.
      const { rows } = await query(
        `SELECT ${KEY_COLUMNS}, NULL::bigint AS previous_expires_at FROM ${KEY_FROM} WHERE k.hash = $1
         UNION ALL
         SELECT ${KEY_COLUMNS}, p.expires_at FROM ${KEY_FROM}
           JOIN api_key_previous_secrets p ON p.key_id = k.id WHERE p.hash = $1
         ORDER BY previous_expires_at NULLS FIRST LIMIT 1`,
        [hash],
      )
      return rows[0] && toKey(rows[0])
    },
    getKey: async (projectId, keyId) =>
      (await keys('WHERE k.project_id = $1 AND k.id = $2', [projectId, keyId]))[0],
    listKeys: async (projectId, filter) =>
      filter?.memberId
        ? keys(
            'WHERE k.project_id = $1 AND k.member_id = $2 AND k.deleted_at IS NULL ORDER BY k.created_at, k.id',
            [projectId, filter.memberId],
          )
        : keys('WHERE k.project_id = $1 AND k.deleted_at IS NULL ORDER BY k.created_at, k.id', [projectId]),
    deleteKey: (projectId, keyId, at) =>
      credentialWrite(async (c) =>
        changedOne(
          await c.query(
            'UPDATE api_keys SET deleted_at = $1 WHERE project_id = $2 AND id = $3 AND deleted_at IS NULL',
            [at, projectId, keyId],
          ),
        ),
      ),
    setKeyDisabled: (projectId, keyId, at, reason) =>
      credentialWrite(async (c) =>
        changedOne(
          await c.query(
            'UPDATE api_keys SET disabled_at = $1, disabled_reason = $2 WHERE project_id = $3 AND id = $4 AND deleted_at IS NULL',
            [at, at === null ? null : reason, projectId, keyId],
          ),
        ),
      ),
    rerollKey: (projectId, keyId, newHash, previousExpiresAt, now) =>
      credentialWrite(async (c) => {
        const old = (
          await c.query<{ hash: string }>(
            'SELECT hash FROM api_keys WHERE project_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE',
            [projectId, keyId],
          )
        ).rows[0]?.hash
        if (old === undefined) return false
        await c.query('DELETE FROM api_key_previous_secrets WHERE key_id = $1 AND expires_at <= $2', [
          keyId,
          now,
        ])
        await c.query(
          `INSERT INTO api_key_previous_secrets (hash, key_id, expires_at) VALUES ($1, $2, $3)
           ON CONFLICT (hash) DO UPDATE SET key_id = EXCLUDED.key_id, expires_at = EXCLUDED.expires_at`,
          [old, keyId, previousExpiresAt],
        )
        await c.query('UPDATE api_keys SET hash = $1 WHERE id = $2', [newHash, keyId])
        return true
      }),
    listExpiredKeys: (before, limit, pendingOnly) =>
      pendingOnly
        ? keys(
            `WHERE k.expires_at IS NOT NULL AND k.expires_at <= $1 AND k.deleted_at IS NULL
               AND (k.expiry_noted_at IS NULL OR k.expires_at <= $2)
             ORDER BY k.expires_at, k.id LIMIT $3`,
            [before, pendingOnly.sweepBefore, limit],
          )
        : keys(
            `WHERE k.expires_at IS NOT NULL AND k.expires_at <= $1 AND k.deleted_at IS NULL
             ORDER BY k.expires_at, k.id LIMIT $2`,
            [before, limit],
          ),
    noteKeyExpired: async (projectId, keyId, at) =>
      changedOne(
        await query(
          'UPDATE api_keys SET expiry_noted_at = $1 WHERE project_id = $2 AND id = $3 AND expiry_noted_at IS NULL',
          [at, projectId, keyId],
        ),
      ),
    listSigningKeys: async () =>
      (
        await query<{ kid: string; secret: Buffer; created_at: number; retired_at: number | null }>(
          'SELECT kid, secret, created_at, retired_at FROM signing_keys ORDER BY created_at, seq',
        )
      ).rows.map((r) => ({ kid: r.kid, secret: r.secret, createdAt: r.created_at, retiredAt: r.retired_at })),
    insertSigningKey: async (key) => {
      await credentialWrite((c) =>
        c.query('INSERT INTO signing_keys (kid, secret, created_at, retired_at) VALUES ($1, $2, $3, $4)', [
          key.kid,
          key.secret,
          key.createdAt,
          key.retiredAt,
        ]),
      )
    },
    retireSigningKey: (kid, at) =>
      credentialWrite(async (c) =>
        changedOne(
          await c.query('UPDATE signing_keys SET retired_at = $1 WHERE kid = $2 AND retired_at IS NULL', [
            at,
            kid,
          ]),
        ),
      ),
    insertUsage: async (r) => {
      await query(insertSql('usage_requests', USAGE_COLUMNS), rowValues(r, USAGE_COLUMNS, ['tags']))
    },
    finishUsage: async (projectId, id, e) =>
      changedOne(
        await query(
          `UPDATE usage_requests SET ended_at = $1, audio_seconds = $2, characters = $3, status = $4, detail = $5
           WHERE project_id = $6 AND id = $7`,
          [e.endedAt, e.audioSeconds, e.characters, e.status, e.detail, projectId, id],
        ),
      ),
    getUsage: (projectId, id) =>
      one(toUsage, `SELECT ${USAGE_COLUMNS} FROM usage_requests WHERE project_id = $1 AND id = $2`, [
        projectId,
        id,
      ]),
    listUsage: async (projectId, filter) => {
      const where = usageWhere(projectId, filter)
      const sql = `SELECT ${USAGE_COLUMNS} FROM usage_requests WHERE ${where.sql()}
        ORDER BY started_at DESC, id LIMIT ${where.next(filter.limit ?? null)} OFFSET ${where.next(filter.offset ?? 0)}`
      return (await query(sql, where.values)).rows.map(toUsage)
    },
    sumAudioSeconds: async (projectId, f) => {
      const where = whereBuilder(projectId)
      if (f.keyId !== undefined) where.add('key_id = ?', f.keyId)
      if (f.endUser !== undefined) where.add('end_user = ?', f.endUser)
      where.add('started_at >= ?', f.start)
      const { rows } = await query<{ total: number }>(
        `SELECT coalesce(sum(audio_seconds), 0)::float8 AS total FROM usage_requests WHERE ${where.sql()}`,
        where.values,
      )
      return rows[0]?.total ?? 0
    },
    insertAuditEvents: async (events) => {
      if (events.length === 0) return
      // One statement: all of the batch or none, in the order given.
      const perEvent = events.map((e) => rowValues(e, AUDIT_COLUMNS, ['detail']))
      const arrays = columnsOf(AUDIT_COLUMNS).map((column, i) => ({
        values: perEvent.map((v) => v[i]),
        type: column === 'at' ? 'bigint' : 'text',
      }))
      await query(
        `INSERT INTO audit_events (${AUDIT_COLUMNS})
         SELECT * FROM unnest(${arrays.map((a, i) => `$${i + 1}::${a.type}[]`).join(', ')})`,
        arrays.map((a) => a.values),
      )
    },
    listAuditEvents: async (projectId, filter) => {
      const where = auditWhere(projectId, filter)
      const sql = `SELECT ${AUDIT_COLUMNS} FROM audit_events WHERE ${where.sql()}
        ORDER BY at DESC, seq DESC LIMIT ${where.next(filter.limit ?? null)} OFFSET ${where.next(filter.offset ?? 0)}`
      return (await query(sql, where.values)).rows.map(toAudit)
    },
    close: async () => {
      if (closed) return
      closed = true
      if (retryTimer) clearTimeout(retryTimer)
      await ready.catch(() => {})
      clearInterval(heartbeat)
      const client = listener
      listener = undefined
      await client?.end().catch(() => {})
      await pool.end()
    },
  }
}

/** Opens a PostgreSQL store and waits until it is ready: migrations applied, change feed listening. */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const store = createPostgresStore(options)
  try {
    await store.ready
  } catch (err) {
    await store.close()
    throw err
  }
  return store
}
