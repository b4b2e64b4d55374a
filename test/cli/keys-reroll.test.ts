import assert from 'node:assert/strict'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createAuthenticator, createGrants, systemClock } from '../../src/auth/index.js'
import { runCli } from '../../src/cli/cli.js'
import type { AuditEvent } from '../../src/store/index.js'
import { createSqliteStore } from '../../src/store/sqlite/sqlite-store.js'
import { cli } from '../helpers/cli.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'
import { recordSecrets } from '../helpers/test-logs.js'

// `earmark keys reroll` and `earmark keys sweep` on a real data directory, and the audit events the CLI's
// key and signing-key commands write (docs/audit.md).

describe('earmark keys reroll and keys sweep', () => {
  const dir = tempDataDir()
  let projectId: string
  const secrets: string[] = []

  /** Whether `secret` authenticates against the data directory right now. */
  const authenticates = async (secret: string) => {
    const store = createSqliteStore({ path: join(dir, 'earmark.sqlite') })
    try {
      const grants = await createGrants({ store, clock: systemClock })
      const auth = createAuthenticator({ store, grants, clock: systemClock })
      return await auth.authenticate('token', secret).then(
        () => true,
        () => false,
      )
    } finally {
      await store.close()
    }
  }

  const auditEvents = async (): Promise<AuditEvent[]> => {
    const store = createSqliteStore({ path: join(dir, 'earmark.sqlite') })
    try {
      return (await store.listAuditEvents(projectId, {})).reverse()
    } finally {
      await store.close()
    }
  }

  const createKey = async (...extra: string[]) => {
    const res = await cli(dir, 'keys', 'create', '--scopes', 'member', ...extra)
    assert.equal(res.code, 0, res.err)
    const body = res.json() as { key: string; api_key_id: string }
    recordSecrets(body.key)
    secrets.push(body.key)
    return body
  }

  before(async () => {
    const init = await cli(dir, 'init')
    assert.equal(init.code, 0, init.err)
    projectId = init.json().project_id
    recordSecrets(init.json().key)
    secrets.push(init.json().key)
  })
  after(() => removeDir(dir))

  it('prints a new secret once for the same key; with --grace-period 0 the old one is refused at once', async () => {
    const key = await createKey('--tags', 'web')
    const res = await cli(dir, 'keys', 'reroll', key.api_key_id, '--grace-period', '0')
    assert.equal(res.code, 0, res.err)
    const body = res.json() as Record<string, unknown>
    recordSecrets(String(body.key))
    secrets.push(String(body.key))
    assert.equal(body.api_key_id, key.api_key_id)
    assert.deepEqual(body.scopes, ['member'])
    assert.deepEqual(body.tags, ['web'])
    assert.match(String(body.key), /^emk_[0-9a-f]{56}$/)
    assert.equal(res.out.split(String(body.key)).length - 1, 1, 'the secret is printed exactly once')
    assert.equal(await authenticates(String(body.key)), true, 'the new secret works')
    assert.equal(await authenticates(key.key), false, 'the old one is refused')
    const list = await cli(dir, 'keys', 'list')
    assert.ok(!list.out.includes(String(body.key)), 'never shown again')
  })

  it('keeps the old secret for the default grace period (an hour)', async () => {
    const key = await createKey()
    const before = Date.now()
    const res = await cli(dir, 'keys', 'reroll', key.api_key_id, '--project', projectId)
    assert.equal(res.code, 0, res.err)
    const body = res.json() as { key: string; previous_key_expiration_date: string }
    recordSecrets(body.key)
    secrets.push(body.key)
    const ends = Date.parse(body.previous_key_expiration_date)
    assert.ok(ends >= before + 3_600_000 && ends <= Date.now() + 3_600_000, body.previous_key_expiration_date)
    assert.equal(await authenticates(key.key), true, 'the old secret still works')
    assert.equal(await authenticates(body.key), true)
  })

  it('refuses an unknown key, another project and a bad grace period with exit code 2', async () => {
    const key = await createKey()
    for (const args of [
      ['no-such-key'],
      [key.api_key_id, '--project', '00000000-0000-4000-8000-000000000000'],
      [key.api_key_id, '--grace-period', '86401'],
      [key.api_key_id, '--grace-period', 'soon'],
    ]) {
      const res = await cli(dir, 'keys', 'reroll', ...args)
      assert.equal(res.code, 2, args.join(' '))
      assert.match(res.err, /KEY_NOT_FOUND|PROJECT_NOT_FOUND|INVALID_FIELD/)
    }
    assert.equal(await authenticates(key.key), true, 'nothing changed')
  })

  it('sweeps expired keys: recorded once, deleted after the retention (EARMARK_EXPIRED_KEY_RETENTION_SECONDS)', async () => {
    const key = await createKey('--ttl', '1')
    await new Promise((r) => setTimeout(r, 1100))
    const run = async (retention: string) => {
      let out = ''
      const code = await runCli(['--data-dir', dir, 'keys', 'sweep'], {
        out: (t) => {
          out += t
        },
        err: () => {},
        env: { EARMARK_EXPIRED_KEY_RETENTION_SECONDS: retention },
      })
      assert.equal(code, 0)
      return JSON.parse(out) as { expired: number; swept: number }
    }
    assert.deepEqual(await run('3600'), { expired: 1, swept: 0 })
    assert.deepEqual(await run('3600'), { expired: 0, swept: 0 })
    assert.deepEqual(await run('0'), { expired: 0, swept: 1 })
    const list = (await cli(dir, 'keys', 'list')).json() as { api_key_id: string }[]
    assert.ok(!list.some((k) => k.api_key_id === key.api_key_id), 'the swept key is gone')
    const mine = (await auditEvents()).filter((e) => e.keyId === key.api_key_id).map((e) => e.type)
    assert.deepEqual(mine, ['key.created', 'key.expired', 'key.swept'])
  })

  it('audits every key and signing-key command it runs, marked as the CLI, with no secret', async () => {
    const key = await createKey()
    assert.equal((await cli(dir, 'keys', 'reroll', key.api_key_id, '--project', projectId)).code, 0)
    assert.equal((await cli(dir, 'keys', 'delete', key.api_key_id)).code, 0)
    const rotated = await cli(dir, 'rotate-signing-key')
    assert.equal(rotated.code, 0, rotated.err)
    const kid = rotated.json().kid as string
    assert.equal((await cli(dir, 'signing-keys', 'retire', kid)).code, 0)

    const events = await auditEvents()
    const about = events.filter((e) => e.keyId === key.api_key_id)
    assert.deepEqual(
      about.map((e) => e.type),
      ['key.created', 'key.rerolled', 'key.deleted'],
    )
    for (const e of about) {
      assert.equal(e.detail.via, 'cli')
      assert.equal(e.actorKeyId, null, 'an operator at the CLI acts without a key')
    }
    const rotation = events.find((e) => e.type === 'signing_key.rotated')
    assert.deepEqual(rotation?.detail, { kid, via: 'cli' })
    const retirement = events.find((e) => e.type === 'signing_key.retired')
    assert.equal(retirement?.detail.kid, kid)
    assert.equal(retirement?.detail.via, 'cli')
    const text = JSON.stringify(events)
    for (const secret of secrets) assert.ok(!text.includes(secret), 'a key secret reached the audit trail')
  })
})
