import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type { Role } from '../../auth/scopes.js'
import { ApiError } from '../../errors.js'
import type { ApiKeyRecord, Member, RoleChange, Store } from '../store.js'
import {
  audioTotalWhere,
  auditWhere,
  numberPlaceholders,
  projectUpdate,
  type SqlQuery,
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
  type Table,
  toAudit,
  toKey,
  toMember,
  toProject,
  toSigningKey,
  toUsage,
  toUsageBucket,
  USAGE,
} from '../store-rows.js'
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

const KEY_COLUMNS = `${columnsAs(API_KEYS, 'k')},
  ARRAY(SELECT scope FROM api_key_scopes WHERE key_id = k.id ORDER BY position) AS scopes,
  ARRAY(SELECT tag FROM api_key_tags WHERE key_id = k.id ORDER BY position) AS tags,
  m.role AS member_role, m.email AS member_email`
const KEY_FROM = 'api_keys k JOIN members m ON m.id = k.member_id'
const KEY_SELECT = `SELECT ${KEY_COLUMNS} FROM ${KEY_FROM}`

/** `INSERT INTO table (columns) VALUES ($1, …)`. */
const insertRow = (t: Table) => numberPlaceholders(insertSql(t))

/** A shared query with `?` placeholders plus what follows it (`?` too), numbered as PostgreSQL wants them. */
const numbered = (q: SqlQuery, tail = '', more: unknown[] = []) => ({
  sql: numberPlaceholders(`${q.sql}${tail}`),
  values: [...q.values, ...more],
})

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
    await c.query(insertRow(API_KEYS), rowValues(API_KEYS, key))
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
  const insertMemberRow = (c: pg.ClientBase, m: Member) => c.query(insertRow(MEMBERS), rowValues(MEMBERS, m))
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
        await c.query(insertRow(PROJECTS), rowValues(PROJECTS, project))
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
      (await query(`SELECT ${PROJECTS.columns} FROM projects ORDER BY created_at, id`)).rows.map(toProject),
    getProject: (id) => one(toProject, `SELECT ${PROJECTS.columns} FROM projects WHERE id = $1`, [id]),
    updateProject: async (id, patch) => {
      const update = projectUpdate(id, patch)
      if (!update) return (await query('SELECT 1 FROM projects WHERE id = $1', [id])).rowCount === 1
      const { sql, values } = numbered(update)
      return credentialWrite(async (c) => changedOne(await c.query(sql, values)))
    },
    createMember: async (member) => {
      await credentialWrite((c) => insertMemberRow(c, member))
    },
    listMembers: async (projectId) =>
      (
        await query(`SELECT ${MEMBERS.columns} FROM members WHERE project_id = $1 ORDER BY created_at, id`, [
          projectId,
        ])
      ).rows.map(toMember),
    getMember: (projectId, memberId) =>
      one(toMember, `SELECT ${MEMBERS.columns} FROM members WHERE project_id = $1 AND id = $2`, [
        projectId,
        memberId,
      ]),
    getMemberByEmail: (projectId, email) =>
      one(toMember, `SELECT ${MEMBERS.columns} FROM members WHERE project_id = $1 AND email = $2`, [
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
      (await query(`SELECT ${SIGNING_KEYS.columns} FROM signing_keys ORDER BY created_at, seq`)).rows.map(
        toSigningKey,
      ),
    insertSigningKey: async (key) => {
      await credentialWrite((c) => c.query(insertRow(SIGNING_KEYS), rowValues(SIGNING_KEYS, key)))
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
      await query(insertRow(USAGE), rowValues(USAGE, r))
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
      one(toUsage, `SELECT ${USAGE.columns} FROM usage_requests WHERE project_id = $1 AND id = $2`, [
        projectId,
        id,
      ]),
    listUsage: async (projectId, filter) => {
      const { sql, values } = numbered(
        usageWhere(projectId, filter),
        ' ORDER BY started_at DESC, id LIMIT ? OFFSET ?',
        [filter.limit ?? null, filter.offset ?? 0],
      )
      return (await query(`SELECT ${USAGE.columns} FROM usage_requests WHERE ${sql}`, values)).rows.map(
        toUsage,
      )
    },
    summarizeUsage: async (projectId, filter, { bucket, groupBy }) => {
      const { sql, values } = numbered(usageSummaryQuery(projectId, filter, bucket, 'sum', groupBy))
      return (await query(sql, values)).rows.map(toUsageBucket)
    },
    sumAudioSeconds: async (projectId, f) => {
      const { sql, values } = numbered(audioTotalWhere(projectId, f))
      const { rows } = await query<{ total: number }>(
        `SELECT coalesce(sum(audio_seconds), 0)::float8 AS total FROM usage_requests WHERE ${sql}`,
        values,
      )
      return rows[0]?.total ?? 0
    },
    insertAuditEvents: async (events) => {
      if (events.length === 0) return
      // One statement: all of the batch or none, in the order given.
      const perEvent = events.map((e) => rowValues(AUDIT, e))
      const arrays = AUDIT.columnList.map((column, i) => ({
        values: perEvent.map((v) => v[i]),
        type: column === 'at' ? 'bigint' : 'text',
      }))
      await query(
        `INSERT INTO audit_events (${AUDIT.columns})
         SELECT * FROM unnest(${arrays.map((a, i) => `$${i + 1}::${a.type}[]`).join(', ')})`,
        arrays.map((a) => a.values),
      )
    },
    listAuditEvents: async (projectId, filter) => {
      const { sql, values } = numbered(
        auditWhere(projectId, filter),
        ' ORDER BY at DESC, seq DESC LIMIT ? OFFSET ?',
        [filter.limit ?? null, filter.offset ?? 0],
      )
      return (await query(`SELECT ${AUDIT.columns} FROM audit_events WHERE ${sql}`, values)).rows.map(toAudit)
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
