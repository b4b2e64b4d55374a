import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { cli } from '../helpers/cli.js'
import { removeDir, startServerProcess, tempDataDir } from '../helpers/server-process.js'

const ROOT = new URL('../..', import.meta.url).pathname

describe('earmark CLI', () => {
  const dir = tempDataDir()
  after(() => removeDir(dir))

  it('initialises a store once, printing the owner key only the first time', async () => {
    const first = await cli(dir, 'init')
    assert.equal(first.code, 0, first.err)
    assert.match(first.json().key, /^emk_[0-9a-f]{56}$/)
    const second = await cli(dir, 'init')
    assert.equal(second.code, 0)
    assert.equal(second.out, '')
    assert.match(second.err, /already/)
  })

  it('creates, lists, grants for and deletes keys, and the server agrees', async () => {
    const created = await cli(dir, 'keys', 'create', '--scopes', 'member', '--ttl', '600', '--comment', 'ops')
    assert.equal(created.code, 0, created.err)
    const key = created.json() as {
      key: string
      api_key_id: string
      scopes: string[]
      expiration_date: string
    }
    assert.deepEqual(key.scopes, ['member'])
    assert.ok(Date.parse(key.expiration_date) > Date.now() + 590_000)

    const listed = await cli(dir, 'keys', 'list')
    const ids = (listed.json() as { api_key_id: string }[]).map((k) => k.api_key_id)
    assert.ok(ids.includes(key.api_key_id))
    assert.ok(!listed.out.includes(key.key), 'list never shows a secret')

    const granted = await cli(dir, 'grant', key.api_key_id, '--ttl', '120')
    assert.equal(granted.code, 0, granted.err)
    const token = granted.json() as { access_token: string; expires_in: number }
    assert.equal(token.expires_in, 120)

    const server = await startServerProcess({ dataDir: dir })
    try {
      const asKey = await fetch(`${server.url}/v1/auth/token`, {
        headers: { authorization: `Token ${key.key}` },
      })
      assert.equal(asKey.status, 200)
      const asToken = await fetch(`${server.url}/v1/auth/token`, {
        headers: { authorization: `Bearer ${token.access_token}` },
      })
      assert.equal(asToken.status, 200)
      // Deleting through the CLI while the server runs takes effect at once.
      assert.equal((await cli(dir, 'keys', 'delete', key.api_key_id)).code, 0)
      const after = await fetch(`${server.url}/v1/auth/token`, {
        headers: { authorization: `Token ${key.key}` },
      })
      assert.equal(after.status, 401)
      const tokenAfter = await fetch(`${server.url}/v1/auth/token`, {
        headers: { authorization: `Bearer ${token.access_token}` },
      })
      assert.equal(tokenAfter.status, 401, "a deleted key's tokens die with it")
      // A signing key rotated by the CLI is picked up by the running server.
      const rotated = await cli(dir, 'rotate-signing-key')
      assert.equal(rotated.code, 0)
      const fresh = await cli(dir, 'keys', 'create', '--scopes', 'member', '--comment', 'fresh')
      const freshGrant = await cli(dir, 'grant', fresh.json().api_key_id)
      const res = await fetch(`${server.url}/v1/auth/token`, {
        headers: { authorization: `Bearer ${freshGrant.json().access_token}` },
      })
      assert.equal(res.status, 200)
    } finally {
      await server.stop()
    }
  })

  it('adds members and creates keys owned by them', async () => {
    const added = await cli(dir, 'members', 'add', '--email', 'ann@example.com', '--role', 'admin')
    assert.equal(added.code, 0, added.err)
    assert.deepEqual(added.json().scopes, ['admin'])
    const key = await cli(dir, 'keys', 'create', '--scopes', 'admin', '--member', 'ann@example.com')
    assert.equal(key.code, 0, key.err)
    const listed = (await cli(dir, 'keys', 'list')).json() as { api_key_id: string; member: string }[]
    assert.equal(listed.find((k) => k.api_key_id === key.json().api_key_id)?.member, 'ann@example.com')
    const dup = await cli(dir, 'members', 'add', '--email', 'ann@example.com')
    assert.equal(dup.code, 2)
    assert.match(dup.err, /CONFLICT/)
  })

  it('reports bad input with an error code and a non-zero exit', async () => {
    const cases: [string[], RegExp][] = [
      [['keys', 'delete', '00000000-0000-0000-0000-000000000000'], /KEY_NOT_FOUND/],
      [['keys', 'create', '--scopes', 'root'], /INVALID_FIELD.*scopes/],
      [['keys', 'create', '--scopes', 'member', '--ttl', '10', '--expires', '2030-01-01'], /INVALID_FIELD/],
      [['grant', '00000000-0000-0000-0000-000000000000'], /KEY_NOT_FOUND/],
      [['members', 'add', '--email', 'x@example.com', '--role', 'king'], /role/],
    ]
    for (const [args, pattern] of cases) {
      const res = await cli(dir, ...args)
      assert.notEqual(res.code, 0, args.join(' '))
      assert.match(res.err, pattern, args.join(' '))
    }
  })

  it('runs as the earmark bin', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['bin/earmark.js', '--data-dir', dir, 'keys', 'list'],
      {
        cwd: ROOT,
      },
    )
    assert.ok(Array.isArray(JSON.parse(stdout)))
  })
})
