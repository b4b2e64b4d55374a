import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createRevocationBus, type RevocationEvent } from '../../src/revocation/index.js'

describe('the in-process revocation bus', () => {
  it('delivers every event to every subscriber in order, and nothing after unsubscribe', () => {
    const bus = createRevocationBus()
    const a: RevocationEvent[] = []
    const b: RevocationEvent[] = []
    const offA = bus.subscribe((e) => a.push(e))
    bus.subscribe((e) => b.push(e))
    const deleted: RevocationEvent = { type: 'key-revoked', projectId: 'p', keyId: 'k', reason: 'deleted' }
    const retired: RevocationEvent = { type: 'signing-key-retired', kid: 'kid-1' }
    bus.publish(deleted)
    offA()
    bus.publish(retired)
    assert.deepEqual(a, [deleted])
    assert.deepEqual(b, [deleted, retired])
  })

  it('a listener that throws is reported and does not stop the others', () => {
    const failures: unknown[] = []
    const bus = createRevocationBus({ onListenerError: (err) => failures.push(err) })
    const seen: string[] = []
    bus.subscribe(() => {
      throw new Error('listener failed')
    })
    bus.subscribe((e) => seen.push(e.type))
    bus.publish({ type: 'credentials-changed' })
    assert.deepEqual(seen, ['credentials-changed'])
    assert.equal(failures.length, 1)
  })

  it('the same function subscribed twice is two subscriptions, each removed on its own', () => {
    const bus = createRevocationBus()
    let calls = 0
    const listener = () => {
      calls++
    }
    const off1 = bus.subscribe(listener)
    bus.subscribe(listener)
    off1()
    bus.publish({ type: 'credentials-changed' })
    assert.equal(calls, 1)
  })
})
