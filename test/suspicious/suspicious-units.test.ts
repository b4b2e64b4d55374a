import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { loadConfig } from '../../src/config/index.js'
import { isApiError } from '../../src/errors.js'
import {
  createMemoryWindows,
  DEFAULT_SUSPICIOUS_POLICY,
  effectivePolicy,
  parseSuspiciousSettings,
  suspiciousPolicyFromEnv,
  suspiciousSettingsView,
} from '../../src/suspicious/index.js'

const W = 60_000

describe('the in-memory activity windows', () => {
  it('counts distinct values within the window only, and each value once', () => {
    const w = createMemoryWindows()
    assert.equal(w.distinct('s', 'a', 0, W, 100), 1)
    assert.equal(w.distinct('s', 'a', 1000, W, 100), 1)
    assert.equal(w.distinct('s', 'b', 2000, W, 100), 2)
    // `a` was last seen at 1000: gone once the window passed it; `b` is still in.
    assert.equal(w.distinct('s', 'c', 61_500, W, 100), 2)
    assert.equal(w.distinct('other', 'a', 61_500, W, 100), 1, 'subjects are counted apart')
  })

  it('stops counting distinct values at the cap, so a flood costs bounded memory', () => {
    const w = createMemoryWindows()
    let last = 0
    for (let i = 0; i < 1000; i++) last = w.distinct('s', `v${i}`, i, W, 9) as number
    assert.equal(last, 9)
  })

  it('counts events in a sliding window: the previous window weighs what is left of it', () => {
    const w = createMemoryWindows()
    for (let i = 0; i < 10; i++) w.count('s', 0, W)
    assert.equal(w.count('s', 30_000, W), 11)
    // Halfway through the next window, half of the previous one's 11 still count.
    assert.equal(w.count('s', 90_000, W), 1 + 5)
    // Two windows on, nothing of the old ones is left.
    assert.equal(w.count('s', 250_000, W), 1)
  })

  it('grants a claim once per window', () => {
    const w = createMemoryWindows()
    assert.equal(w.claim('s', 0, W), true)
    assert.equal(w.claim('s', 59_999, W), false)
    assert.equal(w.claim('s', 60_000, W), true)
  })

  it('tells a first value from a known and a new one, and forgets the least recently learnt past its bound', () => {
    const w = createMemoryWindows()
    assert.equal(w.seen('k', 'https://a.example'), 'first')
    w.learn('k', 'https://a.example', 2)
    assert.equal(w.seen('k', 'https://a.example'), 'known')
    assert.equal(w.seen('k', 'https://b.example'), 'new')
    w.learn('k', 'https://b.example', 2)
    w.learn('k', 'https://c.example', 2)
    assert.equal(w.seen('k', 'https://a.example'), 'new')
    assert.equal(w.seen('k', 'https://c.example'), 'known')
  })
})

describe('suspicious-activity settings', () => {
  const fieldOf = (fn: () => unknown) => {
    try {
      fn()
    } catch (err) {
      assert.ok(isApiError(err))
      assert.equal(err.code, 'INVALID_FIELD')
      return err.message
    }
    assert.fail('expected INVALID_FIELD')
  }

  it('parses the snake_case section, merges it over what is stored, and clears a field set to null', () => {
    const parsed = parseSuspiciousSettings({ auto_disable: true, max_ips_per_end_user: 3 })
    assert.deepEqual(parsed, { autoDisable: true, maxIpsPerEndUser: 3 })
    assert.deepEqual(parseSuspiciousSettings({ max_ips_per_end_user: null, new_origin: false }, parsed), {
      autoDisable: true,
      newOrigin: false,
    })
    assert.equal(parseSuspiciousSettings(null, parsed), undefined)
    assert.deepEqual(suspiciousSettingsView({ autoDisable: true, maxIpsPerEndUser: 3 }), {
      auto_disable: true,
      max_ips_per_end_user: 3,
    })
  })

  it('refuses an unknown field, a wrong type and an out-of-range window, naming the field', () => {
    assert.match(
      fieldOf(() => parseSuspiciousSettings({ max_ip: 3 })),
      /suspicious_activity\.max_ip/,
    )
    assert.match(
      fieldOf(() => parseSuspiciousSettings({ auto_disable: 'yes' })),
      /auto_disable/,
    )
    assert.match(
      fieldOf(() => parseSuspiciousSettings({ window_seconds: 1 })),
      /window_seconds/,
    )
    assert.match(
      fieldOf(() => parseSuspiciousSettings({ max_grants_per_key: -1 })),
      /max_grants_per_key/,
    )
    assert.match(
      fieldOf(() => parseSuspiciousSettings([])),
      /suspicious_activity/,
    )
  })

  it('reads the server policy from EARMARK_SUSPICIOUS_* and refuses a bad value at start', () => {
    assert.deepEqual(suspiciousPolicyFromEnv({}), DEFAULT_SUSPICIOUS_POLICY)
    assert.equal(DEFAULT_SUSPICIOUS_POLICY.autoDisable, false, 'auto-disable is off unless asked for')
    const policy = suspiciousPolicyFromEnv({
      EARMARK_SUSPICIOUS_AUTO_DISABLE: 'true',
      EARMARK_SUSPICIOUS_MAX_IPS_PER_CREDENTIAL: '0',
    })
    assert.equal(policy.autoDisable, true)
    assert.equal(policy.maxIpsPerCredential, 0)
    assert.equal(loadConfig({ EARMARK_SUSPICIOUS_WINDOW_SECONDS: '120' }).suspicious?.windowSeconds, 120)
    assert.throws(
      () => loadConfig({ EARMARK_SUSPICIOUS_WINDOW_SECONDS: 'ten' }),
      /EARMARK_SUSPICIOUS_WINDOW_SECONDS/,
    )
  })

  it("puts a project's fields over the server's, ignoring a stored value of the wrong kind", () => {
    const policy = effectivePolicy(DEFAULT_SUSPICIOUS_POLICY, { maxGrantsPerKey: 5, autoDisable: 7 })
    assert.equal(policy.maxGrantsPerKey, 5)
    assert.equal(policy.autoDisable, false)
  })
})
