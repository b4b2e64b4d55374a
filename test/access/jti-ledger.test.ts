import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createMemoryJtiLedger } from '../../src/access/index.js'
import { createManualClock } from '../../src/auth/index.js'

// The in-memory replay ledger behind `max_uses` (docs/credential-options.md).

describe('the in-memory jti ledger', () => {
  it('redeems exactly maxUses uses of a token, and each token separately', () => {
    const clock = createManualClock()
    const ledger = createMemoryJtiLedger({ clock })
    const exp = clock.now() + 60_000
    assert.deepEqual(
      [1, 2, 3, 4].map(() => ledger.redeem('a', 3, exp)),
      [true, true, true, false],
    )
    assert.equal(ledger.redeem('b', 1, exp), true)
    assert.equal(ledger.redeem('b', 1, exp), false)
  })

  it('refuses a token minted before the ledger started (a restart forgot its uses), and admits one minted after', () => {
    const clock = createManualClock()
    const before = clock.now() - 5_000
    clock.advance(1)
    const ledger = createMemoryJtiLedger({ clock })
    const exp = clock.now() + 60_000
    assert.equal(ledger.redeem('old', 1, exp, before), false, 'minted by the previous process')
    assert.equal(ledger.redeem('old', 1, exp, before), false)
    clock.advance(2_000)
    assert.equal(ledger.redeem('new', 1, exp, Math.floor(clock.now() / 1000) * 1000), true)
    assert.equal(ledger.redeem('new', 1, exp, Math.floor(clock.now() / 1000) * 1000), false)
  })

  it('refuses a token that has already expired, without remembering it', () => {
    const clock = createManualClock()
    const ledger = createMemoryJtiLedger({ clock })
    assert.equal(ledger.redeem('dead', 1, clock.now()), false)
    assert.equal(ledger.size, 0)
  })

  it('forgets a token once it has expired, so memory holds only live tokens', () => {
    const clock = createManualClock()
    const ledger = createMemoryJtiLedger({ clock })
    const start = clock.now()
    for (let i = 0; i < 1000; i++) ledger.redeem(`short-${i}`, 1, start + 30_000)
    for (let i = 0; i < 10; i++) ledger.redeem(`long-${i}`, 1, start + 3_600_000)
    assert.equal(ledger.size, 1010)
    clock.advance(31_000)
    // The next redemption sweeps what expired.
    assert.equal(ledger.redeem('fresh', 1, clock.now() + 30_000), true)
    assert.equal(ledger.size, 11)
    // A long-lived token's spent use is still remembered.
    assert.equal(ledger.redeem('long-0', 1, start + 3_600_000), false)
  })
})
