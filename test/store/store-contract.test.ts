import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ApiKeyRecord, Member, Project, Store } from '../../src/store/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'

/**
 * One contract, run against every store backend named in STORES (default: sqlite). A backend passes
 * when it behaves exactly like this, whatever it is built on.
 */
const BACKENDS: Record<string, (dir: string) => Store> = {
  sqlite: (dir) => createSqliteStore({ path: join(dir, 'contract.sqlite') }),
}
const selected = (process.env.STORES ?? 'sqlite').split(',').map((s) => s.trim())

const T0 = Date.UTC(2026, 0, 1)

function project(): Project {
  return { id: randomUUID(), name: 'P', company: null, createdAt: T0, settings: {} }
}
function member(
  projectId: string,
  role: Member['role'] = 'owner',
  email = `${randomUUID()}@example.com`,
): Member {
  return { id: randomUUID(), projectId, email, firstName: 'Ann', lastName: null, role, createdAt: T0 }
}
function key(m: Member, over: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
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

for (const name of selected) {
  const make = BACKENDS[name]
  describe(`store contract: ${name}`, () => {
    if (!make) {
      it(`knows the backend ${name}`, () => assert.fail(`no store backend called ${name}`))
      return
    }
    let dir: string
    let store: Store
    before(() => {
      dir = tempDataDir()
      store = make(dir)
    })
    after(async () => {
      await store.close()
      removeDir(dir)
    })

    it('creates a project with its owner and key, and reads them back as written', async () => {
      const p = project()
      const o = member(p.id)
      const k = key(o)
      await store.createProjectWithOwner(p, o, k)
      assert.equal(await store.isEmpty(), false)
      assert.deepEqual(await store.getProject(p.id), p)
      assert.deepEqual(await store.getMember(p.id, o.id), o)
      assert.deepEqual(await store.getMemberByEmail(p.id, o.email), o)
      const found = await store.findKeyByHash(k.hash)
      assert.deepEqual(found, { ...k, memberRole: 'owner', memberEmail: o.email })
      assert.deepEqual(await store.getKey(p.id, k.id), found)
      assert.equal(await store.getKey(randomUUID(), k.id), undefined, 'a key is found only in its project')
    })

    it('writes a project, owner and key all or nothing', async () => {
      const p1 = project()
      const o1 = member(p1.id)
      const k1 = key(o1)
      await store.createProjectWithOwner(p1, o1, k1)
      const p2 = project()
      const o2 = member(p2.id)
      await assert.rejects(store.createProjectWithOwner(p2, o2, key(o2, { hash: k1.hash })))
      assert.equal(await store.getProject(p2.id), undefined)
      assert.equal(await store.getMember(p2.id, o2.id), undefined)
    })

    it('writes a key with its scopes and tags all or nothing', async () => {
      const p = project()
      const o = member(p.id)
      const k = key(o)
      await store.createProjectWithOwner(p, o, k)
      const dupHash = key(o, { hash: k.hash })
      await assert.rejects(store.insertKey(dupHash))
      assert.equal(await store.getKey(p.id, dupHash.id), undefined)
      // A scope that breaks a constraint fails after the key row was written: none of it may remain.
      const broken = key(o, { scopes: ['usage:write', null as unknown as string] })
      await assert.rejects(store.insertKey(broken))
      assert.equal(await store.getKey(p.id, broken.id), undefined)
      assert.equal(await store.findKeyByHash(broken.hash), undefined)
      await store.insertKey(key(o))
      assert.equal((await store.listKeys(p.id)).length, 2)
    })

    it('lists live keys oldest first, by member when asked, and soft-deletes once', async () => {
      const p = project()
      const o = member(p.id)
      await store.createProjectWithOwner(p, o, key(o))
      const m = member(p.id, 'member')
      await store.createMember(m)
      const mk = key(m, { createdAt: T0 + 5 })
      await store.insertKey(mk)
      assert.deepEqual(
        (await store.listKeys(p.id, { memberId: m.id })).map((k) => k.id),
        [mk.id],
      )
      assert.equal((await store.listKeys(p.id)).length, 2)
      assert.equal(await store.deleteKey(p.id, mk.id, T0 + 10), true)
      assert.equal(await store.deleteKey(p.id, mk.id, T0 + 11), false)
      assert.equal((await store.findKeyByHash(mk.hash))?.deletedAt, T0 + 10)
      assert.equal((await store.listKeys(p.id)).length, 1)
    })

    it('changes roles but never leaves a project without an owner', async () => {
      const p = project()
      const o = member(p.id)
      await store.createProjectWithOwner(p, o, key(o))
      assert.equal(await store.setMemberRole(p.id, o.id, 'admin'), 'last_owner')
      const m = member(p.id, 'member')
      await store.createMember(m)
      assert.equal(await store.setMemberRole(p.id, m.id, 'owner'), 'updated')
      assert.equal(await store.setMemberRole(p.id, o.id, 'admin'), 'updated')
      assert.equal((await store.getMember(p.id, o.id))?.role, 'admin')
      assert.equal(await store.setMemberRole(p.id, randomUUID(), 'admin'), 'not_found')
      await assert.rejects(
        store.createMember({ ...member(p.id), email: m.email }),
        'e-mails are unique per project',
      )
    })

    it('updates a project', async () => {
      const p = project()
      const o = member(p.id)
      await store.createProjectWithOwner(p, o, key(o))
      assert.equal(await store.updateProject(p.id, { name: 'New', company: 'Acme' }), true)
      assert.deepEqual(await store.getProject(p.id), { ...p, name: 'New', company: 'Acme' })
      assert.equal(await store.updateProject(randomUUID(), { name: 'x' }), false)
    })

    it('keeps signing keys in insertion order and retires them', async () => {
      const before = (await store.listSigningKeys()).length
      const a = { kid: randomUUID(), secret: randomBytes(32), createdAt: T0, retiredAt: null }
      const b = { kid: randomUUID(), secret: randomBytes(32), createdAt: T0, retiredAt: null }
      await store.insertSigningKey(a)
      await store.insertSigningKey(b)
      const all = await store.listSigningKeys()
      assert.deepEqual(
        all.slice(before).map((k) => k.kid),
        [a.kid, b.kid],
      )
      assert.ok(all.at(-1)?.secret.equals(b.secret))
      assert.equal(await store.retireSigningKey(a.kid, T0 + 1), true)
      assert.equal(await store.retireSigningKey(a.kid, T0 + 2), false)
      assert.equal((await store.listSigningKeys()).find((k) => k.kid === a.kid)?.retiredAt, T0 + 1)
    })

    it("moves the credentials version on every credential write, ours or another process's, once acknowledged", async () => {
      // A second store on the same data stands for another process (the CLI, another server).
      const other = make(dir)
      try {
        const p = project()
        const owner = member(p.id)
        await store.createProjectWithOwner(p, owner, key(owner))
        // One target per writer: a write that changes nothing need not move the version.
        const doomed = [key(owner), key(owner)]
        for (const k of doomed) await store.insertKey(k)
        const writes: [string, (s: Store, i: number) => Promise<unknown>][] = [
          [
            'project with owner',
            () => {
              const q = project()
              const o = member(q.id)
              return store.createProjectWithOwner(q, o, key(o))
            },
          ],
          ['member', (s) => s.createMember(member(p.id, 'member'))],
          ['key', (s) => s.insertKey(key(owner))],
          ['key deletion', (s, i) => s.deleteKey(p.id, doomed[i]?.id ?? '', T0 + 5)],
          ['project rename', (s, i) => s.updateProject(p.id, { name: `Q${i}` })],
        ]
        for (const [what, write] of writes) {
          for (const [i, [by, writer]] of (
            [
              ['this store', store],
              ['another store', other],
            ] as const
          ).entries()) {
            // Asked right before, so whatever the store caches of the version is fresh.
            const before = store.credentialsVersion()
            await write(writer, i)
            assert.notEqual(store.credentialsVersion(), before, `${what} by ${by}`)
          }
        }
        const before = store.credentialsVersion()
        assert.equal(store.credentialsVersion(), before, 'no write, same version')
      } finally {
        await other.close()
      }
    })

    it('opens an existing store again without re-applying migrations', async () => {
      const again = make(dir)
      try {
        assert.equal(await again.isEmpty(), false)
      } finally {
        await again.close()
      }
    })
  })
}
