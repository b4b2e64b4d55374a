import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseAuthorization } from '../../src/auth/index.js'

describe('parseAuthorization', () => {
  it('reads both schemes, in any case, with any whitespace around', () => {
    assert.deepEqual(parseAuthorization('Token abc'), { scheme: 'token', secret: 'abc' })
    assert.deepEqual(parseAuthorization('token abc'), { scheme: 'token', secret: 'abc' })
    assert.deepEqual(parseAuthorization('BEARER x.y.z'), { scheme: 'bearer', secret: 'x.y.z' })
    assert.deepEqual(parseAuthorization('  Bearer \t x.y.z  '), { scheme: 'bearer', secret: 'x.y.z' })
    assert.deepEqual(parseAuthorization('Token\tabc'), { scheme: 'token', secret: 'abc' })
  })

  it('refuses other schemes, a missing secret and prefixes of ours', () => {
    for (const header of [
      undefined,
      '',
      '   ',
      'Token',
      'Token   ',
      'Bearer',
      'Basic dXNlcjpwYXNz',
      'Tokenabc',
      'Bearerx.y.z',
      'Tokens abc',
      'Bearers abc',
      'Toke abc',
      'abc',
    ]) {
      assert.equal(parseAuthorization(header), undefined, JSON.stringify(header))
    }
  })

  it('keeps a long token whole', () => {
    const jwt = `${'a'.repeat(400)}.${'b'.repeat(43)}`
    assert.deepEqual(parseAuthorization(`Bearer ${jwt}`), { scheme: 'bearer', secret: jwt })
  })
})
