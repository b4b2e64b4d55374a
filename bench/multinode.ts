// The multi-node benchmark of `npm run bench` (issue 10; docs/benchmarks.md, "Several nodes"). Each Earmark node
// is a child process of its own (bench/multinode-server.ts), as `earmark serve` is in production; nginx is the
// Debian package run with a private prefix and the repository's deploy/nginx/earmark.conf; PostgreSQL and Redis
// are the machine's (a database created and dropped by this run, a Redis key prefix of its own). Three parts:
// - `backends`: Token, Bearer and grant throughput on one PostgreSQL + Redis node against one SQLite node,
//   interleaved rounds, ratio of the medians; targets >= 0.8x (cached verification) and >= 0.5x (grants);
// - `nginx`: the same requests through nginx to two PostgreSQL + Redis nodes against one of them direct;
// - `revocation`: two nodes on the same PostgreSQL + Redis; a key's live stream is open on B and B has just
//   admitted the key; the key is deleted through A; timed: B's close frame (target p99 < 1 s) and B's first
//   401 for the key after A's 200 (target p99 < 100 ms, the staleness bound of issue 10).
//
// Env: BENCH_MULTINODE_SECONDS (3), BENCH_MULTINODE_ROUNDS (3), BENCH_WARMUP_SECONDS (1), BENCH_CONNECTIONS
// (10), BENCH_MULTINODE_SAMPLES (50), BENCH_PIN=0, EARMARK_TEST_REDIS_URL (redis://127.0.0.1:6379), PGHOST,
// PGPORT, PGUSER (test/helpers/postgres.ts). Which parts run is bench/run.ts's business (BENCH_ONLY).
import { type ChildProcess, spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import { generateKeySecret } from '../src/auth/index.js'
import { closeRedisClient, createRedisClient } from '../src/store/redis/index.js'
import { type Nginx, nginxBinary, startNginx } from '../test/helpers/nginx.js'
import { createTestDatabase, dropTestDatabases } from '../test/helpers/postgres.js'
import { checkTarget, mintGrant } from './auth.js'
import { childCpuUs, type Pinning, pinServer, ROOT, startChild, stopChild } from './child.js'
import { runLoad, type Sample, type Target } from './load.js'
import { isNodeReadyMessage, type NodeReadyMessage } from './protocol.js'
import { envNumber, log, machineInfo, table } from './report.js'
import { median, percentile } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-multinode.json')
const REDIS_URL = process.env.EARMARK_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
/** Issue 10's bounds: revocations reach live streams within 1 s, a changed credential is refused within 100 ms. */
const CLOSE_TARGET_P99_MS = 1000
const REFUSAL_TARGET_P99_MS = 100

export const MULTINODE_PARTS = ['backends', 'nginx', 'revocation'] as const
export type MultinodePartId = (typeof MULTINODE_PARTS)[number]

function readSettings() {
  return {
    seconds: envNumber('BENCH_MULTINODE_SECONDS', 3, 1),
    rounds: Math.round(envNumber('BENCH_MULTINODE_ROUNDS', 3, 1)),
    warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 1, 0),
    connections: Math.round(envNumber('BENCH_CONNECTIONS', 10, 1)),
    samples: Math.round(envNumber('BENCH_MULTINODE_SAMPLES', 50, 1)),
  }
}

type Settings = ReturnType<typeof readSettings>

const rps = (n: number) => n.toFixed(0)
const ms = (n: number) => n.toFixed(2)
const us = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-')
const round1 = (n: number) => Math.round(n * 10) / 10

interface Node extends NodeReadyMessage {
  child: ChildProcess
}

async function startNode(env: Record<string, string>, cpuProfDir: string | undefined): Promise<Node> {
  const { child, ready } = await startChild('multinode-server.ts', isNodeReadyMessage, {
    env: { BENCH_NODE_ENV: JSON.stringify(env) },
    startTimeoutMs: 60_000,
    ...(cpuProfDir ? { cpuProfDir } : {}),
  })
  return { ...ready, child }
}

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const clockTicks = (() => {
  let ticks: number | undefined
  return () => {
    ticks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
    return ticks
  }
})()

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces), or undefined when it is gone. */
function procStat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return text.slice(text.lastIndexOf(')') + 2).split(' ')
  } catch {
    return undefined
  }
}

