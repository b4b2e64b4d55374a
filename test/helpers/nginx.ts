import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { freePort } from './free-port.js'

// A private nginx (the Debian package, as a child process with its own prefix, never the system service)
// serving the repository's own deploy/nginx/earmark.conf with the nodes' ports: the deployment recipe of
// docs/deploy.md, for the two-node tests and the multi-node benchmark (bench/multinode.ts).

const ROOT = new URL('../..', import.meta.url).pathname
export const SITE_CONF = join(ROOT, 'deploy/nginx/earmark.conf')

/** The nginx binary, or an error saying how to install it. */
export function nginxBinary(): string {
  for (const path of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) {
    if (existsSync(path)) return path
  }
  try {
    return execFileSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).trim() || fail()
  } catch {
    return fail()
  }
  function fail(): never {
    throw new Error(
      'nginx is not installed: the deployment recipe runs through it. Install the Debian package ' +
        '(apt-get install -y nginx; scripts/setup.sh does it, from scripts/apt-packages.txt).',
    )
  }
}

/** `text` with `from` replaced by `to`, exactly once (the recipe's shape is what the callers rely on). */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from)
  if (at < 0 || text.indexOf(from, at + 1) >= 0)
    throw new Error(`${SITE_CONF} must hold ${from} exactly once`)
  return text.slice(0, at) + to + text.slice(at + from.length)
}

export interface Nginx {
  url: string
  child: ChildProcess
  dir: string
  stop(): Promise<void>
}

export interface NginxOptions {
  /** `worker_processes` (default 1). */
  workers?: number
  /** `worker_cpu_affinity` bitmasks, one per worker (e.g. `10`: CPU 1); default: not set. */
  workerCpuAffinity?: string
  /** Write an access log line per request (default true, as the recipe does in production). */
  accessLog?: boolean
}

/** nginx in the foreground with a prefix of its own, serving the recipe with the nodes' ports. */
export async function startNginx(
  binary: string,
  nodes: readonly [number, number],
  options: NginxOptions = {},
): Promise<Nginx> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'earmark-nginx-'))
  // Run as root, nginx's workers drop to `nobody`: they must reach the temporary paths inside.
  chmodSync(dir, 0o755)
  let site = readFileSync(SITE_CONF, 'utf8')
  site = replaceOnce(site, 'server 127.0.0.1:8081 ', `server 127.0.0.1:${nodes[0]} `)
  site = replaceOnce(site, 'server 127.0.0.1:8082 ', `server 127.0.0.1:${nodes[1]} `)
  site = replaceOnce(site, 'listen 127.0.0.1:8080;', `listen 127.0.0.1:${port};`)
  writeFileSync(join(dir, 'earmark.conf'), site)
  const conf = join(dir, 'nginx.conf')
  writeFileSync(
    conf,
    [
      `worker_processes ${options.workers ?? 1};`,
      ...(options.workerCpuAffinity ? [`worker_cpu_affinity ${options.workerCpuAffinity};`] : []),
      `pid ${join(dir, 'nginx.pid')};`,
      `error_log ${join(dir, 'error.log')} info;`,
      'events { worker_connections 256; }',
      'http {',
      options.accessLog === false ? '  access_log off;' : `  access_log ${join(dir, 'access.log')};`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${join(dir, t)};`),
      `  include ${join(dir, 'earmark.conf')};`,
      '}',
      '',
    ].join('\n'),
  )
  const child = spawn(
    binary,
    ['-p', `${dir}/`, '-c', conf, '-e', join(dir, 'error.log'), '-g', 'daemon off;'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString()
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const url = `http://127.0.0.1:${port}`
  const errorLog = () => {
    try {
      return readFileSync(join(dir, 'error.log'), 'utf8')
    } catch {
      return ''
    }
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
  }
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`nginx exited with ${child.exitCode}: ${stderr}\n${errorLog()}`)
    }
    const up = await fetch(`${url}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (up) break
    if (Date.now() > deadline) {
      await stop()
      throw new Error(`nginx did not answer on ${url}: ${stderr}\n${errorLog()}`)
    }
    await sleep(100)
  }
  return { url, child, dir, stop }
}
