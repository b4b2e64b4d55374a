import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { cli } from '../helpers/cli.js'
import { removeDir, tempDataDir } from '../helpers/server-process.js'

interface KeyView {
  kid: string
  created: string
  retired: string | null
  current: boolean
}

describe('earmark signing-keys', () => {
  const dir = tempDataDir()
  after(() => removeDir(dir))

  it('lists the keys without secrets, retires the current one and makes a fresh one current', async () => {
    assert.equal((await cli(dir, 'init')).code, 0)
    const rotated = await cli(dir, 'rotate-signing-key')
    assert.equal(rotated.code, 0, rotated.err)
    const before = (await cli(dir, 'signing-keys', 'list')).json() as KeyView[]
    assert.equal(before.length, 2)
    assert.deepEqual(Object.keys(before[0] ?? {}).sort(), ['created', 'current', 'kid', 'retired'])
    const current = before.find((k) => k.current)
    assert.equal(current?.kid, rotated.json().kid)

    const retired = await cli(dir, 'signing-keys', 'retire', rotated.json().kid)
    assert.equal(retired.code, 0, retired.err)
    const next = retired.json().current_kid as string
    // Never the older key, which may have leaked with the retired one.
    assert.ok(!before.some((k) => k.kid === next), 'a freshly generated key is current')

    const afterList = (await cli(dir, 'signing-keys', 'list')).json() as KeyView[]
    assert.equal(afterList.length, 3)
    assert.ok(afterList.find((k) => k.kid === rotated.json().kid)?.retired)
    assert.equal(afterList.find((k) => k.current)?.kid, next)
  })

  it('refuses to retire a key that is unknown or already retired, with exit code 2', async () => {
    const list = (await cli(dir, 'signing-keys', 'list')).json() as KeyView[]
    const gone = list.find((k) => k.retired)?.kid
    assert.ok(gone)
    for (const kid of ['no-such-kid', gone]) {
      const res = await cli(dir, 'signing-keys', 'retire', kid)
      assert.equal(res.code, 2)
      assert.match(res.err, /SIGNING_KEY_NOT_FOUND/)
    }
  })
})