/** CPU time (user + system, microseconds) of nginx's master and workers; NaN where there is no /proc. */
function nginxCpuUs(nginx: Nginx): number {
  const master = nginx.child.pid
  if (master === undefined) return Number.NaN
  let pids: number[]
  try {
    pids = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      // Field 4 of stat is the parent pid; after the name, it is the second field.
      .filter((pid) => pid === master || procStat(pid)?.[1] === String(master))
  } catch {
    return Number.NaN
  }
  let ticks = 0
  for (const pid of pids) {
    const fields = procStat(pid)
    // utime and stime are fields 14 and 15 of stat: the 12th and 13th after the name.
    if (fields) ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks / clockTicks()) * 1e6
}

/** One side of a comparison: a request shape, what a sound answer looks like, and whose CPU time it costs. */
interface Side {
  label: string
  target: Target
  expect: (body: Record<string, unknown>) => boolean
  /** The Earmark nodes that serve it. */
  nodes: Node[]
  nginx?: Nginx
}

interface Comparison {
  part: 'backends' | 'nginx'
  id: 'token' | 'bearer' | 'grant'
  label: string
  baseline: Side
  scenario: Side
  /** The scenario's median req/s must be at least this fraction of the baseline's; null: no target. */
  minRatio: number | null
}

interface Measured extends Sample {
  /** CPU time of the Earmark node processes per request (all the side's nodes together), microseconds. */
  nodeCpuUsPerRequest: number
  /** The same for nginx (master and workers); NaN without nginx. */
  proxyCpuUsPerRequest: number
}

async function sideCpuUs(side: Side): Promise<{ nodes: number; proxy: number }> {
  const each = await Promise.all(side.nodes.map((n) => childCpuUs(n.child)))
  return { nodes: each.reduce((a, b) => a + b, 0), proxy: side.nginx ? nginxCpuUs(side.nginx) : Number.NaN }
}

function summarize(samples: Measured[]) {
  return {
    rps: median(samples.map((s) => s.rps)),
    p50Ms: median(samples.map((s) => s.p50Ms)),
    p99Ms: median(samples.map((s) => s.p99Ms)),
    nodeCpuUsPerRequest: median(samples.map((s) => s.nodeCpuUsPerRequest)),
    proxyCpuUsPerRequest: median(samples.map((s) => s.proxyCpuUsPerRequest)),
    rounds: samples,
  }
}

/** Rounds of baseline and scenario, each after its warm-up; medians; the ratio of the median req/s. */
async function compare(c: Comparison, settings: Settings) {
  const load = { seconds: settings.seconds, connections: settings.connections, pipelining: 1 }
  const base: Measured[] = []
  const scen: Measured[] = []
  for (let round = 1; round <= settings.rounds; round++) {
    const pair = [
      [c.baseline, base],
      [c.scenario, scen],
    ] as const
    // Odd rounds baseline first, even rounds scenario first: neither side always follows the other's load.
    for (const [side, into] of round % 2 === 1 ? pair : [...pair].reverse()) {
      if (settings.warmupSeconds > 0)
        await runLoad(`${side.label} (warm-up)`, side.target, { ...load, seconds: settings.warmupSeconds })
      const before = await sideCpuUs(side)
      const run = await runLoad(side.label, side.target, load)
      const after = await sideCpuUs(side)
      const sample: Measured = {
        ...run,
        nodeCpuUsPerRequest: (after.nodes - before.nodes) / run.total,
        proxyCpuUsPerRequest: (after.proxy - before.proxy) / run.total,
      }
      into.push(sample)
      log(
        `multinode:${c.part} ${c.id} round ${round}/${settings.rounds} ${side.label}: ${rps(sample.rps)} req/s, ` +
          `p50 ${ms(sample.p50Ms)} ms, p99 ${ms(sample.p99Ms)} ms, nodes ${us(sample.nodeCpuUsPerRequest)} us ` +
          `CPU/req${side.nginx ? `, nginx ${us(sample.proxyCpuUsPerRequest)} us CPU/req` : ''}`,
      )
    }
  }
  const figures = { baseline: summarize(base), scenario: summarize(scen) }
  const ratio = figures.scenario.rps / figures.baseline.rps
  const roundRatios = scen.map((s, i) => s.rps / (base[i]?.rps ?? Number.NaN))
  return {
    ...c,
    figures,
    ratio,
    roundRatios,
    met: c.minRatio === null ? null : ratio >= c.minRatio,
  }
}

