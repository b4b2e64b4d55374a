import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

/** What `scanLogs` found in a log directory of test/helpers/test-logs.ts. */
export interface LogScan {
  logFiles: number
  lines: string[]
  secrets: number
  /** `file:line: what`, never the secret itself. */
  leaks: string[]
}

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

/**
 * Reads every `*.log` in `dir` and reports each line that holds a recorded secret (`secrets-*.txt`), whole
 * or in part, or anything shaped like a key or a JWT.
 */
export function scanLogs(dir: string): LogScan {
  const names = readdirSync(dir)
  const secrets = new Set(
    names
      .filter((n) => n.startsWith('secrets-'))
      .flatMap((n) => readFileSync(join(dir, n), 'utf8').split('\n'))
      .filter((s) => s.length >= 16),
  )
  const needles = [...new Set([...secrets].flatMap(fragments))]
  const logs = names.filter((n) => n.endsWith('.log'))
  const lines: string[] = []
  const leaks: string[] = []
  for (const name of logs) {
    readFileSync(join(dir, name), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line === '') return
        lines.push(line)
        const where = `${name}:${i + 1}`
        for (const [what, shape] of SHAPES) if (shape.test(line)) leaks.push(`${where}: ${what}`)
        if (needles.some((n) => line.includes(n))) leaks.push(`${where}: a secret the suite used`)
      })
  }
  return { logFiles: logs.length, lines, secrets: secrets.size, leaks }
}
