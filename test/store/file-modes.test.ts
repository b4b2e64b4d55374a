import assert from 'node:assert/strict'
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { widePermissions } from '../../src/store/sqlite/sqlite-file-modes.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { bootstrapProject, createTestEarmark } from '../helpers/earmark.js'
import { removeDir, startServerProcess, tempDataDir } from '../helpers/server-process.js'

const modeOf = (path: string) => statSync(path).mode & 0o777

describe('data directory and database file modes', () => {
  const root = tempDataDir()
  after(() => removeDir(root))

  it('creates the data directory 0700 and the database, -wal and -shm 0600', async () => {
    const dir = join(root, 'fresh', 'data')
    const path = join(dir, 'earmark.sqlite')
    const em = await createTestEarmark(path)
    try {
      await bootstrapProject(em.services)
      assert.equal(modeOf(dir), 0o700)
      assert.equal(modeOf(join(root, 'fresh')), 0o700, 'every directory Earmark creates')
      for (const file of [path, `${path}-wal`, `${path}-shm`]) assert.equal(modeOf(file), 0o600, file)
      assert.deepEqual(widePermissions(path), [])
    } finally {
      await em.close()
    }
  })

  it('leaves an existing directory and database as they are and names the wide ones', async () => {
    const dir = join(root, 'existing')
    mkdirSync(dir, { mode: 0o755 })
    chmodSync(dir, 0o755)
    const path = join(dir, 'earmark.sqlite')
    closeSync(openSync(path, 'w', 0o644))
    chmodSync(path, 0o644)
    const store = createSqliteStore({ path })
    await store.close()
    assert.equal(modeOf(dir), 0o755)
    assert.deepEqual(widePermissions(path), [
      { path: dir, mode: '0755' },
      { path, mode: '0644' },
    ])
  })

  it('warns once at start, naming the paths and no secret, when they are wider', async () => {
    const dir = join(root, 'served')
    mkdirSync(dir, { mode: 0o750 })
    chmodSync(dir, 0o750)
    const bootstrapKey = generateKeySecret()
    const server = await startServerProcess({
      dataDir: dir,
      bootstrapKey,
      env: { EARMARK_CAPACITY: '1', EARMARK_LOG_LEVEL: 'info' },
    })
    try {
      const warnings = server.output.filter((line) => line.includes('other users can read'))
      assert.equal(warnings.length, 1, server.output.join('\n'))
      const entry = JSON.parse(warnings[0] ?? '{}') as {
        level: number
        paths: { path: string; mode: string }[]
      }
      assert.equal(entry.level, 40)
      assert.deepEqual(entry.paths, [{ path: dir, mode: '0750' }])
      assert.ok(!server.output.join('\n').includes(bootstrapKey))
    } finally {
      await server.stop()
    }
    const quiet = await startServerProcess({
      dataDir: join(root, 'served-private'),
      env: { EARMARK_CAPACITY: '1' },
    })
    try {
      assert.equal(quiet.output.filter((line) => line.includes('other users can read')).length, 0)
    } finally {
      await quiet.stop()
    }
  })
})