type Compared = Awaited<ReturnType<typeof compare>>

/** The three requests of the auth benchmark against one entry point (a node, or nginx). */
function requests(url: string, ownerKey: string, jwt: string) {
  const json = { 'content-type': 'application/json' }
  return {
    token: {
      target: { url: `${url}/v1/auth/token`, method: 'GET', headers: { authorization: `Token ${ownerKey}` } },
      expect: (b: Record<string, unknown>) => b.type === 'api_key',
    },
    bearer: {
      target: { url: `${url}/v1/auth/token`, method: 'GET', headers: { authorization: `Bearer ${jwt}` } },
      expect: (b: Record<string, unknown>) => b.type === 'access_token',
    },
    grant: {
      target: {
        url: `${url}/v1/auth/grant`,
        method: 'POST',
        headers: { ...json, authorization: `Token ${ownerKey}` },
        body: JSON.stringify({ ttl_seconds: 60 }),
      },
      expect: (b: Record<string, unknown>) => typeof b.access_token === 'string' && b.expires_in === 60,
    },
  } satisfies Record<string, { target: Target; expect: (b: Record<string, unknown>) => boolean }>
}

const LABELS = {
  token: 'GET /v1/auth/token, Token key',
  bearer: 'GET /v1/auth/token, Bearer jwt',
  grant: 'POST /v1/auth/grant, Token key',
} as const
const BACKEND_TARGETS = { token: 0.8, bearer: 0.8, grant: 0.5 } as const

async function comparisons(
  part: 'backends' | 'nginx',
  ownerKey: string,
  base: { label: string; url: string; nodes: Node[] },
  scen: { label: string; url: string; nodes: Node[]; nginx?: Nginx },
): Promise<Comparison[]> {
  // Each side verifies a token minted where its requests go (through nginx: by either node).
  const baseReq = requests(
    base.url,
    ownerKey,
    await mintGrant({ earmarkUrl: base.url, apiKey: ownerKey }, 3600),
  )
  const scenReq = requests(
    scen.url,
    ownerKey,
    await mintGrant({ earmarkUrl: scen.url, apiKey: ownerKey }, 3600),
  )
  const out: Comparison[] = []
  for (const id of ['token', 'bearer', 'grant'] as const) {
    const c: Comparison = {
      part,
      id,
      label: LABELS[id],
      baseline: { label: base.label, ...baseReq[id], nodes: base.nodes },
      scenario: {
        label: scen.label,
        ...scenReq[id],
        nodes: scen.nodes,
        ...(scen.nginx ? { nginx: scen.nginx } : {}),
      },
      minRatio: part === 'backends' ? BACKEND_TARGETS[id] : null,
    }
    await checkTarget(`${c.baseline.label}: ${c.label}`, c.baseline.target, c.baseline.expect)
    await checkTarget(`${c.scenario.label}: ${c.label}`, c.scenario.target, c.scenario.expect)
    out.push(c)
  }
  return out
}

