// Runs every test/**/*.test.ts through node's own runner with tsx, as an explicit file list (on Node 20,
// `node --test test/` finds no TypeScript files and still exits 0). Fails when no test ran.
// TEST_FILTER=substring narrows the files.
//
// Two passes. The first runs the suite with EARMARK_TEST_LOG_DIR set: the test helpers' servers log at
// debug into files there and record the secrets they handle (test/helpers/test-logs.ts). The second runs
// test/log-scan/, which fails on any secret in those logs, and on an empty directory. The scan runs after
// the whole suite only (no TEST_FILTER), or when EARMARK_LOG_SCAN=1. The closing line sums both passes.
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const filter = process.env.TEST_FILTER ?? ''
const SCAN_DIR = join('test', 'log-scan')
const all = readdirSync(join(root, 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.ts'))
  .sort()
  .map((f) => join('test', f))
const files = all.filter((f) => !f.startsWith(SCAN_DIR) && f.includes(filter))
const scanFiles = all.filter((f) => f.startsWith(SCAN_DIR))
const scan = scanFiles.length > 0 && (filter === '' || process.env.EARMARK_LOG_SCAN === '1')

if (files.length === 0) {
  console.error('run-tests: no test files found')
  process.exit(1)
}

const logDir = process.env.EARMARK_TEST_LOG_DIR || mkdtempSync(join(tmpdir(), 'earmark-test-logs-'))

/** Runs one pass of the runner; resolves with its exit code and its summary counts. */
function runPass(list) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...list], {
      cwd: root,
      env: { ...process.env, EARMARK_TEST_LOG_DIR: logDir },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let tail = ''
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk)
      tail = (tail + chunk.toString()).slice(-4096)
    })
    child.on('close', (code) => {
      const count = (name) => Number(new RegExp(`^# ${name} (\\d+)`, 'm').exec(tail)?.[1] ?? 0)
      resolve({ code: code ?? 1, tests: count('tests'), passed: count('pass'), failed: count('fail') })
    })
  })
}

const passes = [await runPass(files)]
if (scan) passes.push(await runPass(scanFiles))

const sum = (key) => passes.reduce((n, p) => n + p[key], 0)
const failedPass = passes.some((p) => p.code !== 0 || p.tests === 0)
if (failedPass) {
  console.error(`run-tests: the test logs are kept in ${logDir}`)
} else if (!process.env.EARMARK_TEST_LOG_DIR) {
  rmSync(logDir, { recursive: true, force: true })
}
if (sum('tests') === 0) {
  console.error('run-tests: the runner executed no test')
  process.exit(1)
}
console.log(`${sum('passed')} passed, ${sum('failed')} failed`)
process.exit(failedPass ? 1 : 0)
