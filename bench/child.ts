// Benchmark servers run in a child process, so the load generator never shares their event loop. This
// starts one, waits for its ready message, asks it for its CPU time and stops it.
import { type ChildProcess, fork, spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { type CpuRequestMessage, isCpuMessage } from './protocol.js'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))

export interface ChildOptions {
  /** Extra environment of the child (on top of this process's). */
  env?: Record<string, string>
  /** A directory: run the child with `--cpu-prof` there. */
  cpuProfDir?: string
  /** How long the child may take to say it is ready, ms. */
  startTimeoutMs?: number
}

/** Forks `bench/<file>` through tsx and resolves with its first message that `isReady` accepts. */
export async function startChild<T>(
  file: string,
  isReady: (message: unknown) => message is T,
  options: ChildOptions = {},
): Promise<{ child: ChildProcess; ready: T }> {
  const execArgv = ['--import', 'tsx']
  if (options.cpuProfDir) {
    mkdirSync(options.cpuProfDir, { recursive: true })
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`)
  }
  const child = fork(join(ROOT, 'bench', file), [], {
    cwd: ROOT,
    execArgv,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  })
  const timeoutMs = options.startTimeoutMs ?? 30_000
  const ready = await new Promise<T>((resolveReady, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the bench server (${file}) did not start within ${timeoutMs / 1000} s`)),
      timeoutMs,
    )
    child.on('message', (message) => {
      if (!isReady(message)) return
      clearTimeout(timer)
      resolveReady(message)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(
        new Error(`the bench server (${file}) exited before it was ready (code ${code}, signal ${signal})`),
      )
    })
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
  return { child, ready }
}

/** Asks the child to stop (closing its servers), SIGKILL after 10 s. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((done) => child.once('exit', () => done()))
  if (child.connected) child.send({ type: 'stop' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

let cpuRequests = 0

/** The child process's CPU time so far (user + system), microseconds, asked over IPC. */
export function childCpuUs(child: ChildProcess): Promise<number> {
  const id = ++cpuRequests
  return new Promise((resolveCpu, reject) => {
    const timer = setTimeout(() => reject(new Error('the bench server did not report its CPU time')), 10_000)
    const onMessage = (message: unknown) => {
      if (!isCpuMessage(message) || message.id !== id) return
      clearTimeout(timer)
      child.off('message', onMessage)
      resolveCpu(message.userUs + message.systemUs)
    }
    child.on('message', onMessage)
    const request: CpuRequestMessage = { type: 'cpu?', id }
    child.send(request)
  })
}

/** How the runner and a bench server were spread over the CPUs. */
export interface Pinning {
  /** CPU list of the server process (all its threads), e.g. `1`. */
  server: string
  /** CPU list of the runner (the load generator), e.g. `0`. */
  runner: string
}

function taskset(args: string[]): boolean {
  return spawnSync('taskset', args, { stdio: 'ignore' }).status === 0
}

/**
 * Pins the server child (every thread) to the last CPU and this runner to the others, so the load
 * generator and the server never take turns on one core and the scheduler does not move them around:
 * the figures then vary far less from run to run. Needs `taskset` (util-linux) and two CPUs; returns
 * undefined (nothing pinned) otherwise or with `BENCH_PIN=0`. `release()` gives this runner back all CPUs.
 */
export function pinServer(child: ChildProcess): (Pinning & { release(): void }) | undefined {
  const n = availableParallelism()
  if (process.env.BENCH_PIN === '0' || n < 2 || child.pid === undefined) return undefined
  const server = String(n - 1)
  const runner = n === 2 ? '0' : `0-${n - 2}`
  const all = `0-${n - 1}`
  if (!taskset(['-a', '-p', '-c', server, String(child.pid)])) return undefined
  if (!taskset(['-a', '-p', '-c', runner, String(process.pid)])) {
    taskset(['-a', '-p', '-c', all, String(child.pid)])
    return undefined
  }
  return { server, runner, release: () => void taskset(['-a', '-p', '-c', all, String(process.pid)]) }
}
