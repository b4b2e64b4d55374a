import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { loadConfig } from '../../src/config/index.js'
import { createLogger, prettyLogs } from '../../src/main.js'

// Human-readable lines (pino-pretty) on a terminal, JSON lines otherwise (EARMARK_LOG_FORMAT=auto), with
// secrets cut out either way. test/ops/drain.test.ts reads the JSON lines of a real server on a pipe.

function sink() {
  const lines: string[] = []
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk))
      done()
    },
  })
  return { lines, stream }
}

describe('log format', () => {
  it('is pretty on a terminal and JSON on a pipe under auto; json and pretty are taken as said', () => {
    const table = [
      { format: 'auto', tty: true, pretty: true },
      { format: 'auto', tty: false, pretty: false },
      { format: 'json', tty: true, pretty: false },
      { format: 'pretty', tty: false, pretty: true },
    ] as const
    for (const row of table) assert.equal(prettyLogs(row.format, row.tty), row.pretty, JSON.stringify(row))
    assert.equal(loadConfig({}).logFormat, 'auto')
    assert.throws(() => loadConfig({ EARMARK_LOG_FORMAT: 'xml' }), /EARMARK_LOG_FORMAT/)
  })

  it('writes pretty lines a person reads, with a key in the message still cut out', () => {
    const { lines, stream } = sink()
    const log = createLogger({ logLevel: 'info', logFormat: 'pretty' }, stream)
    const secret = generateKeySecret()
    log.info({ request_id: 'r-1' }, `refused ${secret}`)
    const text = lines.join('')
    assert.ok(!text.trimStart().startsWith('{'), text)
    assert.match(text, /INFO/)
    assert.match(text, /request_id: "r-1"/)
    assert.ok(!text.includes(secret), text)
  })

  it('writes JSON lines to a destination under auto', () => {
    const { lines, stream } = sink()
    createLogger({ logLevel: 'info', logFormat: 'auto' }, stream).info({ n: 1 }, 'hello')
    const entry = JSON.parse(lines[0] ?? '') as { msg: string; n: number }
    assert.deepEqual([entry.msg, entry.n], ['hello', 1])
  })
})
