import type { FastifyInstance, RouteOptions } from 'fastify'
import {
  type Authenticator,
  createAuthenticator,
  createGrants,
  createManualClock,
  type ManualClock,
} from '../../src/auth/index.js'
import type { Engine } from '../../src/engines/index.js'
import { type AppOptions, createApp } from '../../src/http/index.js'
import { createLogger } from '../../src/main.js'
import {
  addMember,
  bootstrapIfEmpty,
  insertKey,
  type KeySpec,
  parseKeySpec,
  type Services,
} from '../../src/projects/index.js'
import { createLiveStreams, type LiveStreams } from '../../src/revocation/index.js'
import type { Member } from '../../src/store/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { recordSecrets, recordSecretsOf, testLogDestination } from './test-logs.js'

export interface TestEarmark {
  app: FastifyInstance
  services: Services
  authenticator: Authenticator
  clock: ManualClock
  routes: RouteOptions[]
  /** The live-stream registry the streams and grants APIs read (no socket server here: empty unless filled). */
  streams: LiveStreams
  close(): Promise<void>
}

/**
 * An in-process Earmark on a throwaway SQLite store and a manual clock, for `app.inject()` tests; with an
 * engine, `/v1/listen` is served too.
 */
export async function createTestEarmark(
  path = ':memory:',
  speech: { engine?: Engine; options?: AppOptions['speech']; speak?: AppOptions['speak'] } = {},
): Promise<TestEarmark> {
  const clock = createManualClock()
  const store = createSqliteStore({ path })
  const grants = await createGrants({ store, clock })
  const services: Services = { store, clock, grants }
  const authenticator = createAuthenticator(services)
  const routes: RouteOptions[] = []
  const streams = createLiveStreams({ clock })
  // Collected for the log-scan test (test/helpers/test-logs.ts); silent otherwise.
  const logTo = testLogDestination('inproc')
  const app = await createApp({
    services,
    authenticator,
    ...(logTo ? { logger: createLogger({ logLevel: 'debug' }, logTo), accessLog: true } : {}),
    onRoute: (r) => routes.push(r),
    streams,
    ...(speech.speak ? { speak: speech.speak } : {}),
    ...(speech.engine ? { engine: speech.engine, speech: speech.options } : {}),
  })
  recordSecretsOf(app)
  await app.ready()
  return {
    app,
    services,
    authenticator,
    clock,
    routes,
    streams,
    close: async () => {
      await app.close()
      await store.close()
    },
  }
}

export interface Fixture {
  projectId: string
  ownerKey: string
  owner: Member
}

/** Bootstraps a project (with a generated owner key) and returns it. */
export async function bootstrapProject(services: Services, name = 'Test'): Promise<Fixture> {
  const existing = await services.store.isEmpty()
  if (!existing) throw new Error('bootstrapProject needs an empty store')
  const result = await bootstrapIfEmpty(services, { projectName: name })
  if (!result?.generatedSecret) throw new Error('bootstrap did not run')
  recordSecrets(result.generatedSecret)
  return { projectId: result.project.id, ownerKey: result.generatedSecret, owner: result.owner }
}

/** Creates a key directly in the store for `member`; returns its secret and id. */
export async function makeKey(
  services: Services,
  member: Member,
  spec: Partial<KeySpec> & { scopes: string[] },
): Promise<{ secret: string; id: string }> {
  const full = parseKeySpec({ comment: 'test key', ...spec }, services.clock.now())
  full.expiresAt = spec.expiresAt ?? full.expiresAt
  const { record, secret } = await insertKey(services, member, full)
  recordSecrets(secret)
  return { secret, id: record.id }
}

export { addMember }

/** `Authorization` header for a key or a grant token. */
export const tokenAuth = (secret: string) => ({ authorization: `Token ${secret}` })
export const bearerAuth = (jwt: string) => ({ authorization: `Bearer ${jwt}` })

/** A second project with its own owner, made directly in the store (bootstrap only runs on an empty one). */
export async function createOtherProject(services: Services, name = 'Other'): Promise<Fixture> {
  const { randomUUID } = await import('node:crypto')
  const { newKeyRecord } = await import('../../src/projects/index.js')
  const now = services.clock.now()
  const project = { id: randomUUID(), name, company: null, settings: {}, createdAt: now }
  const owner: Member = {
    id: randomUUID(),
    projectId: project.id,
    email: 'owner@other.example',
    firstName: null,
    lastName: null,
    role: 'owner',
    createdAt: now,
  }
  const { record, secret } = newKeyRecord(
    owner,
    { comment: 'other', scopes: ['owner'], tags: [], expiresAt: null },
    now,
  )
  await services.store.createProjectWithOwner(project, owner, record)
  recordSecrets(secret)
  return { projectId: project.id, ownerKey: secret, owner }
}