function comparisonTable(title: string, results: Compared[], withProxy: boolean): string {
  const head = [
    'request',
    'side',
    'req/s',
    'p50 ms',
    'p99 ms',
    'node cpu us',
    ...(withProxy ? ['nginx cpu us'] : []),
    'ratio',
    'rounds',
    'target',
  ]
  const rows = [head]
  for (const r of results) {
    const row = (side: Side, s: ReturnType<typeof summarize>, last: string[]) => [
      r.label,
      side.label,
      rps(s.rps),
      ms(s.p50Ms),
      ms(s.p99Ms),
      us(s.nodeCpuUsPerRequest),
      ...(withProxy ? [us(s.proxyCpuUsPerRequest)] : []),
      ...last,
    ]
    rows.push(row(r.baseline, r.figures.baseline, ['', '', '']))
    rows.push(
      row(r.scenario, r.figures.scenario, [
        `${r.ratio.toFixed(2)}x`,
        `${Math.min(...r.roundRatios).toFixed(2)}-${Math.max(...r.roundRatios).toFixed(2)}`,
        r.minRatio === null ? '-' : `>= ${r.minRatio.toFixed(2)}x ${r.met ? 'MET' : 'NOT MET'}`,
      ]),
    )
  }
  return `\n${title}\n${table(rows)}\n`
}

interface RevocationSample {
  /** From the DELETE's start on A to B's close frame. */
  closeMs: number
  /** From A's 200 on the DELETE to B's close frame (negative: B closed the stream before A answered). */
  closeAfterAckMs: number
  /** From A's 200 to B's first 401 for the key (the end of that response). */
  refusedMs: number
  /**
   * From A's 200 to the sending of that first refused request: B admitted nothing sent after it, so this bounds
   * how long B stayed stale (about 0 when B refused the very first request).
   */
  refusedSentMs: number
  /** One `GET /v1/auth/token` on B before the delete (a cache hit), for scale: a 401 cannot come sooner. */
  requestMs: number
  /** 200s B still gave the key after A's 200. */
  staleAdmissions: number
  closeCode: number
  closeReason: string
}

/** One revocation A → B: a new key, its stream on B, B admits it, A deletes it; B closes and refuses. */
async function revokeOnce(
  a: Node,
  b: Node,
  ownerKey: string,
  projectId: string,
  i: number,
): Promise<RevocationSample> {
  const owner = { authorization: `Token ${ownerKey}`, 'content-type': 'application/json' }
  const created = await fetch(`${a.earmarkUrl}/v1/projects/${projectId}/keys`, {
    method: 'POST',
    headers: owner,
    body: JSON.stringify({ comment: `bench revocation ${i}`, scopes: ['usage:write'] }),
  })
  const { key, api_key_id: keyId } = (await created.json()) as { key: string; api_key_id: string }
  if (created.status !== 200 || typeof key !== 'string')
    throw new Error(`creating a key on A: ${created.status}`)
  // A speak socket holds no speech-engine slot: the figure is the revocation path's (as bench/revocation.ts).
  const ws = new WebSocket(`${b.earmarkUrl.replace(/^http/, 'ws')}/v1/speak`, ['token', key])
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const closed = new Promise<{ at: number; code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => resolve({ at: performance.now(), code, reason: reason.toString() })),
  )
  const onB = () =>
    fetch(`${b.earmarkUrl}/v1/auth/token`, { headers: { authorization: `Token ${key}` } }).then(async (r) => {
      await r.arrayBuffer()
      return r.status
    })
  const asked = performance.now()
  const admitted = await onB()
  const requestMs = performance.now() - asked
  if (admitted !== 200) throw new Error(`node B refused a key created on A with ${admitted}`)
  // A random pause, so the delete lands anywhere in B's poll and heartbeat cycles.
  await sleep(Math.random() * 250)
  const start = performance.now()
  const deleted = await fetch(`${a.earmarkUrl}/v1/projects/${projectId}/keys/${keyId}`, {
    method: 'DELETE',
    headers: owner,
  })
  await deleted.arrayBuffer()
  const acked = performance.now()
  if (deleted.status !== 200) throw new Error(`DELETE on A answered ${deleted.status}`)
  let staleAdmissions = 0
  let refusedAt = Number.NaN
  let refusedSentAt = Number.NaN
  while (performance.now() - acked < 5000) {
    const sentAt = performance.now()
    const status = await onB()
    if (status === 401) {
      refusedAt = performance.now()
      refusedSentAt = sentAt
      break
    }
    if (status !== 200) throw new Error(`node B answered ${status} for a key being deleted`)
    staleAdmissions++
  }
  if (Number.isNaN(refusedAt))
    throw new Error('node B still admitted the deleted key 5 s after A acknowledged')
  const close = await Promise.race([closed, sleep(5000).then(() => undefined)])
  if (!close) {
    ws.terminate()
    throw new Error("node B's stream was still open 5 s after the key was deleted on A")
  }
  return {
    closeMs: close.at - start,
    closeAfterAckMs: close.at - acked,
    refusedMs: refusedAt - acked,
    refusedSentMs: refusedSentAt - acked,
    requestMs,
    staleAdmissions,
    closeCode: close.code,
    closeReason: close.reason,
  }
}

