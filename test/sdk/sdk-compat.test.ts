import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createClient as createClientV3, DeepgramApiError as DeepgramApiErrorV3 } from 'dg3'
import { createClient as createClientV4, DeepgramApiError as DeepgramApiErrorV4 } from 'dg4'
import { DeepgramClient, DeepgramError } from 'dg5'
import { removeDir, type ServerProcess, startServerProcess } from '../helpers/server-process.js'

// The official SDKs (v3 3.13, v4 4.11, v5 5.13) against one real `earmark serve` process: the same story is
// told through each SDK's own methods and typed response paths (docs/deepgram-compat.md §1-§3).

const OWNER_KEY = `emk_test_${randomBytes(16).toString('hex')}`
/** Short, so expiry is shown by a real wait without slowing the file down. */
const KEY_TTL_SECONDS = 3

/** A call the server refused, as the SDK surfaced it: HTTP status and the Deepgram `err_code`. */
class Refused extends Error {
  readonly status: number | undefined
  readonly code: unknown
  constructor(sdkError: string, status: number | undefined, code: unknown) {
    super(`${sdkError}: ${status} ${String(code)}`)
    this.name = 'Refused'
    this.status = status
    this.code = code
  }
}

type KeyBody = { comment: string; scopes: string[]; tags: string[]; time_to_live_in_seconds?: number }

interface CreatedKey {
  key?: string
  api_key_id?: string
  comment?: string
  scopes?: string[]
  tags?: string[]
  expiration_date?: string
}

interface KeyView {
  api_key_id?: string
  comment?: string
  scopes?: string[]
  tags?: string[]
  expiration_date?: string
}

interface Grant {
  access_token: string
  expires_in?: number
}

/** One SDK version behind the operations the story needs, each read through that SDK's own typed path. */
interface SdkUnderTest {
  /** False for v3 3.13: `auth.grantToken()` takes no options and posts an empty body. */
  sendsGrantTtl: boolean
  listProjectIds(key: string): Promise<string[]>
  createKey(key: string, projectId: string, body: KeyBody): Promise<CreatedKey>
  listKeyIds(key: string, projectId: string): Promise<string[]>
  /** The key as the SDK's get-key type reaches it (v3/v4 `api_key`, v5 `item.member.api_key`). */
  getKey(key: string, projectId: string, keyId: string): Promise<KeyView | undefined>
  grant(key: string, ttlSeconds: number): Promise<Grant>
  /** A management call (list keys) with a grant token as the credential. */
  listKeyIdsWithToken(token: string, projectId: string): Promise<string[]>
  /** `GET /v1/auth/token` with a grant token. */
  tokenDetails(token: string): Promise<Record<string, unknown>>
  deleteKey(key: string, projectId: string, keyId: string): Promise<void>
}

/** v3/v4 put `JSON.stringify(body)` in the message when the body has no `msg`/`message` (AbstractRestClient). */
function errCodeOf(message: string): unknown {
  try {
    const body: unknown = JSON.parse(message)
    return typeof body === 'object' && body !== null && 'err_code' in body ? body.err_code : undefined
  } catch {
    return undefined
  }
}

type ApiErrorClass = new (message: string, status: number) => Error & { status: number }

/** v3/v4 return `{ result, error }`; an HTTP failure is a `DeepgramApiError` with `status`. */
function unwrapper(ApiError: ApiErrorClass) {
  const refusal = (error: Error): Error =>
    error instanceof ApiError ? new Refused(error.name, error.status, errCodeOf(error.message)) : error
  return {
    result<T>(res: { result: T | null; error: Error | null }): T {
      if (res.error !== null) throw refusal(res.error)
      if (res.result === null) throw new Error('neither a result nor an error')
      return res.result
    },
    done(res: { error: Error | null }): void {
      if (res.error !== null) throw refusal(res.error)
    },
  }
}

