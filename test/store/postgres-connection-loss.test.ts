import assert from 'node:assert/strict'
import { createConnection, createServer, type Socket } from 'node:net'
import { after, describe, it } from 'node:test'
import pg from 'pg'
import { ApiError } from '../../src/errors.js'
import { openPostgresStore } from '../../src/store/postgres/postgres-store.js'
import { createTestDatabase, dropTestDatabases } from '../helpers/postgres.js'

// A connection cut while a transaction holds it (a crash, a network cut): the pg client emits an 'error'
// event besides failing the statement, and the pool does not listen while the connection is checked out.
// Unheard, that event ended the process (found by test/store/postgres-restart.test.ts). The cut is made by a
// TCP proxy between the store and PostgreSQL, so the machine's server is never disturbed.

after(() => dropTestDatabases())

/** A loopback TCP proxy to `target`; `cut()` closes every connection through it (new ones still pass). */
async function startProxy(target: URL) {
  const open = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = createConnection(Number(target.port), target.hostname)
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      open.add(a)
      a.pipe(b)
      a.on('error', () => b.destroy())
      a.on('close', () => {
        open.delete(a)
        b.destroy()
      })
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  const url = new URL(target)
  url.port = String(port)
  return {
    url: url.toString(),
    cut: () => {
      for (const socket of open) socket.destroy()
    },
    close: () => {
      for (const socket of open) socket.destroy()
      return new Promise((resolve) => server.close(resolve))
    },
  }
}

describe('PostgreSQL store, a connection cut inside a transaction', () => {
  it('answers 503 SERVICE_UNAVAILABLE, keeps the process alive and serves the next write', async () => {
    const url = createTestDatabase()
    const proxy = await startProxy(new URL(url))
    const reported: unknown[] = []
    const store = await openPostgresStore({ url: proxy.url, onError: (err) => reported.push(err) })
    const admin = new pg.Client({ connectionString: url })
    await admin.connect()
    try {
      // The store's UPDATE waits for this lock inside its transaction, so the cut lands mid-transaction.
      await admin.query('BEGIN')
      await admin.query('LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE')
      const write = store.deleteKey('no-project', 'no-key', Date.now())
      const waiting = async () =>
        (
          await admin.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          )
        ).rows
      let blocked = await waiting()
      for (let i = 0; blocked.length === 0 && i < 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 25))
        blocked = await waiting()
      }
      assert.equal(blocked.length, 1, 'the write waits inside its transaction')
      // No error message from the server, only the socket closing while the statement runs.
      proxy.cut()
      await assert.rejects(write, (err) => err instanceof ApiError && err.code === 'SERVICE_UNAVAILABLE')
      await admin.query('ROLLBACK')
      assert.ok(reported.length >= 1, 'the lost connection is reported')
      assert.equal(await store.deleteKey('no-project', 'no-key', Date.now()), false, 'the next write runs')
    } finally {
      await admin.end()
      await store.close()
      await proxy.close()
    }
  })
})
