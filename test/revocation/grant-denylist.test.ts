import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { AccessRequest } from '../../src/access/index.js'
import type { Principal } from '../../src/auth/index.js'
import { isApiError } from '../../src/errors.js'
import { createGrantDenylist, createRevocationBus } from '../../src/revocation/index.js'
import { bootstrapProject, createTestEarmark, type TestEarmark } from '../helpers/earmark.js'

// One grant token revoked by its jti (docs/live-streams.md): refused until its own expiry, then forgotten.

const REQUEST: AccessRequest = {
  transport: 'http',
  kind: 'usage',
  route: '/v1/listen',
  ip: '127.0.0.1',
  origin: undefined,
  userAgent: undefined,
  requestId: 'denylist-test',
}

describe('the grant-token denylist', () => {
  let em: TestEarmark
  let projectId: string
  let ownerKeyId: string

  before(async () => {
    em = await createTestEarmark()
    const fx = await bootstrapProject(em.services)
    projectId = fx.projectId
    ownerKeyId = (await em.authenticator.authenticate('token', fx.ownerKey)).keyId
  })
  after(() => em.close())

  /** A real grant token's principal, as the authenticator makes it. */
  const tokenPrincipal = async (ttlSeconds: number): Promise<Principal> => {
    const { token } = em.services.grants.mint({
      projectId,
      accessor: ownerKeyId,
      ttlSeconds,
      notAfterMs: null,
    })
    return em.authenticator.authenticate('bearer', token)
  }

  const refusal = (admit: () => unknown): string | undefined => {
    try {
      admit()
      return undefined
    } catch (err) {
      return isApiError(err) ? err.code : String(err)
    }
  }

  it('refuses a revoked token with INVALID_AUTH until it would have expired, and no other token', async () => {
    const bus = createRevocationBus()
    const denylist = createGrantDenylist({ bus, clock: em.clock })
    const admit = (p: Principal) => refusal(() => denylist.stage.admit?.(p, REQUEST))
    const revoked = await tokenPrincipal(60)
    const other = await tokenPrincipal(60)
    const jti = revoked.grant?.jti ?? ''
    assert.equal(admit(revoked), undefined, 'admitted before the revocation')
    bus.publish({ type: 'grant-revoked', projectId, jti, expiresAt: em.clock.now() + 60_000 })
    assert.equal(denylist.has(jti), true)
    assert.equal(admit(revoked), 'INVALID_AUTH')
    assert.equal(admit(other), undefined, 'another token of the same key stays good')
    em.clock.advance(60_000)
    assert.equal(denylist.has(jti), false, 'forgotten once the token has expired anyway')
    denylist.close()
    bus.publish({
      type: 'grant-revoked',
      projectId,
      jti: other.grant?.jti ?? '',
      expiresAt: em.clock.now() + 1000,
    })
    assert.equal(denylist.has(other.grant?.jti ?? ''), false, 'nothing heard after close')
  })
})
