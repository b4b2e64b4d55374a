import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { createLastResort, requestScope } from '../src/last-resort.js'

/** A last resort on a logger whose lines are kept, a settable clock, and a shutdown that is only recorded. */
function harness(maxFaults = 3, windowMs = 1000) {
  const lines: { level: number; msg: string; request_id?: string }[] = []
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)))
      done()
    },
  })
  const log = pino({ level: 'info' }, sink)
  let t = 0
  const stops: string[] = []
  const closed: string[] = []
  const lastResort = createLastResort({
    log,
    maxFaults,
    windowMs,
    now: () => t,
    shutdown: (reason) => stops.push(reason),
    closeStream: (requestId) => closed.push(requestId),
  })
  const flush = () => new Promise((r) => setImmediate(r))
  return { lastResort, lines, stops, closed, flush, advance: (ms: number) => (t += ms) }
}

describe('the process-level last resort', () => {
  it('keeps serving through an unhandled rejection and logs it at error with the request id', async () => {
    const h = harness()
    requestScope.run('req-1', () => h.lastResort.onUnhandledRejection(new Error('boom')))
    await h.flush()
    assert.deepEqual(h.stops, [])
    assert.equal(h.lines[0]?.level, 50)
    assert.equal(h.lines[0]?.request_id, 'req-1')
  })

  it('keeps serving through an uncaught exception in a live stream, logged with its request id', async () => {
    const h = harness()
    requestScope.run('req-2', () => h.lastResort.onUncaughtException(new Error('boom')))
    await h.flush()
    assert.deepEqual(h.stops, [])
    assert.equal(h.lines[0]?.request_id, 'req-2')
    assert.deepEqual(h.closed, ['req-2'], 'the faulty stream alone is closed')
  })

  it('shuts down on an uncaught exception it cannot attribute, logged at fatal, once', async () => {
    const h = harness()
    h.lastResort.onUncaughtException(new Error('boom'))
    h.lastResort.onUncaughtException(new Error('again'))
    await h.flush()
    assert.deepEqual(h.stops, ['uncaught exception'])
    assert.deepEqual(h.closed, [])
    assert.equal(h.lines[0]?.level, 60)
  })

  it('shuts down when faults pass the budget within the window, not when they are spread out', async () => {
    const spread = harness(3, 1000)
    for (let i = 0; i < 10; i++) {
      spread.lastResort.onUnhandledRejection(new Error(`fault ${i}`))
      spread.advance(400)
    }
    assert.deepEqual(spread.stops, [])
    const burst = harness(3, 1000)
    for (let i = 0; i < 4; i++) burst.lastResort.onUnhandledRejection(new Error(`fault ${i}`))
    assert.deepEqual(burst.stops, ['too many faults'])
  })
})
