import assert from 'node:assert/strict'
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { generateKeySecret } from '../../src/auth/index.js'
import { scanLogs } from '../helpers/log-scan.js'

describe('the log scan (test/log-scan/)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'earmark-scan-self-'))
  after(() => rmSync(dir, { recursive: true, force: true }))
  const key = generateKeySecret()
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhYmNkZWZnaCJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg'
  writeFileSync(join(dir, `secrets-${process.pid}.txt`), `${key}\n${jwt}\n`)

  it('finds nothing in clean lines, and counts them', () => {
    writeFileSync(join(dir, 'clean.log'), '{"msg":"request","path":"/v1/auth/token/[redacted]"}\n')
    const scan = scanLogs(dir)
    assert.deepEqual(scan, { logFiles: 1, lines: [scan.lines[0]], secrets: 2, leaks: [] })
  })

  it('finds a recorded key, its random part alone, a JWT signature alone, and key or JWT shapes', () => {
    const leaky = join(dir, 'leaky.log')
    appendFileSync(leaky, `{"msg":"x","err":"${key}"}\n`)
    appendFileSync(leaky, `{"msg":"x","path":"/t/emk%5F${key.slice(4)}"}\n`)
    appendFileSync(leaky, `{"msg":"x","sig":"${jwt.split('.')[2]}"}\n`)
    appendFileSync(leaky, '{"msg":"x","other":"emk_0123abcd"}\n')
    appendFileSync(leaky, '{"msg":"x","t":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4eXoxMjM0In0.YWJjZGVmZ2hpams"}\n')
    const { leaks } = scanLogs(dir)
    for (const line of [1, 2, 3, 4, 5]) {
      assert.ok(
        leaks.some((l) => l.startsWith(`leaky.log:${line}:`)),
        `line ${line} is reported`,
      )
    }
    assert.ok(
      leaks.every((l) => !l.includes(key) && !l.includes(jwt)),
      'the report never quotes a secret',
    )
  })
})
