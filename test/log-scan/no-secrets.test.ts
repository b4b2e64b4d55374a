import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { scanLogs } from '../helpers/log-scan.js'

/**
 * The second pass of scripts/run-tests.mjs: the whole suite ran with every server logging at debug into
 * `EARMARK_TEST_LOG_DIR` and every secret it handled recorded there (test/helpers/test-logs.ts). No log line
 * may hold one, nor anything shaped like a key or a grant token; an empty directory fails (it proves nothing).
 */
const dir = process.env.EARMARK_TEST_LOG_DIR

describe('the logs of the whole suite', () => {
  it('were collected, and hold no key secret or grant token the suite used, whole or in part', () => {
    assert.ok(dir, 'EARMARK_TEST_LOG_DIR is not set: run the suite with `npm test` (scripts/run-tests.mjs)')
    const scan = scanLogs(dir)
    console.log(`# scanned ${scan.lines.length} lines in ${scan.logFiles} files for ${scan.secrets} secrets`)
    assert.ok(scan.logFiles > 0, `no log file in ${dir}: the scan would prove nothing`)
    assert.ok(
      scan.lines.length >= 100,
      `only ${scan.lines.length} log lines in ${dir}: the scan would prove little`,
    )
    assert.ok(scan.secrets > 0, `no secret was recorded in ${dir}`)
    assert.ok(
      scan.lines.some((l) => l.includes('"msg":"request"')),
      'the access log was collected',
    )
    // The report names the place, never the secret.
    assert.deepEqual(scan.leaks, [])
  })
})