function sdkV3(url: string): SdkUnderTest {
  const { result, done } = unwrapper(DeepgramApiErrorV3)
  const client = (key: string) => createClientV3(key, { global: { url } })
  // v3 has no Bearer option; a caller-set Authorization header wins over `Token <key>` (lib/fetch.ts), and the
  // constructor still insists on some key.
  const tokenClient = (token: string) =>
    createClientV3('unused', { global: { url, headers: { Authorization: `Bearer ${token}` } } })
  return {
    sendsGrantTtl: false,
    listProjectIds: async (key) =>
      result(await client(key).manage.getProjects()).projects.map((p) => p.project_id),
    createKey: async (key, projectId, body) =>
      result(await client(key).manage.createProjectKey(projectId, body)),
    listKeyIds: async (key, projectId) =>
      result(await client(key).manage.getProjectKeys(projectId)).api_keys.map((k) => k.api_key.api_key_id),
    getKey: async (key, projectId, keyId) =>
      result(await client(key).manage.getProjectKey(projectId, keyId)).api_key,
    grant: async (key) => result(await client(key).auth.grantToken()),
    listKeyIdsWithToken: async (token, projectId) =>
      result(await tokenClient(token).manage.getProjectKeys(projectId)).api_keys.map(
        (k) => k.api_key.api_key_id,
      ),
    tokenDetails: async (token) => result(await tokenClient(token).manage.getTokenDetails()),
    deleteKey: async (key, projectId, keyId) =>
      done(await client(key).manage.deleteProjectKey(projectId, keyId)),
  }
}

function sdkV4(url: string): SdkUnderTest {
  const { result, done } = unwrapper(DeepgramApiErrorV4)
  const client = (key: string) => createClientV4(key, { global: { url } })
  // `accessToken` (4.5+) makes every REST call send `Bearer <token>`.
  const tokenClient = (token: string) => createClientV4({ accessToken: token, global: { url } })
  return {
    sendsGrantTtl: true,
    listProjectIds: async (key) =>
      result(await client(key).manage.getProjects()).projects.map((p) => p.project_id),
    createKey: async (key, projectId, body) =>
      result(await client(key).manage.createProjectKey(projectId, body)),
    listKeyIds: async (key, projectId) =>
      result(await client(key).manage.getProjectKeys(projectId)).api_keys.map((k) => k.api_key.api_key_id),
    getKey: async (key, projectId, keyId) =>
      result(await client(key).manage.getProjectKey(projectId, keyId)).api_key,
    grant: async (key, ttlSeconds) => result(await client(key).auth.grantToken({ ttl_seconds: ttlSeconds })),
    listKeyIdsWithToken: async (token, projectId) =>
      result(await tokenClient(token).manage.getProjectKeys(projectId)).api_keys.map(
        (k) => k.api_key.api_key_id,
      ),
    tokenDetails: async (token) => result(await tokenClient(token).manage.getTokenDetails()),
    deleteKey: async (key, projectId, keyId) =>
      done(await client(key).manage.deleteProjectKey(projectId, keyId)),
  }
}

/** v5 throws: `DeepgramError` (or its `BadRequestError` subclass) with `statusCode` and the parsed `body`. */
async function v5<T>(call: Promise<T>): Promise<T> {
  try {
    return await call
  } catch (err) {
    if (!(err instanceof DeepgramError)) throw err
    const body = err.body
    const code = typeof body === 'object' && body !== null && 'err_code' in body ? body.err_code : undefined
    throw new Refused(err.name, err.statusCode, code)
  }
}

function sdkV5(url: string): SdkUnderTest {
  const client = (apiKey: string) => new DeepgramClient({ apiKey, baseUrl: url })
  const tokenClient = (accessToken: string) => new DeepgramClient({ accessToken, baseUrl: url })
  return {
    sendsGrantTtl: true,
    listProjectIds: async (key) =>
      ((await v5(client(key).manage.v1.projects.list())).projects ?? []).map((p) => p.project_id ?? ''),
    createKey: (key, projectId, body) => v5(client(key).manage.v1.projects.keys.create(projectId, body)),
    listKeyIds: async (key, projectId) =>
      ((await v5(client(key).manage.v1.projects.keys.list(projectId))).api_keys ?? []).map(
        (k) => k.api_key?.api_key_id ?? '',
      ),
    getKey: async (key, projectId, keyId) =>
      (await v5(client(key).manage.v1.projects.keys.get(projectId, keyId))).item?.member?.api_key,
    grant: (key, ttlSeconds) => v5(client(key).auth.v1.tokens.grant({ ttl_seconds: ttlSeconds })),
    listKeyIdsWithToken: async (token, projectId) =>
      ((await v5(tokenClient(token).manage.v1.projects.keys.list(projectId))).api_keys ?? []).map(
        (k) => k.api_key?.api_key_id ?? '',
      ),
    // v5 has no method for `GET /v1/auth/token` (docs/deepgram-compat.md §2).
    tokenDetails: async (token) => {
      const res = await fetch(`${url}/v1/auth/token`, { headers: { authorization: `Bearer ${token}` } })
      const body = (await res.json()) as Record<string, unknown>
      if (!res.ok) throw new Refused('fetch', res.status, body.err_code)
      return body
    },
    deleteKey: async (key, projectId, keyId) => {
      await v5(client(key).manage.v1.projects.keys.delete(projectId, keyId))
    },
  }
}

