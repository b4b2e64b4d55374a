// The revocation benchmark of `npm run bench` (BENCH_ONLY=revocation): how long after a key is revoked its
// live stream is closed (docs/revocation.md). A real Earmark (createEarmark: real SQLite file) listens on
// loopback in this process; BENCH_REVOCATION_STREAMS (100) `/v1/speak` sockets are opened, each with its own
// key, and stay open together; then the keys are revoked one at a time and the time from the revocation to
// the stream's close frame is recorded. Two paths, each over its own set of streams:
// - `api`: `DELETE /v1/projects/:id/keys/:key_id` (the bus closes the stream), timed from the request's start;
// - `other process`: a second SQLite connection on the same file deletes the key, as `earmark keys delete`
//   does (the server sees it by polling the credentials version), timed from the commit's start.
// Target: p99 under 1000 ms on both paths. Speak sockets are used because they hold no speech-engine slot, so
// the figure is the revocation path's, not the engine's.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { loadConfig } from '../src/config/index.js'
import { createEarmark } from '../src/main.js'
import { createSqliteStore } from '../src/store/sqlite/sqlite-store.js'
import { ROOT } from './child.js'
import { envNumber, log, machineInfo, table } from './report.js'
import { median, percentile } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-revocation.json')
const TARGET_P99_MS = 1000

export interface RevocationBenchResult {
  allMet: boolean
}

interface Open {
  ws: WebSocket
  closed: Promise<number>
  keyId: string
}

export async function runRevocationBenchmark(): Promise<RevocationBenchResult> {
  const streams = Math.round(envNumber('BENCH_REVOCATION_STREAMS', 100, 1))
  const dir = mkdtempSync(join(tmpdir(), 'earmark-bench-revocation-'))
  const ownerKey = `emk_bench_revocation_${Math.random().toString(16).slice(2)}`
  const config = loadConfig({
    EARMARK_DATA_DIR: dir,
    EARMARK_BOOTSTRAP_KEY: ownerKey,
    EARMARK_LOG_LEVEL: 'silent',
    EARMARK_CAPACITY: '1',
  })
  const earmark = await createEarmark(config)
  const other = createSqliteStore({ path: config.sqlitePath })
  try {
    await earmark.app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = earmark.app.server.address() as AddressInfo
    const url = `http://127.0.0.1:${port}`
    const projectId = earmark.bootstrap?.project.id ?? ''
    const headers = { authorization: `Token ${ownerKey}`, 'content-type': 'application/json' }

    const openStreams = async (): Promise<Open[]> => {
      const out: Open[] = []
      for (let i = 0; i < streams; i++) {
        const res = await fetch(`${url}/v1/projects/${projectId}/keys`, {
          method: 'POST',
          headers,
          body: JSON.stringify({ comment: `bench ${i}`, scopes: ['usage:write'] }),
        })
        const { key, api_key_id: keyId } = (await res.json()) as { key: string; api_key_id: string }
        const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/speak`, ['token', key])
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => resolve())
          ws.once('error', reject)
        })
        const closed = new Promise<number>((resolve) => ws.once('close', () => resolve(performance.now())))
        out.push({ ws, closed, keyId })
      }
      return out
    }

    const measure = async (revoke: (keyId: string) => Promise<unknown>): Promise<number[]> => {
      const open = await openStreams()
      const times: number[] = []
      for (const s of open) {
        // A random pause, so a revocation does not always land just after the guard's last poll (the
        // previous close follows a poll, and the next revocation would follow the close at once).
        await new Promise((r) => setTimeout(r, Math.random() * 300))
        const start = performance.now()
        await revoke(s.keyId)
        times.push((await s.closed) - start)
      }
      return times
    }

    log(`revocation: ${streams} speak streams, API deletes`)
    const api = await measure((keyId) =>
      fetch(`${url}/v1/projects/${projectId}/keys/${keyId}`, { method: 'DELETE', headers }).then((r) =>
        r.arrayBuffer(),
      ),
    )
    log(`revocation: ${streams} speak streams, deletes by another connection`)
    const otherProcess = await measure((keyId) => other.deleteKey(projectId, keyId, Date.now()))

    const summary = (times: number[]) => ({
      p50: Math.round(median(times) * 10) / 10,
      p99: Math.round(percentile(times, 99) * 10) / 10,
      max: Math.round(Math.max(...times) * 10) / 10,
    })
    const rows = { api: summary(api), otherProcess: summary(otherProcess) }
    const allMet = rows.api.p99 < TARGET_P99_MS && rows.otherProcess.p99 < TARGET_P99_MS
    process.stdout.write(
      `\nRevocation → close of a live stream, ${streams} streams per path (target p99 < ${TARGET_P99_MS} ms)\n` +
        table([
          ['path', 'p50 ms', 'p99 ms', 'max ms'],
          ['API delete (bus)', String(rows.api.p50), String(rows.api.p99), String(rows.api.max)],
          [
            'other process (poll)',
            String(rows.otherProcess.p50),
            String(rows.otherProcess.p99),
            String(rows.otherProcess.max),
          ],
        ]) +
        '\n',
    )
    mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
    writeFileSync(
      OUTPUT,
      `${JSON.stringify({ machine: machineInfo(), streams, ...rows, targetP99Ms: TARGET_P99_MS, allMet }, null, 2)}\n`,
    )
    return { allMet }
  } finally {
    await other.close()
    await earmark.close()
    rmSync(dir, { recursive: true, force: true })
  }
}
