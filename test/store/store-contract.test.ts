import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import type {
  AuditEvent,
  AuditFilter,
  Member,
  Project,
  Store,
  UsageFilter,
  UsageRecord,
} from '../../src/store/index.js'
import { dropTestDatabases } from '../helpers/postgres.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { key, member, project, STORE_BACKENDS, selectedStores, T0, usage } from '../helpers/store-fixtures.js'

/**
 * One contract, run against every store backend named in STORES (default: both). A backend passes
 * when it behaves exactly like this, whatever it is built on. PostgreSQL: one throwaway database per data
 * directory on the local cluster, dropped at the end (test/helpers/store-fixtures.ts).
 */
after(() => dropTestDatabases())

for (const name of selectedStores()) {
  const make = STORE_BACKENDS[name]
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
      const m = member(p.id, { role: 'member' })
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
      const m = member(p.id, { role: 'member' })
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
          ['member', (s) => s.createMember(member(p.id, { role: 'member' }))],
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

    // Issue 9's store methods: rerolled secrets, expired keys, the audit trail, disabling, settings, audio sums.
    // A store of their own, so keys other tests leave expired cannot show in listExpiredKeys.
    describe('credentials lifecycle and audit', () => {
      let ownDir: string
      let s: Store
      let p: Project
      let o: Member
      before(async () => {
        ownDir = tempDataDir()
        s = make(ownDir)
        p = project()
        o = member(p.id)
        await s.createProjectWithOwner(p, o, key(o))
      })
      after(async () => {
        await s.close()
        removeDir(ownDir)
      })

      it('rerolls a secret: the new hash finds the key, the old one finds it with its grace end', async () => {
        const k = key(o)
        await s.insertKey(k)
        const newHash = randomBytes(32).toString('hex')
        const graceEnds = Date.now() + 3_600_000
        const version = s.credentialsVersion()
        assert.equal(await s.rerollKey(p.id, k.id, newHash, graceEnds, Date.now()), true)
        assert.notEqual(s.credentialsVersion(), version, 'a credential write')
        const expected = { ...k, hash: newHash, memberRole: 'owner', memberEmail: o.email }
        assert.deepEqual(await s.findKeyByHash(newHash), expected)
        assert.deepEqual(await s.findKeyByHash(k.hash), { ...expected, previousSecretExpiresAt: graceEnds })
        assert.deepEqual(await s.getKey(p.id, k.id), expected)

        // A second reroll keeps the first old secret until its own grace end.
        const third = randomBytes(32).toString('hex')
        assert.equal(await s.rerollKey(p.id, k.id, third, graceEnds + 1000, Date.now()), true)
        assert.equal((await s.findKeyByHash(k.hash))?.previousSecretExpiresAt, graceEnds)
        assert.equal((await s.findKeyByHash(newHash))?.previousSecretExpiresAt, graceEnds + 1000)

        assert.equal(
          await s.rerollKey(p.id, randomUUID(), newHash, graceEnds, Date.now()),
          false,
          'unknown key',
        )
        assert.equal(
          await s.rerollKey(randomUUID(), k.id, newHash, graceEnds, Date.now()),
          false,
          'other project',
        )
        await s.deleteKey(p.id, k.id, T0 + 1)
        assert.equal(
          await s.rerollKey(p.id, k.id, randomBytes(32).toString('hex'), graceEnds, Date.now()),
          false,
        )

        // Secrets whose grace ended are forgotten at the next reroll.
        const k2 = key(o)
        await s.insertKey(k2)
        const h2 = randomBytes(32).toString('hex')
        assert.equal(await s.rerollKey(p.id, k2.id, h2, T0 + 10, T0), true)
        assert.equal((await s.findKeyByHash(k2.hash))?.previousSecretExpiresAt, T0 + 10)
        assert.equal(await s.rerollKey(p.id, k2.id, randomBytes(32).toString('hex'), T0 + 30, T0 + 20), true)
        assert.equal(await s.findKeyByHash(k2.hash), undefined, 'grace ended before the second reroll')
        assert.equal((await s.findKeyByHash(h2))?.previousSecretExpiresAt, T0 + 30)
      })

      it('lists keys expired by a time across projects, oldest expiry first, never deleted or live ones', async () => {
        const q = project()
        const qo = member(q.id)
        await s.createProjectWithOwner(q, qo, key(qo))
        const at = (ms: number) => T0 + 10_000_000 + ms
        const first = key(qo, { expiresAt: at(100) })
        const second = key(o, { expiresAt: at(200) })
        const third = key(o, { expiresAt: at(300) })
        const future = key(o, { expiresAt: at(10_000) })
        const deleted = key(o, { expiresAt: at(50) })
        for (const k of [third, future, second, first, deleted]) await s.insertKey(k)
        await s.deleteKey(p.id, deleted.id, at(60))
        const ids = async (before: number, limit: number) =>
          (await s.listExpiredKeys(before, limit))
            .filter((k) => k.expiresAt !== null && k.expiresAt >= at(0))
            .map((k) => k.id)
        assert.deepEqual(
          await ids(at(300), 10),
          [first.id, second.id, third.id],
          'at or before, oldest first',
        )
        assert.deepEqual(await ids(at(299), 10), [first.id, second.id])
        assert.deepEqual(await ids(at(300), 2), [first.id, second.id], 'limited')
        const listed = (await s.listExpiredKeys(at(300), 10)).find((k) => k.id === first.id)
        assert.equal(listed?.memberEmail, qo.email, 'with its member')
        // Pending only: a noted key drops out until it passes the sweep time.
        await s.noteKeyExpired(q.id, first.id, at(150))
        await s.noteKeyExpired(p.id, second.id, at(250))
        const pending = async (sweepBefore: number) =>
          (await s.listExpiredKeys(at(300), 10, { sweepBefore }))
            .filter((k) => k.expiresAt !== null && k.expiresAt >= at(0))
            .map((k) => k.id)
        assert.deepEqual(await pending(at(0)), [third.id], 'noted keys inside their retention are skipped')
        assert.deepEqual(
          await pending(at(100)),
          [first.id, third.id],
          'a noted key past its retention is back',
        )
      })

      it('notes a key’s expiry once: true for the first caller only', async () => {
        const k = key(o, { expiresAt: T0 + 5 })
        await s.insertKey(k)
        assert.equal(await s.noteKeyExpired(p.id, k.id, T0 + 10), true)
        assert.equal(await s.noteKeyExpired(p.id, k.id, T0 + 20), false)
        assert.equal(await s.noteKeyExpired(p.id, randomUUID(), T0 + 20), false, 'unknown key')
        const other = key(o, { expiresAt: T0 + 5 })
        await s.insertKey(other)
        const both = await Promise.all([
          s.noteKeyExpired(p.id, other.id, T0 + 10),
          s.noteKeyExpired(p.id, other.id, T0 + 10),
        ])
        assert.deepEqual(both.sort(), [false, true])
      })

      it('disables and enables a key, and refuses a deleted or unknown one', async () => {
        const k = key(o)
        await s.insertKey(k)
        const version = s.credentialsVersion()
        assert.equal(await s.setKeyDisabled(p.id, k.id, T0 + 7, 'suspicious.distinct_ips'), true)
        assert.notEqual(s.credentialsVersion(), version)
        const disabled = await s.findKeyByHash(k.hash)
        assert.equal(disabled?.disabledAt, T0 + 7)
        assert.equal(disabled?.disabledReason, 'suspicious.distinct_ips')
        assert.equal(await s.setKeyDisabled(p.id, k.id, null, 'ignored'), true)
        const enabled = await s.getKey(p.id, k.id)
        assert.equal(enabled?.disabledAt, null)
        assert.equal(enabled?.disabledReason, null, 'enabling clears the reason')
        assert.equal(await s.setKeyDisabled(p.id, randomUUID(), T0, 'x'), false)
        await s.deleteKey(p.id, k.id, T0 + 8)
        assert.equal(await s.setKeyDisabled(p.id, k.id, T0 + 9, 'x'), false, 'a deleted key')
      })

      it('replaces project settings, as a credential write', async () => {
        const settings: Project['settings'] = { limits: { requestsPerMinute: 100 } }
        const version = s.credentialsVersion()
        assert.equal(await s.setProjectSettings(p.id, settings), true)
        assert.notEqual(s.credentialsVersion(), version)
        assert.deepEqual((await s.getProject(p.id))?.settings, settings)
        assert.equal(await s.setProjectSettings(p.id, {}), true)
        assert.deepEqual((await s.getProject(p.id))?.settings, {})
        assert.equal(await s.setProjectSettings(randomUUID(), settings), false)
      })

      it('sums audio seconds by key, end user, both or neither, from a start time, open records included', async () => {
        const q = project()
        const qo = member(q.id)
        await s.createProjectWithOwner(q, qo, key(qo))
        const add = (
          keyId: string,
          endUser: string | null,
          startedAt: number,
          audioSeconds: number,
          open = false,
        ) =>
          s.insertUsage(
            usage(q.id, keyId, startedAt, {
              endUser,
              audioSeconds,
              ...(open ? { endedAt: null, status: null } : {}),
            }),
          )
        await add('ka', 'alice', T0 + 100, 1.5)
        await add('ka', 'bob', T0 + 200, 2.25)
        await add('kb', 'alice', T0 + 300, 4)
        await add('kb', null, T0 + 50, 8)
        await add('ka', 'alice', T0 + 400, 0.5, true)
        const sum = (f: { keyId?: string; endUser?: string; start: number }) => s.sumAudioSeconds(q.id, f)
        assert.equal(await sum({ start: T0 }), 16.25)
        assert.equal(await sum({ start: T0 + 100 }), 8.25, 'the start is inclusive')
        assert.equal(await sum({ keyId: 'ka', start: T0 }), 4.25)
        assert.equal(await sum({ endUser: 'alice', start: T0 }), 6)
        assert.equal(await sum({ keyId: 'ka', endUser: 'alice', start: T0 }), 2)
        assert.equal(await sum({ keyId: 'nobody', start: T0 }), 0)
        assert.equal(await s.sumAudioSeconds(p.id, { keyId: 'ka', start: T0 }), 0, 'per project')
      })

      it('sums usage per UTC day in the store: day boundaries, filters, open records, empty ranges', async () => {
        const q = project()
        const qo = member(q.id)
        await s.createProjectWithOwner(q, qo, key(qo))
        const DAY = 24 * 3600 * 1000
        const D = T0 + 10 * DAY
        const add = (startedAt: number, over: Partial<UsageRecord>) =>
          s.insertUsage(usage(q.id, 'ka', startedAt, over))
        const speak = { endpoint: 'speak', method: 'sync', path: '/v1/speak', status: 200 } as const
        await add(D - 1, { audioSeconds: 1.5, endUser: 'alice' }) // the last ms of the day before
        await add(D, { audioSeconds: 2.25 }) // the first ms of the day
        await add(D + 5, { ...speak, keyId: 'kb', audioSeconds: 0.5, characters: 40 })
        await add(D + 6, { ...speak, characters: 2, status: 500, endUser: 'alice' })
        await add(D + 7, { audioSeconds: 0.25, endedAt: null, status: null }) // still open
        await add(D + DAY - 1, { method: 'sync', audioSeconds: 4, status: 413, keyId: 'kb' })
        await add(D + DAY, { audioSeconds: 8, endUser: 'alice' }) // the next day
        const day = (start: number, audioSeconds: number, requests: number, chars = 0, speaks = 0) => ({
          start,
          audioSeconds,
          requests,
          speakCharacters: chars,
          speakRequests: speaks,
        })
        const sum = (f: UsageFilter) => s.summarizeUsage(q.id, f, { bucket: 'day' })

        assert.deepEqual(
          await sum({}),
          [day(D - DAY, 1.5, 1), day(D, 7, 5, 42, 2), day(D + DAY, 8, 1)],
          'oldest day first, open records and every endpoint counted, speak apart',
        )
        assert.deepEqual(await sum({ start: D, end: D + DAY }), [day(D, 7, 5, 42, 2)], 'start in, end out')
        assert.deepEqual(await sum({ start: D - 1, end: D + 1 }), [day(D - DAY, 1.5, 1), day(D, 2.25, 1)])
        assert.deepEqual(await sum({ keyId: 'kb' }), [day(D, 4.5, 2, 40, 1)])
        assert.deepEqual(await sum({ endUser: 'alice' }), [
          day(D - DAY, 1.5, 1),
          day(D, 0, 1, 2, 1),
          day(D + DAY, 8, 1),
        ])
        assert.deepEqual(await sum({ endpoint: 'speak' }), [day(D, 0.5, 2, 42, 2)])
        assert.deepEqual(await sum({ method: 'sync', endpoint: 'listen' }), [day(D, 4, 1)])
        assert.deepEqual(
          await sum({ succeeded: true, start: D, end: D + DAY }),
          [day(D, 2.75, 2, 40, 1)],
          'an open record is no success',
        )
        assert.deepEqual(
          await sum({ succeeded: false, start: D, end: D + DAY }),
          [day(D, 4, 2, 2, 1)],
          'nor a failure',
        )
        assert.deepEqual(
          await sum({ limit: 1, offset: 5, start: D, end: D + 1 }),
          [day(D, 2.25, 1)],
          'no paging',
        )
        assert.deepEqual(await sum({ start: D + 2 * DAY }), [], 'an empty range')
        assert.deepEqual(await sum({ start: D, end: D }), [])
        assert.deepEqual(await sum({ keyId: 'nobody' }), [])
        assert.deepEqual(await s.summarizeUsage(p.id, {}, { bucket: 'day' }), [], 'per project')

        // Seconds are added one by one, newest first (as /usage always added them): 0.1 + 0.2 + 0.3 in that
        // order is 0.6000000000000001, where a compensated sum or another order gives 0.6.
        await add(D + 3 * DAY + 3, { keyId: 'order', audioSeconds: 0.1 })
        await add(D + 3 * DAY + 2, { keyId: 'order', audioSeconds: 0.2 })
        await add(D + 3 * DAY + 1, { keyId: 'order', audioSeconds: 0.3 })
        const [ordered] = await sum({ keyId: 'order' })
        assert.equal(ordered?.audioSeconds, 0.1 + 0.2 + 0.3)
        assert.notEqual(0.1 + 0.2 + 0.3, 0.3 + 0.2 + 0.1, 'the order shows')

        // Days are floored, also before 1970 (never written by Earmark, but the arithmetic is the store's).
        await add(-1, { keyId: 'old', audioSeconds: 1 })
        assert.deepEqual(await sum({ keyId: 'old' }), [day(-DAY, 1, 1)])
      })

      it('sums usage per hour and minute, split per key or end user, with failures counted', async () => {
        const q = project()
        const qo = member(q.id)
        await s.createProjectWithOwner(q, qo, key(qo))
        const HOUR = 3600 * 1000
        const H = T0 + 20 * 24 * HOUR
        const add = (startedAt: number, over: Partial<UsageRecord>) =>
          s.insertUsage(usage(q.id, 'ka', startedAt, over))
        await add(H - 1, { audioSeconds: 1, endUser: 'bob' }) // the hour before
        await add(H, { audioSeconds: 2, endUser: 'alice' })
        await add(H + 60_000, { keyId: 'kb', audioSeconds: 4, status: 1011 })
        await add(H + 61_000, { keyId: 'kb', audioSeconds: 0.5, endedAt: null, status: null }) // open
        await add(H + HOUR - 1, { audioSeconds: 8, endUser: 'alice', status: 429, method: 'sync' })
        const row = (
          start: number,
          group: string | null,
          audioSeconds: number,
          requests: number,
          failed: number,
        ) => ({
          start,
          audioSeconds,
          requests,
          speakCharacters: 0,
          speakRequests: 0,
          group,
          failed,
        })
        assert.deepEqual(
          await s.summarizeUsage(q.id, {}, { bucket: 'hour', groupBy: 'key' }),
          [row(H - HOUR, 'ka', 1, 1, 0), row(H, 'ka', 10, 2, 1), row(H, 'kb', 4.5, 2, 1)],
          'oldest hour first, then by key; an open record is no failure',
        )
        assert.deepEqual(
          await s.summarizeUsage(q.id, { start: H }, { bucket: 'hour', groupBy: 'end_user' }),
          [row(H, null, 4.5, 2, 1), row(H, 'alice', 10, 2, 1)],
          'records without an end user come first, as null',
        )
        assert.deepEqual(
          await s.summarizeUsage(
            q.id,
            { start: H, end: H + 2 * 60_000 },
            { bucket: 'minute', groupBy: 'key' },
          ),
          [row(H, 'ka', 2, 1, 0), row(H + 60_000, 'kb', 4.5, 2, 1)],
          'per minute',
        )
        const [ungrouped] = await s.summarizeUsage(q.id, { start: H, end: H + 60_000 }, { bucket: 'minute' })
        assert.deepEqual(
          ungrouped,
          { start: H, audioSeconds: 2, requests: 1, speakCharacters: 0, speakRequests: 0 },
          'without groupBy, no group and no failures',
        )
      })

      it('stores audit events as given and lists them newest first, filtered and paged, per project', async () => {
        const q = project()
        const ev = (i: number, type: string, over: Partial<AuditEvent> = {}): AuditEvent => ({
          id: randomUUID(),
          projectId: q.id,
          at: T0 + i * 10,
          type,
          actorKeyId: null,
          keyId: null,
          endUser: null,
          ip: '127.0.0.1',
          requestId: randomUUID(),
          detail: { i, nested: { list: [1, 'two'] } },
          ...over,
        })
        const events = [
          ev(1, 'key.created', { keyId: 'k1', actorKeyId: 'k0' }),
          ev(2, 'grant.issued', { actorKeyId: 'k1', endUser: 'alice' }),
          ev(3, 'limit.refused', { keyId: 'k2' }),
          ev(4, 'key_x.created', { keyId: 'k2' }),
          ev(5, 'keyxcreated', {}),
          ev(5, 'key.deleted', { keyId: 'k1' }),
        ]
        await s.insertAuditEvents(events)
        await s.insertAuditEvents([])
        await s.insertAuditEvents([{ ...ev(6, 'key.created'), projectId: p.id }])
        const list = (f: AuditFilter) => s.listAuditEvents(q.id, f).then((l) => l.map((e) => e.detail.i))

        assert.deepEqual(await s.listAuditEvents(q.id, { type: 'key.created' }), [events[0]], 'as written')
        assert.deepEqual(await list({}), [5, 5, 4, 3, 2, 1], 'newest first, per project')
        const [newest] = await s.listAuditEvents(q.id, { limit: 1 })
        assert.equal(newest?.type, 'key.deleted', 'a tie in time: the later insert first')
        assert.deepEqual(await list({ type: 'key.' }), [5, 1], 'a prefix ending in a dot')
        assert.deepEqual(await list({ type: 'key_.' }), [], 'no LIKE wildcards in a prefix')
        assert.deepEqual(await list({ type: 'key_x.' }), [4])
        assert.deepEqual(await list({ keyId: 'k1' }), [5, 2, 1], 'about the key or by it')
        assert.deepEqual(await list({ endUser: 'alice' }), [2])
        assert.deepEqual(
          await list({ start: T0 + 20, end: T0 + 40 }),
          [3, 2],
          'start inclusive, end exclusive',
        )
        assert.deepEqual(await list({ limit: 2, offset: 2 }), [4, 3])

        // A row the store refuses (no type) fails the whole batch.
        const bad = { ...ev(7, 'key.created'), type: null as unknown as string }
        await assert.rejects(
          s.insertAuditEvents([ev(8, 'key.created'), bad]),
          'a refused event fails the batch',
        )
        assert.deepEqual(await list({ start: T0 + 70 }), [], 'all or nothing')
      })
    })
  })
}