const SDKS = [
  { name: 'v3 (@deepgram/sdk 3.13.0)', make: sdkV3 },
  { name: 'v4 (@deepgram/sdk 4.11.3)', make: sdkV4 },
  { name: 'v5 (@deepgram/sdk 5.13.0)', make: sdkV5 },
]

const INVALID_AUTH = { status: 401, code: 'INVALID_AUTH' }
const FORBIDDEN = { status: 403, code: 'FORBIDDEN' }

describe('the official Deepgram JS SDK against a real Earmark process', { timeout: 60_000 }, () => {
  let server: ServerProcess | undefined
  /** Every key secret and access token the story handled; none may reach the server's output. */
  const secrets = new Set<string>([OWNER_KEY])

  const running = (): ServerProcess => {
    if (!server) throw new Error('the server did not start')
    return server
  }

  before(async () => {
    server = await startServerProcess({ bootstrapKey: OWNER_KEY })
  })

  after(async () => {
    if (!server) return
    await server.stop()
    removeDir(server.dataDir)
  })

  for (const { name, make } of SDKS) {
    describe(name, () => {
      let sdk: SdkUnderTest
      let projectId = ''
      let shortLived: { key: string; id: string; expiresAt: number } = { key: '', id: '', expiresAt: 0 }
      let grant: Grant = { access_token: '' }

      before(() => {
        sdk = make(running().url)
      })

      it('lists the one project the owner key belongs to', async () => {
        const ids = await sdk.listProjectIds(OWNER_KEY)
        assert.equal(ids.length, 1)
        projectId = ids[0] ?? ''
        assert.ok(projectId)
      })

      it('creates a member key whose expiration_date is time_to_live_in_seconds ahead', async () => {
        const tags = ['sdk-compat', name.slice(0, 2)]
        const startedAt = Date.now()
        const created = await sdk.createKey(OWNER_KEY, projectId, {
          comment: `short-lived ${name}`,
          scopes: ['member'],
          tags,
          time_to_live_in_seconds: KEY_TTL_SECONDS,
        })
        const endedAt = Date.now()
        const { key, api_key_id: id } = created
        assert.ok(key && id, 'the response holds the secret and the id')
        secrets.add(key)
        assert.ok(key.startsWith('emk_'), 'the secret is an Earmark key')
        assert.equal(created.comment, `short-lived ${name}`)
        assert.deepEqual(created.scopes, ['member'])
        assert.deepEqual(created.tags, tags)
        const expiresAt = Date.parse(created.expiration_date ?? '')
        assert.ok(
          expiresAt >= startedAt + KEY_TTL_SECONDS * 1000 && expiresAt <= endedAt + KEY_TTL_SECONDS * 1000,
          `expiration_date ${created.expiration_date} is ${KEY_TTL_SECONDS} s after the request`,
        )
        shortLived = { key, id, expiresAt }
      })

      it('finds the new key in the key list and gets it by id through the typed path', async () => {
        assert.ok((await sdk.listKeyIds(OWNER_KEY, projectId)).includes(shortLived.id))
        const view = await sdk.getKey(OWNER_KEY, projectId, shortLived.id)
        assert.ok(view, 'the typed get-key path is present')
        assert.equal(view.api_key_id, shortLived.id)
        assert.equal(view.comment, `short-lived ${name}`)
        assert.deepEqual(view.scopes, ['member'])
        assert.equal(Date.parse(view.expiration_date ?? ''), shortLived.expiresAt)
        assert.equal(Object.hasOwn(view, 'key'), false, 'the secret is shown only at creation')
      })

      it('authenticates with the new key while it is live', async () => {
        assert.deepEqual(await sdk.listProjectIds(shortLived.key), [projectId])
      })

      it('grants a token with the new key that lives no longer than the key', async () => {
        grant = await sdk.grant(shortLived.key, 60)
        secrets.add(grant.access_token)
        assert.equal(typeof grant.access_token, 'string')
        assert.ok(grant.access_token.length > 0)
        assert.equal(typeof grant.expires_in, 'number')
        const expiresIn = grant.expires_in ?? 0
        const keyLeft = Math.ceil((shortLived.expiresAt - Date.now()) / 1000)
        assert.ok(
          expiresIn >= 1 && expiresIn <= keyLeft,
          `expires_in ${expiresIn} within the key's ${keyLeft} s`,
        )
      })

      it('refuses the grant token for management with 403 FORBIDDEN', async () => {
        await assert.rejects(sdk.listKeyIdsWithToken(grant.access_token, projectId), FORBIDDEN)
      })

      it('accepts the grant token on GET /v1/auth/token', async () => {
        const details = await sdk.tokenDetails(grant.access_token)
        assert.equal(details.type, 'access_token')
        assert.equal(details.project_id, projectId)
        assert.equal(details.accessor, shortLived.id)
        assert.deepEqual(details.scopes, ['usage:write'])
      })

      it('grants for the requested ttl_seconds from a key that never expires (v3: the 30 s default)', async () => {
        const ownerGrant = await sdk.grant(OWNER_KEY, 45)
        secrets.add(ownerGrant.access_token)
        const expected = sdk.sendsGrantTtl ? 45 : 30
        const expiresIn = ownerGrant.expires_in ?? 0
        // expires_in is counted from a second boundary the request may straddle.
        assert.ok(expiresIn === expected || expiresIn === expected - 1, `expires_in ${expiresIn}`)
      })

      it('refuses the key with 401 INVALID_AUTH once its TTL has passed, and its grant token with it', async () => {
        await sleep(Math.max(0, shortLived.expiresAt - Date.now()) + 250)
        await assert.rejects(sdk.listProjectIds(shortLived.key), INVALID_AUTH)
        await assert.rejects(sdk.tokenDetails(grant.access_token), INVALID_AUTH)
      })

      it('refuses a deleted key at once with 401 INVALID_AUTH', async () => {
        const doomed = await sdk.createKey(OWNER_KEY, projectId, {
          comment: `deleted ${name}`,
          scopes: ['member'],
          tags: ['sdk-compat'],
        })
        const { key, api_key_id: id } = doomed
        assert.ok(key && id, 'the response holds the secret and the id')
        secrets.add(key)
        assert.ok(key.startsWith('emk_'))
        assert.equal(doomed.expiration_date, undefined, 'a key without a TTL never expires')
        assert.deepEqual(await sdk.listProjectIds(key), [projectId])

        await sdk.deleteKey(OWNER_KEY, projectId, id)
        await assert.rejects(sdk.listProjectIds(key), INVALID_AUTH)
        assert.equal((await sdk.listKeyIds(OWNER_KEY, projectId)).includes(id), false)
      })
    })
  }

  it('never writes a key secret or an access token to its output', async () => {
    const proc = running()
    await proc.stop()
    // 'exit' can come before the pipes drain: wait for them, so every line is in `output`.
    for (const stream of [proc.child.stdout, proc.child.stderr] as (Readable | null)[]) {
      if (stream && !stream.closed) await once(stream, 'close')
    }
    assert.ok(
      proc.output.some((line) => line.includes('"path":"/v1/auth/grant"')),
      'the access log saw the grants',
    )
    assert.ok(secrets.size >= 1 + SDKS.length * 4)
    for (const secret of secrets) {
      // Report where, never what: the message must not print the secret either.
      const at = proc.output.findIndex((line) => line.includes(secret))
      assert.equal(at, -1, `a secret (${secret.slice(0, 4)}…) appeared on output line ${at}`)
    }
  })
})
