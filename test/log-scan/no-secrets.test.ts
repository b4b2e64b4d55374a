import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

/**
 * The second pass of scripts/run-tests.mjs: the whole suite ran with every server logging at debug into
 * `EARMARK_TEST_LOG_DIR` and every secret it handled recorded there (test/helpers/test-logs.ts). No log line
 * may hold one, nor anything shaped like a key or a grant token.
 */
const dir = process.env.EARMARK_TEST_LOG_DIR

/** The parts of a secret that would still give it away if the rest were cut: a key's random hex, a JWT's signature. */
function fragments(secret: string): string[] {
  const parts = [secret]
  const key = /^emk_(?:live_test_)?([0-9a-f]{16,})/.exec(secret)
  if (key?.[1]) parts.push(key[1].slice(0, 24))
  const jwt = secret.split('.')
  if (jwt.length === 3 && (jwt[2]?.length ?? 0) >= 16) parts.push(jwt[2] as string)
  return parts
}

const SHAPES: Array<[string, RegExp]> = [
  ['an Earmark key', /emk_[0-9a-f]{8}/i],
  ['a JWT', /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}/],
]

describe('the logs of the whole suite', () => {
  it('were collected: the log directory holds many log lines and the secrets the suite used', () => {
    assert.ok(dir, 'EARMARK_TEST_LOG_DIR is not set: run the suite with `npm test` (scripts/run-tests.mjs)')
    const names = readdirSync(dir)
    const logs = names.filter((n) => n.endsWith('.log'))
    const lines = logs.flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n')).filter((l) => l !== '')
    const secrets = names.filter((n) => n.startsWith('secrets-'))
    assert.ok(logs.length > 0, `no log file in ${dir}: the scan would prove nothing`)
    assert.ok(lines.length >= 100, `only ${lines.length} log lines in ${dir}: the scan would prove little`)
    assert.ok(secrets.length > 0, `no secret was recorded in ${dir}`)
    assert.ok(
      lines.some((l) => l.includes('"msg":"request"')),
      'the access log was collected',
    )
  })

  it('hold no key secret or grant token the suite used, whole or in part, and nothing shaped like one', () => {
    assert.ok(dir, 'EARMARK_TEST_LOG_DIR is not set')
    const names = readdirSync(dir)
    const secrets = new Set(
      names
        .filter((n) => n.startsWith('secrets-'))
        .flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n'))
        .filter((s) => s.length >= 16),
    )
    const needles = [...new Set([...secrets].flatMap(fragments))]
    const leaks: string[] = []
    for (const name of names.filter((n) => n.endsWith('.log'))) {
      const lines = readFileSync(join(dir, name), 'utf8').split('\n')
      lines.forEach((line, i) => {
        const where = `${name}:${i + 1}`
        for (const [what, shape] of SHAPES) if (shape.test(line)) leaks.push(`${where}: ${what}`)
        if (needles.some((n) => line.includes(n))) leaks.push(`${where}: a secret the suite used`)
      })
    }
    console.log(`# scanned ${names.length} files for ${secrets.size} secrets`)
    // The report names the place, never the secret.
    assert.deepEqual(leaks, [])
  })
})
