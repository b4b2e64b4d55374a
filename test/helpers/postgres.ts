import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'

/**
 * Throwaway PostgreSQL databases for tests, on the local cluster (127.0.0.1:5432, trust authentication).
 * Each is created with a random name and dropped by `dropTestDatabases` (docs/store.md).
 */
const HOST = process.env.PGHOST ?? '127.0.0.1'
const PORT = process.env.PGPORT ?? '5432'
const USER = process.env.PGUSER ?? 'postgres'
const created = new Set<string>()

const connection = ['-h', HOST, '-p', PORT, '-U', USER]

/** Creates an empty database and returns its `postgres://` URL. Synchronous, so a store factory can call it. */
export function createTestDatabase(): string {
  const name = `earmark_test_${randomBytes(6).toString('hex')}`
  execFileSync('createdb', [...connection, name], { stdio: ['ignore', 'ignore', 'pipe'] })
  created.add(name)
  return `postgres://${encodeURIComponent(USER)}@${HOST}:${PORT}/${name}`
}

/** Drops every database this process created (connections to them are ended first). */
export function dropTestDatabases(): void {
  for (const name of created) {
    execFileSync('dropdb', [...connection, '--force', '--if-exists', name], {
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    created.delete(name)
  }
}

/** One database per key (a test's data directory): the same key opens the same data, as a path would. */
export function testDatabaseFor(key: string, byKey: Map<string, string>): string {
  let url = byKey.get(key)
  if (!url) {
    url = createTestDatabase()
    byKey.set(key, url)
  }
  return url
}
