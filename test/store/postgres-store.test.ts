import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import pg from 'pg'
import { ApiError } from '../../src/errors.js'
import type { Store } from '../../src/store/index.js'
import { POSTGRES_MIGRATIONS } from '../../src/store/postgres/postgres-migrations.js'
import {
  createPostgresStore,
  LISTEN_APPLICATION_NAME,
  openPostgresStore,
} from '../../src/store/postgres/postgres-store.js'
import { createTestDatabase, dropTestDatabases } from '../helpers/postgres.js'
import { ownedProject, T0 } from '../helpers/store-fixtures.js'

// What only the PostgreSQL backend has: the LISTEN/NOTIFY change feed between nodes, migrations under an
// advisory lock, and a 503 when the database cannot be reached (docs/store.md).

after(() => dropTestDatabases())

/** Resolves with the ms until `store.credentialsVersion()` differs from `from`, checking every turn of the loop. */
async function versionMoves(store: Store, from: number, started: number, limitMs: number): Promise<number> {
  for (;;) {
    const elapsed = performance.now() - started
    if (store.credentialsVersion() !== from) return elapsed
    if (elapsed > limitMs) return Number.POSITIVE_INFINITY
    await new Promise((resolve) => setImmediate(resolve))
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0

describe('PostgreSQL store', () => {
  it("sees another node's key deletion through credentialsVersion() within 100 ms", async () => {
    const url = createTestDatabase()
    const a = await openPostgresStore({ url })
    const b = await openPostgresStore({ url })
    try {
      const { p, o, k } = ownedProject()
      const first = k()
      await a.createProjectWithOwner(p, o, first)
      const delays: number[] = []
      for (let i = 0; i < 30; i++) {
        const doomed = k()
        await a.insertKey(doomed)
        assert.equal((await b.findKeyByHash(doomed.hash))?.deletedAt, null, 'B sees the new key at once')
        const before = b.credentialsVersion()
        const started = performance.now()
        const seen = versionMoves(b, before, started, 1000)
        assert.equal(await a.deleteKey(p.id, doomed.id, T0 + i), true)
        const ms = await seen
        assert.ok(ms < 100, `B saw the deletion after ${ms.toFixed(2)} ms`)
        assert.equal((await b.findKeyByHash(doomed.hash))?.deletedAt, T0 + i, 'and reads it deleted')
        delays.push(ms)
      }
      delays.sort((x, y) => x - y)
      console.log(
        `postgres change feed, A's deleteKey called → B's version moved (${delays.length} runs): ` +
          `p50 ${percentile(delays, 0.5).toFixed(2)} ms, p99 ${percentile(delays, 0.99).toFixed(2)} ms, ` +
          `max ${delays.at(-1)?.toFixed(2)} ms`,
      )
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('applies the migrations once when several stores start on an empty database at the same time', async () => {
    const url = createTestDatabase()
    const stores = Array.from({ length: 4 }, () => createPostgresStore({ url }))
    try {
      await Promise.all(stores.map((s) => s.ready))
      const results = await Promise.all(stores.map((s) => s.isEmpty()))
      assert.deepEqual(results, [true, true, true, true])
    } finally {
      await Promise.all(stores.map((s) => s.close()))
    }
    const client = new pg.Client({ connectionString: url })
    await client.connect()
    try {
      const { rows } = await client.query<{ version: number }>(
        'SELECT version FROM schema_migrations ORDER BY version',
      )
      assert.deepEqual(
        rows.map((r) => r.version),
        POSTGRES_MIGRATIONS.map((m) => m.version),
        'each version recorded once',
      )
    } finally {
      await client.end()
    }
  })

  it('drops what callers cached when its LISTEN connection is cut, and listens again by itself', async () => {
    const url = createTestDatabase()
    const a = await openPostgresStore({ url })
    const b = await openPostgresStore({ url, onError: () => {} })
    const admin = new pg.Client({ connectionString: url })
    await admin.connect()
    try {
      const before = b.credentialsVersion()
      // Cut every connection of B's LISTEN session (the one that listens on the channel).
      const { rowCount } = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`,
      )
      assert.ok((rowCount ?? 0) >= 1)
      assert.ok(Number.isFinite(await versionMoves(b, before, performance.now(), 2000)), 'the version moved')
      // Listening again: a change by A is seen by B while B's version is otherwise still.
      const deadline = performance.now() + 5000
      let steady = false
      while (!steady && performance.now() < deadline) {
        const v = b.credentialsVersion()
        await new Promise((resolve) => setTimeout(resolve, 50))
        steady = b.credentialsVersion() === v
      }
      assert.ok(steady, 'B listens again (its version stops moving on every call)')
      const { p, o, k } = ownedProject()
      const v = b.credentialsVersion()
      await a.createProjectWithOwner(p, o, k())
      assert.notEqual(b.credentialsVersion(), v, "A's write reached B after the reconnect")
    } finally {
      await admin.end()
      await a.close()
      await b.close()
    }
  })

  it('notices a LISTEN connection that stopped answering, drops what callers cached, and listens again', {
    skip: process.getuid?.() !== 0 && 'pausing a PostgreSQL backend needs root',
  }, async () => {
    const url = createTestDatabase()
    const b = await openPostgresStore({ url, onError: () => {} })
    const admin = new pg.Client({ connectionString: url })
    await admin.connect()
    let pid: number | undefined
    try {
      const { rows } = await admin.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1',
        [LISTEN_APPLICATION_NAME],
      )
      assert.equal(rows.length, 1, 'one LISTEN connection')
      pid = rows[0]?.pid as number
      // The backend stops answering while its TCP connection stays up: a cut without a word.
      process.kill(pid, 'SIGSTOP')
      const before = b.credentialsVersion()
      const started = performance.now()
      const ms = await versionMoves(b, before, started, 15_000)
      console.log(`a silent LISTEN connection noticed after ${ms.toFixed(0)} ms`)
      assert.ok(ms < 6_000, 'within two heartbeats (2 s each) and a margin')
    } finally {
      if (pid !== undefined) {
        process.kill(pid, 'SIGCONT')
        await admin.query('SELECT pg_terminate_backend($1)', [pid]).catch(() => {})
      }
      await admin.end()
      await b.close()
    }
  })

  it('answers 503 SERVICE_UNAVAILABLE when the database cannot be reached', async () => {
    await assert.rejects(
      openPostgresStore({ url: 'postgres://postgres@127.0.0.1:1/nowhere', connectTimeoutMs: 2000 }),
      (err) => err instanceof ApiError && err.code === 'SERVICE_UNAVAILABLE' && err.status === 503,
    )
  })
})
