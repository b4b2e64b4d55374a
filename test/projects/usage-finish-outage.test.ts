import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { systemClock } from '../../src/auth/index.js'
import { ApiError } from '../../src/errors.js'
import { finishStreamUsage, finishUsage, type Services } from '../../src/projects/index.js'
import type { Store, UsageRecord } from '../../src/store/index.js'
import { usage } from '../helpers/store-fixtures.js'

// A stream's usage record through a store outage (docs/store.md, "Restarted under load"): the stream was
// served already, so its end is written once the store answers again; a request's is not retried (its
// answer waits for it, and a failure becomes that answer).

/** Services whose store fails `finishUsage` with `failures` (in order) before it stores. */
function servicesFailing(failures: Error[]) {
  const stored: UsageRecord[] = []
  let calls = 0
  const store = {
    finishUsage: async (_projectId: string, _id: string, r: UsageRecord) => {
      calls++
      const failure = failures.shift()
      if (failure) throw failure
      stored.push({ ...r })
      return true
    },
  } as unknown as Store
  return { services: { store, clock: systemClock } as unknown as Services, stored, calls: () => calls }
}

const away = () => new ApiError('SERVICE_UNAVAILABLE', 'The database is unreachable.')
/** A stream's record, still open. */
const record = () => usage('p', 'k', 0, { endedAt: null, status: null })
const end = { audioSeconds: 4.5, status: 1000 }
const retry = { everyMs: 5, attempts: 3 }

describe('the end of a usage record while the store is away', () => {
  it('is written after the store comes back when a stream ended', async () => {
    const { services, stored, calls } = servicesFailing([away(), away()])
    await finishStreamUsage(services, record(), end, retry)
    assert.equal(calls(), 3)
    assert.equal(stored[0]?.audioSeconds, 4.5, 'the audio seconds the stream was served')
  })

  it('is given up after its attempts, and at once on another error or for a request', async () => {
    const finish = (services: Services, stream: boolean) =>
      stream ? finishStreamUsage(services, record(), end, retry) : finishUsage(services, record(), end)
    const cases = [
      { what: 'away too long', failures: [away(), away(), away(), away()], stream: true, calls: 4 },
      { what: 'another error', failures: [new Error('constraint')], stream: true, calls: 1 },
      { what: 'a request', failures: [away()], stream: false, calls: 1 },
    ]
    for (const c of cases) {
      const { services, stored, calls } = servicesFailing(c.failures)
      await assert.rejects(finish(services, c.stream), c.what)
      assert.equal(calls(), c.calls, c.what)
      assert.equal(stored.length, 0, c.what)
    }
  })
})
