import { execFile } from 'node:child_process'
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import pg from 'pg'
import { freePort } from './free-port.js'

const execFileAsync = promisify(execFile)

/**
 * A PostgreSQL cluster of a test's own: `initdb` into a temporary directory, the server on a free loopback
 * port with its unix socket in that directory, trust authentication. Restarting or crashing it disturbs no
 * other test (they use the machine's cluster on 5432, which must never be stopped). Root runs the server as
 * the `postgres` user, as PostgreSQL refuses to run as root.
 */
export interface PostgresCluster {
  port: number
  /** The cluster's directory (data, socket, log). */
  dir: string
  /** `postgres://postgres@127.0.0.1:PORT/<database>` */
  url(database: string): string
  createDatabase(name: string): Promise<string>
  /** `pg_ctl restart`, waiting until the server accepts connections; `immediate` is a crash and recovery. */
  restart(mode: 'fast' | 'immediate'): Promise<void>
  /** Ends every session to `database` (`pg_terminate_backend`) and returns how many there were. */
  terminateSessions(database: string): Promise<number>
  /** The server's log so far. */
  log(): string
  /** Stops the server (immediate) and removes the directory; safe to call twice. */
  destroy(): Promise<void>
}

/** The directory of the newest PostgreSQL binaries (Debian: /usr/lib/postgresql/<major>/bin). */
function binDir(): string {
  const root = '/usr/lib/postgresql'
  const majors = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a))
  if (!majors[0]) throw new Error(`no PostgreSQL under ${root}`)
  return join(root, majors[0], 'bin')
}

const asRoot = process.getuid?.() === 0

/** Runs a PostgreSQL tool, as `postgres` when this process is root; never through a shell. */
async function run(tool: string, args: string[]): Promise<void> {
  const path = join(binDir(), tool)
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, args]
  await execFileAsync(cmd, argv, { timeout: 60_000 })
}

export async function startPostgresCluster(): Promise<PostgresCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'earmark-pg-'))
  const data = join(dir, 'data')
  const logFile = join(dir, 'server.log')
  if (asRoot) {
    const { uid, gid } = postgresIds()
    chownSync(dir, uid, gid)
  }
  const port = await freePort()
  let running = false
  const pgCtl = (...args: string[]) => run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', ...args])
  const options = [
    `-p ${port}`,
    `-k ${dir}`,
    '-c listen_addresses=127.0.0.1',
    // Small: it shares the machine with the other suites.
    '-c shared_buffers=16MB',
    '-c max_connections=60',
  ].join(' ')
  const destroy = async () => {
    if (running) await pgCtl('stop', '-m', 'immediate').catch(() => {})
    running = false
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await run('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8'])
    await pgCtl('-o', options, 'start')
    running = true
  } catch (err) {
    await destroy()
    throw err
  }
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`
  const admin = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ connectionString: url('postgres') })
    await client.connect()
    try {
      return await fn(client)
    } finally {
      await client.end()
    }
  }
  return {
    port,
    dir,
    url,
    createDatabase: async (name) => {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`)
      await admin((c) => c.query(`CREATE DATABASE ${name}`))
      return url(name)
    },
    restart: async (mode) => {
      await pgCtl('-m', mode, '-o', options, 'restart')
    },
    terminateSessions: (database) =>
      admin(async (c) => {
        const { rows } = await c.query<{ ended: boolean }>(
          'SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
          [database],
        )
        return rows.filter((r) => r.ended).length
      }),
    log: () => {
      try {
        return readFileSync(logFile, 'utf8')
      } catch {
        return ''
      }
    },
    destroy,
  }
}

/** The `postgres` user's uid and gid, from /etc/passwd. */
function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'))
  const [, , uid, gid] = line?.split(':') ?? []
  if (uid === undefined || gid === undefined) throw new Error('no postgres user to run the server as')
  return { uid: Number(uid), gid: Number(gid) }
}
