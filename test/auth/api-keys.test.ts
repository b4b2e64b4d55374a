import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeySecret, hashKeySecret, isWellFormedKey } from '../../src/auth/index.js'

describe('API key secrets', () => {
  it('carry a recognisable prefix, 192 random bits and a checksum, in WebSocket-safe characters', () => {
    const secrets = new Set(Array.from({ length: 1000 }, generateKeySecret))
    assert.equal(secrets.size, 1000)
    for (const s of secrets) {
      assert.match(s, /^emk_[0-9a-f]{56}$/)
      assert.ok(isWellFormedKey(s))
    }
  })

  it('fail the checksum when a character is changed', () => {
    const s = generateKeySecret()
    const flipped = s.slice(0, 10) + (s[10] === 'a' ? 'b' : 'a') + s.slice(11)
    assert.equal(isWellFormedKey(flipped), false)
    assert.equal(isWellFormedKey(`${s}0`), false)
    assert.equal(isWellFormedKey('emk_short'), false)
  })

  it('hash to a stable SHA-256 hex digest that differs per secret', () => {
    const s = generateKeySecret()
    assert.equal(hashKeySecret(s), hashKeySecret(s))
    assert.match(hashKeySecret(s), /^[0-9a-f]{64}$/)
    assert.notEqual(hashKeySecret(s), hashKeySecret(generateKeySecret()))
  })
})