/** Gives a pinned child process (every thread) all the machine's CPUs again. */
function unpin(child: ChildProcess): void {
  if (child.pid === undefined) return
  spawnSync('taskset', ['-a', '-p', '-c', `0-${cpus().length - 1}`, String(child.pid)], { stdio: 'ignore' })
}

async function projectIdOf(url: string, ownerKey: string): Promise<string> {
  const res = await fetch(`${url}/v1/projects`, { headers: { authorization: `Token ${ownerKey}` } })
  const body = (await res.json()) as { projects?: { project_id: string }[] }
  const id = body.projects?.[0]?.project_id
  if (res.status !== 200 || !id) throw new Error(`GET /v1/projects answered ${res.status}`)
  return id
}

async function dropRedisPrefix(prefix: string): Promise<void> {
  const redis = createRedisClient(REDIS_URL)
  try {
    await new Promise((resolve) => redis.once('ready', resolve))
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      if (keys.length > 0) await redis.del(...keys)
      cursor = next
    } while (cursor !== '0')
  } finally {
    await closeRedisClient(redis)
  }
}

/**
 * Runs the multi-node parts `only` (in their table order), prints their tables and writes
 * artifacts/bench-multinode.json. Resolves with whether every target was met.
 */
export async function runMultinodeBenchmark(
  only: readonly MultinodePartId[],
  options: { cpuProfDir?: string } = {},
): Promise<{ allMet: boolean }> {
  const settings = readSettings()
  const started = Date.now()
  const machine = machineInfo()
  const ownerKey = generateKeySecret()
  const prefix = `earmark-bench:${randomUUID()}:`
  const children: Node[] = []
  let nginx: Nginx | undefined
  let pinned: (Pinning & { release(): void }) | undefined
  const report: Record<string, unknown> = {
    benchmark: 'multinode',
    date: new Date().toISOString(),
    machine,
    settings,
  }
  let allMet = true
  const out = process.stdout
  try {
    const binary = only.includes('nginx') ? nginxBinary() : undefined
    const shared = {
      EARMARK_BOOTSTRAP_KEY: ownerKey,
      EARMARK_DATABASE_URL: createTestDatabase(),
      EARMARK_REDIS_URL: REDIS_URL,
      EARMARK_REDIS_PREFIX: prefix,
      EARMARK_TRUST_PROXY: '127.0.0.1',
    }
    log(`multinode: starting the nodes (PostgreSQL database and Redis prefix of their own)`)
    const [sqlite, a] = await Promise.all([
      only.includes('backends')
        ? startNode({ EARMARK_BOOTSTRAP_KEY: ownerKey }, options.cpuProfDir)
        : undefined,
      startNode(shared, options.cpuProfDir),
    ])
    for (const n of [sqlite, a]) if (n) children.push(n)
    if (!a) throw new Error('node A did not start')
    // B opens the database A bootstrapped.
    const b = only.some((p) => p !== 'backends') ? await startNode(shared, options.cpuProfDir) : undefined
    if (b) children.push(b)
    // Every node on the last CPU, the load generator on the others (bench/child.ts): only one side is under
    // load at a time, and the server side gets the same CPU whatever it is made of.
    if (only.includes('backends') || only.includes('nginx'))
      for (const n of children) pinned = pinServer(n.child) ?? pinned
    log(pinned ? `nodes pinned to CPU ${pinned.server}, autocannon to CPU ${pinned.runner}` : 'not pinned')
    const pinning = pinned ? { server: pinned.server, runner: pinned.runner } : null
    out.write(
      '\nEarmark multi-node benchmark\n' +
        `machine: ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, ${machine.os}\n` +
        `method: ${settings.rounds} rounds x ${settings.seconds} s (+${settings.warmupSeconds} s warm-up) per side, ` +
        `interleaved (each side first in every other round), ${settings.connections} connections; one node per child process, ` +
        (pinned
          ? `throughput parts: every node and nginx pinned to CPU ${pinned.server}, autocannon to CPU ${pinned.runner}; `
          : 'not pinned; ') +
        "PostgreSQL and Redis are the machine's services (not pinned)\n" +
        'figures: medians over the rounds; ratio = median req/s of the scenario / median req/s of its baseline\n',
    )

    if (only.includes('backends') && sqlite) {
      const results = []
      for (const c of await comparisons(
        'backends',
        ownerKey,
        { label: 'SQLite node', url: sqlite.earmarkUrl, nodes: [sqlite] },
        { label: 'PostgreSQL+Redis node', url: a.earmarkUrl, nodes: [a] },
      )) {
        results.push(await compare(c, settings))
      }
      out.write(comparisonTable('Backends: one PostgreSQL + Redis node / one SQLite node', results, false))
      allMet = !results.some((r) => r.met === false) && allMet
      report.backends = { pinning, results: results.map(comparedJson) }
    }

    if (only.includes('nginx') && b && binary) {
      const cpus = availableParallelism()
      nginx = await startNginx(
        binary,
        [Number(new URL(a.earmarkUrl).port), Number(new URL(b.earmarkUrl).port)],
        {
          accessLog: false,
          // nginx's worker on the nodes' CPU (a bitmask, CPU 0 rightmost).
          ...(pinned ? { workerCpuAffinity: `1${'0'.repeat(cpus - 1)}` } : {}),
        },
      )
      const results = []
      for (const c of await comparisons(
        'nginx',
        ownerKey,
        { label: 'node A direct', url: a.earmarkUrl, nodes: [a] },
        { label: 'nginx, nodes A+B', url: nginx.url, nodes: [a, b], nginx },
      )) {
        results.push(await compare(c, settings))
      }
      out.write(
        comparisonTable('nginx: two PostgreSQL + Redis nodes behind nginx / one node direct', results, true),
      )
      out.write(
        pinned
          ? `(nginx's worker and both nodes share CPU ${pinned.server}, as the one node direct has it alone: the ` +
              'ratio is what the proxy hop costs at equal server CPU, not what a second node adds; on more CPUs, ' +
              'give each node its own core to see that)\n'
          : '(not pinned: autocannon, nginx and the nodes share every CPU of the machine)\n',
      )
      report.nginx = { pinning, nginxWorkers: 1, accessLog: false, results: results.map(comparedJson) }
    }
    if (pinned) {
      // The revocation part is timed, not loaded: every process back on every CPU, as without the other parts.
      pinned.release()
      for (const n of children) unpin(n.child)
    }

    if (only.includes('revocation') && b) {
      const projectId = await projectIdOf(a.earmarkUrl, ownerKey)
      log(`multinode:revocation: ${settings.samples} keys deleted on A, each with a live stream on B`)
      const samples: RevocationSample[] = []
      for (let i = 0; i < settings.samples; i++) samples.push(await revokeOnce(a, b, ownerKey, projectId, i))
      const stats = (values: number[]) => ({
        p50: round1(median(values)),
        p99: round1(percentile(values, 99)),
        max: round1(Math.max(...values)),
      })
      const close = stats(samples.map((s) => s.closeMs))
      const closeAfterAck = stats(samples.map((s) => s.closeAfterAckMs))
      const refused = stats(samples.map((s) => s.refusedMs))
      const request = stats(samples.map((s) => s.requestMs))
      const staleWindow = stats(samples.map((s) => s.refusedSentMs))
      const stale = samples.reduce((n, s) => n + s.staleAdmissions, 0)
      const wrongClose = samples.filter((s) => s.closeCode !== 1008 || s.closeReason !== 'AUTH-0001').length
      const closeMet = close.p99 < CLOSE_TARGET_P99_MS && wrongClose === 0
      const refusedMet = refused.p99 < REFUSAL_TARGET_P99_MS
      allMet = closeMet && refusedMet && allMet
      const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET')
      out.write(
        `\nRevocation A -> B: ${settings.samples} keys, each deleted through node A's API while its live stream is ` +
          'open on node B (PostgreSQL + Redis)\n' +
          table([
            ['figure', 'p50 ms', 'p99 ms', 'max ms', 'target'],
            [
              "B's stream closed, from the DELETE sent to A",
              String(close.p50),
              String(close.p99),
              String(close.max),
              `p99 < ${CLOSE_TARGET_P99_MS} ms ${verdict(closeMet)}`,
            ],
            [
              "B's stream closed, from A's 200",
              String(closeAfterAck.p50),
              String(closeAfterAck.p99),
              String(closeAfterAck.max),
              '-',
            ],
            [
              "B's first 401 for the key, from A's 200",
              String(refused.p50),
              String(refused.p99),
              String(refused.max),
              `p99 < ${REFUSAL_TARGET_P99_MS} ms ${verdict(refusedMet)}`,
            ],
            [
              "that request sent, from A's 200 (B's stale window)",
              String(staleWindow.p50),
              String(staleWindow.p99),
              String(staleWindow.max),
              '-',
            ],
            [
              'one GET /v1/auth/token on B, cached (for scale)',
              String(request.p50),
              String(request.p99),
              String(request.max),
              '-',
            ],
          ]) +
          `\n(B admitted the key ${stale} times in all after A's 200; ${wrongClose} streams closed other than ` +
          "with 1008 AUTH-0001; B's 401 is timed at the end of the first request B refused, sent one after " +
          'another from the moment A answered)\n',
      )
      report.revocation = {
        samples: settings.samples,
        close_ms: close,
        close_after_ack_ms: closeAfterAck,
        refused_after_ack_ms: refused,
        request_on_b_ms: request,
        first_refused_sent_after_ack_ms: staleWindow,
        stale_admissions: stale,
        wrong_close: wrongClose,
        targets: { close_p99_ms: CLOSE_TARGET_P99_MS, refused_p99_ms: REFUSAL_TARGET_P99_MS },
        met: { close: closeMet, refused: refusedMet },
        rounds: samples,
      }
    }

    report.seconds_total = (Date.now() - started) / 1000
    mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
    writeFileSync(OUTPUT, `${JSON.stringify(report, null, 2)}\n`)
    out.write(`\nresults: ${OUTPUT} (${Number(report.seconds_total).toFixed(0)} s in all)\n`)
    return { allMet }
  } finally {
    pinned?.release()
    await nginx?.stop()
    await Promise.allSettled(children.map((n) => stopChild(n.child)))
    dropTestDatabases()
    await dropRedisPrefix(prefix)
  }
}

function comparedJson(r: Compared) {
  const side = (s: ReturnType<typeof summarize>) => ({
    rps: s.rps,
    p50_ms: s.p50Ms,
    p99_ms: s.p99Ms,
    node_cpu_us_per_request: s.nodeCpuUsPerRequest,
    proxy_cpu_us_per_request: Number.isFinite(s.proxyCpuUsPerRequest) ? s.proxyCpuUsPerRequest : null,
    rounds: s.rounds,
  })
  return {
    id: r.id,
    label: r.label,
    baseline: r.baseline.label,
    scenario: r.scenario.label,
    target_ratio: r.minRatio,
    ratio: r.ratio,
    round_ratios: r.roundRatios,
    met: r.met,
    baseline_median: side(r.figures.baseline),
    scenario_median: side(r.figures.scenario),
  }
}
