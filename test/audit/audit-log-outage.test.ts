import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { createAuditLog } from '../../src/audit/index.js'
import { systemClock } from '../../src/auth/index.js'
import { ApiError } from '../../src/errors.js'
import type { AuditEvent, Store } from '../../src/store/index.js'

// The audit trail through a store outage (docs/audit.md): the events of acknowledged changes wait for a store
// that answers 503 (PostgreSQL restarting) and are written, in order, once it is back; found missing by
// test/store/postgres-restart.test.ts.

/** A store whose audit writes fail with 503 while `away` is true. */
function storeThatGoesAway() {
  const written: AuditEvent[] = []
  const state = { away: true, attempts: 0 }
  const store = {
    insertAuditEvents: async (events: AuditEvent[]) => {
      state.attempts++
      if (state.away) throw new ApiError('SERVICE_UNAVAILABLE', 'The database is unreachable.')
      written.push(...events)
    },
  } as unknown as Store
  return { store, written, state }
}

describe('the audit log while the store is away', () => {
  it('keeps the events, tries again, and writes them in order once the store answers', async () => {
    const { store, written, state } = storeThatGoesAway()
    const errors: unknown[] = []
    const audit = createAuditLog({
      store,
      clock: systemClock,
      flushIntervalMs: 5,
      retryMs: 20,
      maxBatch: 2,
      onError: (err) => errors.push(err),
    })
    for (let i = 0; i < 5; i++) audit.record({ projectId: 'p', type: 'key.created', keyId: `k${i}` })
    await sleep(100)
    audit.record({ projectId: 'p', type: 'key.deleted', keyId: 'k0' })
    assert.ok(state.attempts >= 2, 'tried more than once')
    assert.equal(written.length, 0)
    state.away = false
    await sleep(100)
    assert.deepEqual(
      written.map((e) => `${e.type} ${e.keyId}`),
      ['k0', 'k1', 'k2', 'k3', 'k4'].map((k) => `key.created ${k}`).concat('key.deleted k0'),
      'every event, in the order recorded',
    )
    assert.equal(errors.length, 1, 'the outage is reported once, not per attempt')
    await audit.close()
  })

  it('counts what a store still away at shutdown could not take', async () => {
    const { store } = storeThatGoesAway()
    const dropped: number[] = []
    const audit = createAuditLog({
      store,
      clock: systemClock,
      onError: (_err, context) => {
        if (context.dropped) dropped.push(context.dropped)
      },
    })
    audit.record({ projectId: 'p', type: 'key.created', keyId: 'k' })
    audit.record({ projectId: 'p', type: 'key.deleted', keyId: 'k' })
    await audit.close()
    assert.deepEqual(dropped, [2])
  })
})
