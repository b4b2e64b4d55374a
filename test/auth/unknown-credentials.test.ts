import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createSigner } from 'fast-jwt'
import {
  type Authenticator,
  createAuthenticator,
  createGrants,
  createManualClock,
  type Grants,
  generateKeySecret,
  hashKeySecret,
} from '../../src/auth/index.js'
import { isApiError } from '../../src/errors.js'
import { newKeyRecord, type Services } from '../../src/projects/index.js'
import type { Store } from '../../src/store/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { bootstrapProject, type Fixture } from '../helpers/earmark.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'

// Unknown key hashes and unknown `kid`s are cached apart from the known ones (docs/store.md, "What the caches
// hold"): on a real SQLite file, with the store wrapped to count the queries the authenticator makes.

/** `store` with a count of every call of each method. */
function countingStore(store: Store): { store: Store; calls: Map<string, number> } {
  const calls = new Map<string, number>()
  const wrapped = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver)
      if (typeof value !== 'function' || typeof name !== 'string') return value
      return (...args: unknown[]) => {
        calls.set(name, (calls.get(name) ?? 0) + 1)
        return (value as (...a: unknown[]) => unknown).apply(target, args)
      }
    },
  })
  return { store: wrapped, calls }
}

async function refused(auth: Authenticator, secret: string): Promise<void> {
  await assert.rejects(
    auth.authenticate('token', secret),
    (err) => isApiError(err) && err.code === 'INVALID_AUTH',
  )
}

describe('unknown key secrets and kids are cached apart from known ones', () => {
  const dir = tempDataDir()
  const base = createSqliteStore({ path: join(dir, 'earmark.db') })
  const { store, calls } = countingStore(base)
  const clock = createManualClock()
  let grants: Grants
  let services: Services
  let fixture: Fixture
  const count = (name: string) => calls.get(name) ?? 0

  before(async () => {
    grants = await createGrants({ store, clock })
    services = { store, clock, grants }
    fixture = await bootstrapProject(services)
  })
  after(async () => {
    await base.close()
    removeDir(dir)
  })

  it('10 000 distinct random secrets never push a hot key out of its cache', async () => {
    // Default sizes: 10 000 keys, 4 096 unknown secrets. Before the split, 10 000 misses filled the one cache
    // and the hot key, least recently used, was dropped from it.
    const auth = createAuthenticator({ store, grants, clock })
    const hot = fixture.ownerKey
    await auth.authenticate('token', hot)
    const queries = count('findKeyByHash')
    for (let i = 0; i < 10_000; i++) await refused(auth, generateKeySecret())
    assert.equal(count('findKeyByHash') - queries, 10_000, 'a secret never seen before is looked up once')
    const before = count('findKeyByHash')
    const principal = await auth.authenticate('token', hot)
    assert.equal(principal.projectId, fixture.projectId)
    assert.equal(count('findKeyByHash'), before, 'the hot key was answered from its cache')
  })

  it('10 000 attempts with random secrets cost one store query per distinct secret, concurrent ones included', async () => {
    const auth = createAuthenticator({ store, grants, clock })
    await auth.authenticate('token', fixture.ownerKey)
    const secrets = Array.from({ length: 500 }, () => generateKeySecret())
    const queries = count('findKeyByHash')
    // 20 rounds of the 500 secrets, each round sent 100 at a time at once, the hot key among them.
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < secrets.length; i += 100) {
        const batch = secrets.slice(i, i + 100)
        const answers = await Promise.allSettled([
          ...batch.map((s) => auth.authenticate('token', s)),
          ...batch.slice(0, 2).map((s) => auth.authenticate('token', s)),
          auth.authenticate('token', fixture.ownerKey),
        ])
        assert.equal(
          answers.filter((a) => a.status === 'fulfilled').length,
          1,
          'only the hot key is admitted',
        )
      }
    }
    assert.equal(
      count('findKeyByHash') - queries,
      500,
      '500 queries for 10 000 unknown attempts, none for the hot key',
    )
  })

  it('a key created after its secret was refused is found at once', async () => {
    const auth = createAuthenticator({ store, grants, clock })
    const secret = generateKeySecret()
    await refused(auth, secret)
    const queries = count('findKeyByHash')
    await refused(auth, secret)
    assert.equal(count('findKeyByHash'), queries, 'the refusal was remembered')
    const { record } = newKeyRecord(
      fixture.owner,
      { comment: 'made after', scopes: ['member'], tags: [], expiresAt: null },
      clock.now(),
      secret,
    )
    await store.insertKey(record)
    const principal = await auth.authenticate('token', secret)
    assert.equal(principal.keyId, record.id, 'the credentials version changed, so the store was asked again')
    assert.equal(hashKeySecret(secret), record.hash)
  })

  /** A token shaped like Earmark's, signed with `secret` and naming `kid`. */
  const forge = (kid: string, secret: Buffer) => {
    const sign = createSigner({ key: secret, algorithm: 'HS256', kid }) as (
      p: Record<string, unknown>,
    ) => string
    const iat = Math.floor(clock.now() / 1000)
    return sign({
      iss: 'earmark',
      sub: randomUUID(),
      jti: randomUUID(),
      iat,
      exp: iat + 60,
      project_id: fixture.projectId,
      scopes: ['usage:write'],
    })
  }

  it('tokens naming unknown kids read the signing keys once per kid, not once per token', async () => {
    const kids = Array.from({ length: 10 }, () => randomUUID())
    const secret = randomBytes(32)
    const mint = () =>
      grants.mint({ projectId: fixture.projectId, accessor: randomUUID(), ttlSeconds: 30, notAfterMs: null })
    // Settles the signing keys on the credentials version the earlier tests' writes left.
    assert.ok(await grants.verify(mint().token))
    const reads = count('listSigningKeys')
    for (let i = 0; i < 1000; i++) {
      assert.equal(await grants.verify(forge(kids[i % kids.length] as string, secret)), undefined)
    }
    assert.equal(count('listSigningKeys') - reads, kids.length)
    // A real token still verifies, from the keys already loaded.
    const before = count('listSigningKeys')
    assert.ok(await grants.verify(mint().token))
    assert.equal(count('listSigningKeys'), before)
  })

  it('tokens of a retired signing key are refused with one read of the signing keys, not one each', async () => {
    const kid = await grants.rotate()
    // Never verified before the retirement, so no cached verification answers for them.
    const tokens = Array.from({ length: 100 }, () =>
      grants.mint({ projectId: fixture.projectId, accessor: randomUUID(), ttlSeconds: 30, notAfterMs: null }),
    )
    assert.ok(tokens.every((t) => t.claims.kid === kid))
    assert.equal(await grants.retire(kid), true)
    const reads = count('listSigningKeys')
    for (const { token } of tokens) assert.equal(await grants.verify(token), undefined)
    assert.equal(count('listSigningKeys') - reads, 1)
  })

  it('a signing key stored after its kid was refused verifies at once', async () => {
    const kid = randomUUID()
    const secret = randomBytes(32)
    const token = forge(kid, secret)
    assert.equal(await grants.verify(token), undefined)
    const reads = count('listSigningKeys')
    assert.equal(await grants.verify(token), undefined)
    assert.equal(count('listSigningKeys'), reads, 'the unknown kid was remembered')
    // Another process (here: the store directly) adds the key: the credentials version moves on.
    await store.insertSigningKey({ kid, secret, createdAt: clock.now(), retiredAt: null })
    assert.equal((await grants.verify(token))?.kid, kid)
  })
})
