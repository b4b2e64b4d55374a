import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { effectiveScopes, expandScopes, isValidScope, ROLE_SCOPES, roleOf } from '../../src/auth/index.js'

describe('roles and scopes', () => {
  it('nest member within admin within owner', () => {
    for (const s of ROLE_SCOPES.member) assert.ok(ROLE_SCOPES.admin.has(s), s)
    for (const s of ROLE_SCOPES.admin) assert.ok(ROLE_SCOPES.owner.has(s), s)
  })

  it('give each role the scopes of docs/deepgram-compat.md §4', () => {
    assert.deepEqual([...ROLE_SCOPES.member].sort(), [
      'keys:read',
      'keys:write',
      'project:read',
      'project:write',
      'usage:read',
      'usage:write',
    ])
    assert.ok(ROLE_SCOPES.admin.has('members:write:scopes'))
    assert.ok(ROLE_SCOPES.admin.has('owners:read'))
    assert.ok(!ROLE_SCOPES.admin.has('owners:write'))
    assert.ok(!ROLE_SCOPES.admin.has('billing:write'))
    assert.ok(ROLE_SCOPES.owner.has('project:write:destroy'))
    assert.ok(ROLE_SCOPES.owner.has('billing:write'))
  })

  it('expand a mix of roles and single scopes, dropping unknown ones', () => {
    assert.deepEqual([...expandScopes(['usage:write', 'nonsense'])], ['usage:write'])
    assert.equal(expandScopes(['member', 'members:read']).size, ROLE_SCOPES.member.size + 1)
    assert.equal(isValidScope('nonsense'), false)
    assert.equal(isValidScope('admin'), true)
  })

  it("cap a key's scopes at its member's role", () => {
    assert.deepEqual(effectiveScopes(['owner'], 'member'), new Set(ROLE_SCOPES.member))
    assert.deepEqual([...effectiveScopes(['usage:write'], 'owner')], ['usage:write'])
  })

  it('name the highest whole role a scope set holds', () => {
    assert.equal(roleOf(new Set(ROLE_SCOPES.owner)), 'owner')
    assert.equal(roleOf(new Set(ROLE_SCOPES.admin)), 'admin')
    assert.equal(roleOf(new Set([...ROLE_SCOPES.member, 'members:read'])), 'member')
    assert.equal(roleOf(new Set(['usage:write', 'keys:write'])), undefined)
  })
})
