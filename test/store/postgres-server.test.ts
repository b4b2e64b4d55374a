import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pg from 'pg'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { createTestDatabase, dropTestDatabases } from '../helpers/postgres.js'
import { recordSecrets } from '../helpers/test-logs.js'

// Earmark from its composition root on EARMARK_DATABASE_URL (docs/store.md): two servers on one PostgreSQL
// database see each other's key changes on the next request, and a cut connection costs 503s, not a restart.

describe('Earmark on PostgreSQL', () => {
  let url: string
  let a: LiveServer
  let b: LiveServer
  before(async () => {
    url = createTestDatabase()
    a = await startLiveServer({ EARMARK_DATABASE_URL: url })
    b = await startLiveServer({ EARMARK_DATABASE_URL: url, EARMARK_BOOTSTRAP_KEY: a.ownerKey })
  })
  after(async () => {
    await a?.close()
    await b?.close()
    dropTestDatabases()
  })

  const get = (server: LiveServer, secret: string, path = '/v1/projects') =>
    fetch(`${server.url}${path}`, { headers: { authorization: `Token ${secret}` } })

  it('serves a key created on one server from the other at once, and refuses it there once deleted', async () => {
    assert.equal(b.earmark.bootstrap, undefined, 'the second server found the first one’s project')
    const created = await fetch(`${a.url}/v1/projects/${a.projectId}/keys`, {
      method: 'POST',
      headers: { authorization: `Token ${a.ownerKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ comment: 'shared', scopes: ['member'] }),
    })
    assert.equal(created.status, 200)
    const { key, api_key_id: keyId } = (await created.json()) as { key: string; api_key_id: string }
    recordSecrets(key)
    assert.equal((await get(b, key)).status, 200, 'B knows the key A just created')
    assert.equal((await get(b, key)).status, 200, 'and caches it')
    const deleted = await fetch(`${a.url}/v1/projects/${a.projectId}/keys/${keyId}`, {
      method: 'DELETE',
      headers: { authorization: `Token ${a.ownerKey}` },
    })
    assert.equal(deleted.status, 200)
    assert.equal((await get(b, key)).status, 401, 'B refuses it on the next request')
  })

  it('answers 503 while the database refuses connections, then recovers by itself', async () => {
    const keys = `/v1/projects/${a.projectId}/keys`
    assert.equal((await get(a, a.ownerKey, keys)).status, 200)
    const name = new URL(url).pathname.slice(1)
    // The admin session lives in another database, so it survives the cut.
    const admin = new pg.Client({ connectionString: new URL('/postgres', url).toString() })
    await admin.connect()
    const statuses = new Map<number, number>()
    const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1)
    try {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`)
      const { rowCount } = await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1',
        [name],
      )
      assert.ok((rowCount ?? 0) >= 2, 'pooled and listening connections were cut')
      for (let i = 0; i < 5; i++) {
        const res = await get(a, a.ownerKey, keys)
        count(res.status)
        if (res.status === 503) assert.equal(res.headers.get('retry-after'), '1', 'a 503 says when to retry')
      }
      assert.equal(statuses.get(503), 5, 'every request in the gap is a 503')
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`)
      const deadline = Date.now() + 10_000
      let recovered = false
      while (!recovered && Date.now() < deadline) {
        const res = await get(a, a.ownerKey, keys)
        count(res.status)
        recovered = res.status === 200
        if (!recovered) await new Promise((resolve) => setTimeout(resolve, 20))
      }
      console.log(
        `while the database refused connections, then after: ${JSON.stringify(Object.fromEntries(statuses))}`,
      )
      assert.ok(recovered, 'requests succeed again without a restart')
      assert.deepEqual(
        [...statuses.keys()].filter((s) => s !== 200 && s !== 503).sort(),
        [],
        'nothing but 503 in the gap',
      )
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`).catch(() => {})
      await admin.end()
    }
  })
})
