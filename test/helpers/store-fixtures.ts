import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import type { ApiKeyRecord, Member, Project, Store, UsageRecord } from '../../src/store/index.js'
import { createPostgresStore } from '../../src/store/postgres/postgres-store.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { testDatabaseFor } from './postgres.js'

// Store records and backends for tests that talk to a `Store` directly: unique ids, fixed times unless given.

/** 2026-01-01T00:00:00Z: the time every fixture is created at. */
export const T0 = Date.UTC(2026, 0, 1)

export function project(over: Partial<Project> = {}): Project {
  return { id: randomUUID(), name: 'P', company: null, createdAt: T0, settings: {}, ...over }
}

/** A member of `projectId`, an owner with a unique e-mail unless told otherwise. */
export function member(projectId: string, over: Partial<Member> = {}): Member {
  return {
    id: randomUUID(),
    projectId,
    email: `${randomUUID()}@example.com`,
    firstName: 'Ann',
    lastName: null,
    role: 'owner',
    createdAt: T0,
    ...over,
  }
}

/** A live key of `m` with a random hash, two scopes and two tags. */
export function key(m: Member, over: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id: randomUUID(),
    projectId: m.projectId,
    memberId: m.id,
    hash: randomBytes(32).toString('hex'),
    comment: 'c',
    scopes: ['usage:write', 'member'],
    tags: ['b', 'a'],
    createdAt: T0,
    expiresAt: null,
    deletedAt: null,
    options: {},
    disabledAt: null,
    disabledReason: null,
    ...over,
  }
}

/** A project, its owner, and a maker of the owner's keys: what `createProjectWithOwner` takes, and more keys. */
export function ownedProject(): { p: Project; o: Member; k: (over?: Partial<ApiKeyRecord>) => ApiKeyRecord } {
  const p = project()
  const o = member(p.id)
  return { p, o, k: (over) => key(o, over) }
}

/** A finished `listen` request of `projectId` and key `keyId`, started at `startedAt`, unless told otherwise. */
export function usage(
  projectId: string,
  keyId: string,
  startedAt: number,
  over: Partial<UsageRecord> = {},
): UsageRecord {
  return {
    id: randomUUID(),
    projectId,
    keyId,
    endUser: null,
    tags: [],
    endpoint: 'listen',
    method: 'streaming',
    path: '/v1/listen',
    model: null,
    startedAt,
    endedAt: startedAt + 1000,
    audioSeconds: 0,
    characters: 0,
    status: 1000,
    detail: null,
    ...over,
  }
}

const databases = new Map<string, string>()
/**
 * The store backends, each opened on a test's data directory: SQLite a file in it, PostgreSQL one throwaway
 * database per directory on the local cluster (the same directory opens the same data, as a path would),
 * dropped by `dropTestDatabases` (test/helpers/postgres.ts).
 */
export const STORE_BACKENDS: Record<string, (dir: string) => Store> = {
  sqlite: (dir) => createSqliteStore({ path: join(dir, 'store.sqlite') }),
  postgres: (dir) => createPostgresStore({ url: testDatabaseFor(dir, databases) }),
}

/** The backends named in STORES (default: both), for suites that run once per backend. */
export const selectedStores = (): string[] =>
  (process.env.STORES ?? 'sqlite,postgres').split(',').map((s) => s.trim())
