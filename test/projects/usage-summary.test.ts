import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createAuthenticator, createGrants, createManualClock, type Principal } from '../../src/auth/index.js'
import { isoDate, type Services, usageSummary } from '../../src/projects/index.js'
import { parseDate } from '../../src/projects/usage.js'
import type { Store, UsageRecord } from '../../src/store/index.js'
import { bootstrapProject, makeKey } from '../helpers/earmark.js'
import { dropTestDatabases } from '../helpers/postgres.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { STORE_BACKENDS, selectedStores, T0, usage } from '../helpers/store-fixtures.js'

// `GET /v1/projects/:id/usage` is summed by the store (Store.summarizeUsage, in SQL). Its answer must be the
// one it gave when it added the listed records up in JavaScript: that earlier computation is kept below as
// the reference, and both are compared as JSON text over records spread across days, on every backend.

const DAY = 24 * 3600 * 1000

/** The summary as it was computed before: every record listed, then added up per UTC day. */
async function reference(store: Store, projectId: string, query: Record<string, string>, now: number) {
  const end = parseDate('end', query.end) ?? Math.floor(now / DAY) * DAY + DAY
  const start = parseDate('start', query.start) ?? end - 30 * DAY
  const status = query.status
  const rows = await store.listUsage(projectId, {
    start,
    end,
    keyId: query.accessor,
    endUser: query.end_user,
    endpoint: query.endpoint as UsageRecord['endpoint'] | undefined,
    method: query.method as UsageRecord['method'] | undefined,
    ...(status ? { succeeded: status === 'succeeded' } : {}),
  })
  const days = new Map<number, { seconds: number; requests: number; characters: number; speak: number }>()
  for (const r of rows) {
    const day = Math.floor(r.startedAt / DAY) * DAY
    const d = days.get(day) ?? { seconds: 0, requests: 0, characters: 0, speak: 0 }
    d.seconds += r.audioSeconds
    d.requests += 1
    if (r.endpoint === 'speak') {
      d.characters += r.characters
      d.speak += 1
    }
    days.set(day, d)
  }
  const hours = (s: number) => Math.round((s / 3600) * 1e6) / 1e6
  const results = [...days.entries()]
    .sort(([a], [b]) => a - b)
    .map(([day, d]) => ({
      start: isoDate(day).slice(0, 10),
      end: isoDate(day + DAY).slice(0, 10),
      hours: hours(d.seconds),
      total_hours: hours(d.seconds),
      requests: d.requests,
      audio_seconds: Math.round(d.seconds * 1000) / 1000,
      tts: { characters: d.characters, requests: d.speak },
    }))
  return {
    start: isoDate(start).slice(0, 10),
    end: isoDate(end).slice(0, 10),
    resolution: { units: 'day', amount: 1 },
    results,
  }
}

/** A small deterministic generator (mulberry32), so a failure can be replayed. */
function random(seed: number) {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

for (const name of selectedStores()) {
  const make = STORE_BACKENDS[name]
  describe(`usage summary on ${name}`, () => {
    const dir = tempDataDir()
    const clock = createManualClock(T0 + 20 * DAY + 3_600_000)
    let services: Services
    let principal: Principal
    let projectId: string
    let keyIds: string[]

    before(async () => {
      if (!make) throw new Error(`no store backend called ${name}`)
      const store = make(dir)
      services = { store, clock, grants: await createGrants({ store, clock }) }
      const fx = await bootstrapProject(services)
      projectId = fx.projectId
      principal = await createAuthenticator(services).authenticate('token', fx.ownerKey)
      keyIds = [principal.keyId, (await makeKey(services, fx.owner, { scopes: ['member'] })).id]
      // 600 records over 25 days, many within a second of a UTC midnight; audio in 16 kHz samples, as metered.
      const next = random(10)
      const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)] as T
      for (let i = 0; i < 600; i++) {
        const day = T0 + Math.floor(next() * 25) * DAY
        const startedAt =
          next() < 0.3 ? day + pick([0, 1, 999, DAY - 1, DAY - 1000]) : day + Math.floor(next() * DAY)
        const endpoint = next() < 0.25 ? 'speak' : 'listen'
        const open = next() < 0.05
        await store.insertUsage(
          usage(projectId, pick(keyIds), startedAt, {
            endUser: pick([null, 'alice', 'bob']),
            endpoint,
            method: endpoint === 'speak' || next() < 0.5 ? 'sync' : 'streaming',
            audioSeconds: Math.floor(next() * 16000 * 90) / 16000,
            characters: endpoint === 'speak' ? Math.floor(next() * 500) : 0,
            ...(open
              ? { endedAt: null, status: null }
              : { status: pick([200, 200, 1000, 1000, 400, 429, 1011]) }),
          }),
        )
      }
    })
    after(async () => {
      await services?.store.close()
      dropTestDatabases()
      removeDir(dir)
    })

    const queries: Record<string, string>[] = [
      {},
      { start: '2026-01-01', end: '2026-01-26' },
      { start: '2026-01-03T12:00:00', end: '2026-01-09T00:00:01Z' },
      { start: '2026-01-05T00:00:00+02:00', end: '2026-01-05' },
      { start: '2026-01-10', end: '2026-01-10' },
      { start: '2026-03-01' },
      { start: '2025-12-01', end: '2026-03-01', end_user: 'alice' },
      { start: '2025-12-01', end: '2026-03-01', endpoint: 'speak' },
      { start: '2025-12-01', end: '2026-03-01', method: 'streaming', status: 'succeeded' },
      { start: '2025-12-01', end: '2026-03-01', status: 'failed', end_user: 'bob' },
    ]
    it('answers /usage exactly as the JavaScript sums did, byte for byte, for every filter', async () => {
      const queriesWithKeys = [
        ...queries,
        { start: '2025-12-01', end: '2026-03-01', accessor: keyIds[1] ?? '' },
        { accessor: keyIds[0] ?? '', endpoint: 'listen' },
      ]
      let days = 0
      for (const query of queriesWithKeys) {
        const got = await usageSummary(services, principal, projectId, query)
        const want = await reference(services.store, projectId, query, clock.now())
        assert.equal(JSON.stringify(got), JSON.stringify(want), JSON.stringify(query))
        days += got.results.length
      }
      assert.ok(days > 100, `the queries covered ${days} days with records`)
    })
  })
}
