import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { NO_LIMITS_ENV } from '../../src/limits/index.js'
import { appendTestLog, recordSecrets, TEST_LOG_DIR, testLogPath } from './test-logs.js'

const ROOT = new URL('../..', import.meta.url).pathname

export interface ServerProcess {
  /** e.g. `http://127.0.0.1:41234` */
  url: string
  dataDir: string
  child: ChildProcess
  /** Every stdout and stderr line so far (for asserting that no secret was logged). */
  output: string[]
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>
}

export interface StartOptions {
  /** Reuse a data directory (restarts); default: a new temporary one, removed by `cleanup`. */
  dataDir?: string
  /** The owner key's secret on first start. */
  bootstrapKey?: string
  env?: NodeJS.ProcessEnv
  timeoutMs?: number
}

export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'earmark-test-'))
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
}

/** Starts a real `earmark serve` process on a free loopback port and waits until it listens. */
export async function startServerProcess(options: StartOptions = {}): Promise<ServerProcess> {
  const dataDir = options.dataDir ?? tempDataDir()
  // Collected for the log-scan test (test/helpers/test-logs.ts): debug unless the test says otherwise.
  const logPath = testLogPath('child')
  recordSecrets(options.bootstrapKey)
  const child = spawn(process.execPath, [join(ROOT, 'bin/earmark.js'), 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      EARMARK_DATA_DIR: dataDir,
      // Suites here fill the slots with one key; test/ws/idle-capacity.test.ts covers the per-key caps.
      EARMARK_MAX_STREAMS_PER_CREDENTIAL: '0',
      EARMARK_MAX_STREAMS_PER_KEY: '0',
      EARMARK_MAX_STREAMS_PER_END_USER: '0',
      // Rate and failed-authentication limits too; test/limits/ turns them on (docs/limits.md).
      ...NO_LIMITS_ENV,
      ...(TEST_LOG_DIR ? { EARMARK_LOG_LEVEL: 'debug' } : {}),
      ...(options.bootstrapKey ? { EARMARK_BOOTSTRAP_KEY: options.bootstrapKey } : {}),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const output: string[] = []
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // Never leave a half-started server behind: it would keep the test process alive.
      child.kill('SIGKILL')
      reject(new Error(`server did not start:\n${output.join('\n')}`))
    }, options.timeoutMs ?? 60_000)
    const onLine = (line: string) => {
      output.push(line)
      // The owner key printed once at first start is not a log line; the scan checks no log holds it.
      const shown = /^Owner API key \(shown once, store it now\): (\S+)/.exec(line)
      if (shown) recordSecrets(shown[1])
      if (!line.startsWith('{')) return
      appendTestLog(logPath, line)
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string }
        if (entry.msg === 'listening' && entry.url) {
          clearTimeout(timer)
          resolve(entry.url)
        }
      } catch {
        // not a log line
      }
    }
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', onLine)
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on('line', (l) => {
      output.push(l)
      appendTestLog(logPath, l)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code}:\n${output.join('\n')}`))
    })
  })
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(sig)
    await exited
  }
  return { url, dataDir, child, output, stop: () => signal('SIGTERM'), kill: () => signal('SIGKILL') }
}
