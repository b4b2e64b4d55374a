// Runs every test/**/*.test.ts through node's own runner with tsx, as an explicit file list (on Node 20,
// `node --test test/` finds no TypeScript files and still exits 0). Fails when no test ran.
// TEST_FILTER=substring narrows the files.
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const filter = process.env.TEST_FILTER ?? ''
const files = readdirSync(join(root, 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.ts') && f.includes(filter))
  .sort()
  .map((f) => join('test', f))

if (files.length === 0) {
  console.error('run-tests: no test files found')
  process.exit(1)
}

const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', ...files], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
})
let tail = ''
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk)
  tail = (tail + chunk.toString()).slice(-4096)
})
child.on('close', (code) => {
  const count = (name) => Number(new RegExp(`^# ${name} (\\d+)`, 'm').exec(tail)?.[1] ?? 0)
  const tests = count('tests')
  const passed = count('pass')
  const failed = count('fail')
  if (tests === 0) {
    console.error('run-tests: the runner executed no test')
    process.exit(1)
  }
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(code ?? 1)
})
