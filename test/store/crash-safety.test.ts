import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import { removeDir, startServerProcess, tempDataDir } from '../helpers/server-process.js'

const ROOT = new URL('../..', import.meta.url).pathname
const BOOTSTRAP = 'emk_churn_bootstrap_owner_key_0001'

/** Runs the churn loop on `path`, SIGKILLs it after `killAfterMs` of churning, returns what it acknowledged. */
async function churnAndKill(path: string, killAfterMs: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/helpers/churn.ts'), path], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const created = new Set<string>()
  const deleted = new Set<string>()
  // 'close', not 'exit': every line the child wrote before dying must be read first.
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    child.once('close', (_code, sig) => resolve(sig)),
  )
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'READY') setTimeout(() => child.kill('SIGKILL'), killAfterMs)
    else if (line.startsWith('C ')) created.add(line.slice(2))
    else if (line.startsWith('D ')) deleted.add(line.slice(2))
  })
  const signal = await exited
  return { created, deleted, signal }
}

describe('crash safety', () => {
  const dir = tempDataDir()
  after(() => removeDir(dir))

  it('a store killed with SIGKILL mid-loop of key creations and deletions restarts consistent', async () => {
    const path = join(dir, 'earmark.sqlite')
    const acked = { created: new Set<string>(), deleted: new Set<string>() }
    let liveInStore = 0
    for (const [round, killAfterMs] of [150, 400, 700].entries()) {
      const run = await churnAndKill(path, killAfterMs)
      assert.equal(run.signal, 'SIGKILL')
      assert.ok(run.created.size > 5, `the loop made progress before the kill (${run.created.size} keys)`)
      for (const id of run.created) acked.created.add(id)
      for (const id of run.deleted) acked.deleted.add(id)

      const db = new Database(path)
      try {
        assert.equal(db.pragma('integrity_check', { simple: true }), 'ok')
        assert.deepEqual(db.pragma('foreign_key_check'), [])
        const keys = db.prepare("SELECT id, deleted_at FROM api_keys WHERE comment LIKE 'churn %'").all() as {
          id: string
          deleted_at: number | null
        }[]
        const byId = new Map(keys.map((k) => [k.id, k]))
        const scopeCount = db.prepare('SELECT count(*) AS n FROM api_key_scopes WHERE key_id = ?')
        const tagCount = db.prepare('SELECT count(*) AS n FROM api_key_tags WHERE key_id = ?')
        for (const k of keys) {
          // All or nothing: every key row has all three scopes and both tags it was written with.
          assert.equal((scopeCount.get(k.id) as { n: number }).n, 3, `key ${k.id} scopes`)
          assert.equal((tagCount.get(k.id) as { n: number }).n, 2, `key ${k.id} tags`)
        }
        const orphans = db
          .prepare(
            'SELECT (SELECT count(*) FROM api_key_scopes WHERE key_id NOT IN (SELECT id FROM api_keys)) + (SELECT count(*) FROM api_key_tags WHERE key_id NOT IN (SELECT id FROM api_keys)) AS n',
          )
          .get() as { n: number }
        assert.equal(orphans.n, 0, 'no scope or tag rows without their key')
        // Nothing acknowledged is lost: every committed creation and deletion is there.
        for (const id of acked.created) assert.ok(byId.has(id), `acknowledged key ${id} lost`)
        for (const id of acked.deleted)
          assert.notEqual(byId.get(id)?.deleted_at ?? null, null, `deletion ${id} lost`)
        // At most one creation per killed run can have committed without being acknowledged.
        assert.ok(
          keys.length <= acked.created.size + round + 1,
          `${keys.length} keys, ${acked.created.size} acked`,
        )
        liveInStore = keys.filter((k) => k.deleted_at === null).length
      } finally {
        db.close()
      }
    }

    // And the server starts on it and serves.
    const server = await startServerProcess({ dataDir: dir })
    try {
      const res = await fetch(`${server.url}/v1/projects`, {
        headers: { authorization: `Token ${BOOTSTRAP}` },
      })
      assert.equal(res.status, 200)
      const { projects } = (await res.json()) as { projects: { project_id: string }[] }
      const keys = await fetch(`${server.url}/v1/projects/${projects[0]?.project_id}/keys`, {
        headers: { authorization: `Token ${BOOTSTRAP}` },
      })
      const listed = ((await keys.json()) as { api_keys: unknown[] }).api_keys.length
      // The owner key plus every churned key the store holds as live (an unacknowledged in-flight change
      // may or may not have committed; either way the server and the file agree).
      assert.equal(listed, 1 + liveInStore)
    } finally {
      await server.stop()
    }
  })
})
