// The auth benchmark of `npm run bench`: Earmark's auth hot path against a bare Fastify route measured in
// the same run, and the same routes with the rate limits on against them off (`-limits` scenarios,
// docs/limits.md). The servers run in a child process (bench/auth-server.ts); autocannon runs here. Each
// scenario is measured in rounds interleaved with its baseline (baseline, scenario, baseline, scenario, ...)
// so drift hits both alike, and the verdict uses the ratio of the medians.
//
// Env: BENCH_SECONDS (3), BENCH_ROUNDS (5), BENCH_WARMUP_SECONDS (1), BENCH_CONNECTIONS (10),
// BENCH_CPU_PROF (a directory: CPU-profile the server child), BENCH_STRICT=1 (exit 1 when a target is not met),
// BENCH_PIN=0 (do not pin the server and autocannon to separate CPUs).
// Which scenarios run is bench/run.ts's business (BENCH_ONLY).
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { childCpuUs, pinServer, ROOT, startChild, stopChild } from './child.js'
import { type LoadOptions, runLoad, type Sample, type Target } from './load.js'
import { isReadyMessage, type ReadyMessage } from './protocol.js'
import { envNumber, log, machineInfo, table } from './report.js'
import { median } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-auth.json')

/** Read when the auth benchmark runs, so a bad knob fails only the part that uses it. */
function readSettings() {
  return {
    seconds: envNumber('BENCH_SECONDS', 3, 1),
    rounds: Math.round(envNumber('BENCH_ROUNDS', 5, 1)),
    warmupSeconds: envNumber('BENCH_WARMUP_SECONDS', 1, 0),
    connections: Math.round(envNumber('BENCH_CONNECTIONS', 10, 1)),
    pipelining: 1,
  }
}

type Settings = ReturnType<typeof readSettings>

const rps = (n: number) => n.toFixed(0)
const ms = (n: number) => n.toFixed(2)
const us = (n: number) => n.toFixed(0)

export type AuthScenarioId =
  | 'token'
  | 'bearer'
  | 'grant'
  | 'health'
  | 'token-limits'
  | 'bearer-limits'
  | 'grant-limits'

export const AUTH_SCENARIOS: readonly AuthScenarioId[] = [
  'token',
  'bearer',
  'grant',
  'health',
  'token-limits',
  'bearer-limits',
  'grant-limits',
]

/**
 * Measured unless BENCH_ONLY says otherwise; `health` (no target) is a reference for Earmark without auth.
 * The `-limits` scenarios are the same routes on an Earmark with every rate limit on, against this one with
 * them off (docs/limits.md).
 */
export const DEFAULT_AUTH_SCENARIOS: readonly AuthScenarioId[] = [
  'token',
  'bearer',
  'grant',
  'token-limits',
  'bearer-limits',
  'grant-limits',
]

function isLimitsReadyMessage(value: unknown): value is ReadyMessage & LimitsReady {
  return isReadyMessage(value) && typeof (value as Partial<LimitsReady>).limited === 'object'
}

/** What auth-server.ts adds to its ready message: the second Earmark, with the limits on. */
export interface LimitsReady {
  limited: {
    earmarkUrl: string
    apiKey: string
    apiKeyId: string
    /** Its server limits (rates high enough never to refuse the load). */
    limits: { requestsPerMinute: number; projectRequestsPerMinute: number; grantsPerMinute: number }
  }
}

interface Scenario {
  id: AuthScenarioId
  label: string
  target: Target
  baselineLabel: string
  baseline: Target
  /** What a sound answer of the scenario's target, and of its baseline, looks like. */
  expect: (body: Record<string, unknown>) => boolean
  expectBaseline: (body: Record<string, unknown>) => boolean
  /** The scenario's median req/s must be at least this fraction of its baseline's; null: no target. */
  minRatio: number | null
}

/** A run's figures plus the server process's CPU time per request (user + system, both servers' process). */
interface Measured extends Sample {
  serverCpuUsPerRequest: number
}

interface Summary {
  rps: number
  p50Ms: number
  p99Ms: number
  serverCpuUsPerRequest: number
  rounds: Measured[]
}

function summarize(samples: Measured[]): Summary {
  return {
    rps: median(samples.map((s) => s.rps)),
    p50Ms: median(samples.map((s) => s.p50Ms)),
    p99Ms: median(samples.map((s) => s.p99Ms)),
    serverCpuUsPerRequest: median(samples.map((s) => s.serverCpuUsPerRequest)),
    rounds: samples,
  }
}

/** One real request per target before any load: right status, right kind of answer. */
export async function checkTarget(
  label: string,
  target: Target,
  expect: (body: Record<string, unknown>) => boolean,
) {
  const res = await fetch(target.url, { method: target.method, headers: target.headers, body: target.body })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${label}: expected 200, got ${res.status}: ${text}`)
  const body = JSON.parse(text) as Record<string, unknown>
  if (!expect(body)) throw new Error(`${label}: unexpected answer: ${text}`)
}

/** Mints the Bearer token the way a client would: a real POST /v1/auth/grant. */
export async function mintGrant(
  server: { earmarkUrl: string; apiKey: string },
  ttlSeconds: number,
): Promise<string> {
  const res = await fetch(`${server.earmarkUrl}/v1/auth/grant`, {
    method: 'POST',
    headers: { authorization: `Token ${server.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ttl_seconds: ttlSeconds }),
  })
  const body = (await res.json()) as { access_token?: unknown; expires_in?: unknown }
  if (res.status !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`POST /v1/auth/grant: expected 200 with an access_token, got ${res.status}`)
  }
  return body.access_token
}

function scenarios(ready: ReadyMessage & LimitsReady, jwt: string, limitedJwt: string): Scenario[] {
  const json = { 'content-type': 'application/json' }
  const grantBody = JSON.stringify({ ttl_seconds: 60 })
  const bareGet: Target = { url: `${ready.bareUrl}/bare`, method: 'GET' }
  const barePost: Target = { url: `${ready.bareUrl}/bare`, method: 'POST', headers: json, body: grantBody }
  const isBare = (b: Record<string, unknown>) => b.ok === true
  const { limited } = ready
  /** The three authenticated routes on one Earmark (`server`), as the scenarios send them. */
  const routes = (server: { earmarkUrl: string; apiKey: string; apiKeyId: string }, token: string) => ({
    token: {
      url: `${server.earmarkUrl}/v1/auth/token`,
      method: 'GET',
      headers: { authorization: `Token ${server.apiKey}` },
    } satisfies Target,
    bearer: {
      url: `${server.earmarkUrl}/v1/auth/token`,
      method: 'GET',
      headers: { authorization: `Bearer ${token}` },
    } satisfies Target,
    grant: {
      url: `${server.earmarkUrl}/v1/auth/grant`,
      method: 'POST',
      headers: { ...json, authorization: `Token ${server.apiKey}` },
      body: grantBody,
    } satisfies Target,
    isKey: (b: Record<string, unknown>) => b.type === 'api_key' && b.accessor === server.apiKeyId,
    isToken: (b: Record<string, unknown>) => b.type === 'access_token' && b.accessor === server.apiKeyId,
  })
  const off = routes(ready, jwt)
  const on = routes(limited, limitedJwt)
  const isGrant = (b: Record<string, unknown>) => typeof b.access_token === 'string' && b.expires_in === 60
  return [
    {
      id: 'token',
      label: 'GET /v1/auth/token, Token key',
      target: off.token,
      expect: off.isKey,
      baselineLabel: 'bare GET',
      baseline: bareGet,
      expectBaseline: isBare,
      minRatio: 0.8,
    },
    {
      id: 'bearer',
      label: 'GET /v1/auth/token, Bearer jwt',
      target: off.bearer,
      expect: off.isToken,
      baselineLabel: 'bare GET',
      baseline: bareGet,
      expectBaseline: isBare,
      minRatio: 0.8,
    },
    {
      id: 'grant',
      label: 'POST /v1/auth/grant, Token key',
      target: off.grant,
      expect: isGrant,
      baselineLabel: 'bare POST',
      baseline: barePost,
      expectBaseline: isBare,
      minRatio: 0.5,
    },
    {
      id: 'health',
      label: 'GET /healthz, no auth (reference)',
      target: { url: `${ready.earmarkUrl}/healthz`, method: 'GET' },
      expect: (b) => b.status === 'ok',
      baselineLabel: 'bare GET',
      baseline: bareGet,
      expectBaseline: isBare,
      minRatio: null,
    },
    {
      id: 'token-limits',
      label: 'GET /v1/auth/token, Token key, limits on',
      target: on.token,
      expect: on.isKey,
      baselineLabel: 'the same, limits off',
      baseline: off.token,
      expectBaseline: off.isKey,
      minRatio: 0.9,
    },
    {
      id: 'bearer-limits',
      label: 'GET /v1/auth/token, Bearer jwt, limits on',
      target: on.bearer,
      expect: on.isToken,
      baselineLabel: 'the same, limits off',
      baseline: off.bearer,
      expectBaseline: off.isToken,
      minRatio: 0.9,
    },
    {
      id: 'grant-limits',
      label: 'POST /v1/auth/grant, Token key, limits on',
      target: on.grant,
      expect: isGrant,
      baselineLabel: 'the same, limits off',
      baseline: off.grant,
      expectBaseline: isGrant,
      minRatio: 0.9,
    },
  ]
}

async function measure(
  child: ChildProcess,
  scenario: Scenario,
  settings: Settings,
): Promise<{ scenario: Summary; baseline: Summary }> {
  const load: LoadOptions = {
    seconds: settings.seconds,
    connections: settings.connections,
    pipelining: settings.pipelining,
  }
  const warm: LoadOptions = { ...load, seconds: settings.warmupSeconds }
  const base: Measured[] = []
  const scen: Measured[] = []
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [which, target, into] of [
      [scenario.baselineLabel, scenario.baseline, base],
      [scenario.label, scenario.target, scen],
    ] as const) {
      if (settings.warmupSeconds > 0) await runLoad(`${which} (warm-up)`, target, warm)
      const cpuBefore = await childCpuUs(child)
      const run = await runLoad(which, target, load)
      const sample = { ...run, serverCpuUsPerRequest: ((await childCpuUs(child)) - cpuBefore) / run.total }
      into.push(sample)
      log(
        `${scenario.id} round ${round}/${settings.rounds} ${which}: ${rps(sample.rps)} req/s, ` +
          `p50 ${ms(sample.p50Ms)} ms, p99 ${ms(sample.p99Ms)} ms, ` +
          `server ${us(sample.serverCpuUsPerRequest)} us CPU/req`,
      )
    }
  }
  return { scenario: summarize(scen), baseline: summarize(base) }
}

/**
 * Runs the auth scenarios `only` (in their table order), prints the table and writes
 * artifacts/bench-auth.json. Resolves with whether every target with a ratio was met.
 */
export async function runAuthBenchmark(
  only: readonly AuthScenarioId[],
  options: { cpuProfDir?: string } = {},
): Promise<{ allMet: boolean }> {
  const settings = readSettings()
  const started = Date.now()
  const { child, ready } = await startChild('auth-server.ts', isLimitsReadyMessage, {
    ...(options.cpuProfDir ? { cpuProfDir: options.cpuProfDir } : {}),
  })
  // Read before pinning: availableParallelism() then counts only the runner's CPUs.
  const machine = machineInfo()
  const pinned = pinServer(child)
  try {
    log(`earmark on ${ready.earmarkUrl}, bare fastify on ${ready.bareUrl}`)
    log(pinned ? `server pinned to CPU ${pinned.server}, autocannon to CPU ${pinned.runner}` : 'not pinned')
    const jwt = await mintGrant(ready, 3600)
    const limitedJwt = await mintGrant(ready.limited, 3600)
    const all = scenarios(ready, jwt, limitedJwt).filter((s) => only.includes(s.id))
    if (all.length === 0) throw new Error('no auth scenario selected')
    for (const s of all) {
      await checkTarget(s.label, s.target, s.expect)
      await checkTarget(s.baselineLabel, s.baseline, s.expectBaseline)
    }

    const results = []
    for (const s of all) {
      const { scenario, baseline } = await measure(child, s, settings)
      const ratio = scenario.rps / baseline.rps
      const roundRatios = scenario.rounds.map((r, i) => r.rps / (baseline.rounds[i]?.rps ?? Number.NaN))
      results.push({
        ...s,
        scenario,
        baseline,
        ratio,
        roundRatios,
        met: s.minRatio === null ? null : ratio >= s.minRatio,
      })
    }

    const out = process.stdout
    out.write('\nEarmark auth benchmark\n')
    out.write(
      `machine: ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, ${machine.os}\n` +
        `method: ${settings.rounds} rounds x ${settings.seconds} s (+${settings.warmupSeconds} s warm-up) ` +
        `per side, interleaved baseline/scenario, ${settings.connections} connections, pipelining ` +
        `${settings.pipelining}; server in a child process, autocannon in this one` +
        (pinned
          ? ` (server pinned to CPU ${pinned.server}, autocannon to CPU ${pinned.runner})\n`
          : ' (not pinned)\n') +
        `earmark config: EARMARK_LOG_LEVEL=${ready.config.logLevel}, ` +
        `EARMARK_ACCESS_LOG=${ready.config.accessLog} (no per-request access log line)\n` +
        `limits off: EARMARK_LIMIT_*=0; limits on: ${ready.limited.limits.requestsPerMinute} requests/min per key, ` +
        `${ready.limited.limits.projectRequestsPerMinute} per project, ${ready.limited.limits.grantsPerMinute} ` +
        'grants/min per key (counted on every request, never reached)\n' +
        'figures: medians over the rounds; ratio = median req/s of the scenario / median req/s of its baseline\n\n',
    )
    const rows = [
      [
        'scenario',
        'req/s',
        'p50 ms',
        'p99 ms',
        'cpu us',
        'baseline',
        'base req/s',
        'base p50',
        'base p99',
        'base cpu',
        'ratio',
        'rounds',
        'target',
      ],
    ]
    for (const r of results) {
      rows.push([
        r.label,
        rps(r.scenario.rps),
        ms(r.scenario.p50Ms),
        ms(r.scenario.p99Ms),
        us(r.scenario.serverCpuUsPerRequest),
        r.baselineLabel,
        rps(r.baseline.rps),
        ms(r.baseline.p50Ms),
        ms(r.baseline.p99Ms),
        us(r.baseline.serverCpuUsPerRequest),
        `${r.ratio.toFixed(2)}x`,
        `${Math.min(...r.roundRatios).toFixed(2)}-${Math.max(...r.roundRatios).toFixed(2)}`,
        r.minRatio === null ? '-' : `>= ${r.minRatio.toFixed(2)}x`,
      ])
    }
    out.write(`${table(rows)}\n\n`)
    out.write(
      '("cpu us": server process CPU time per request, microseconds, user + system; ' +
        '"rounds": the range of per-round ratios, a measure of the noise)\n\n',
    )
    for (const r of results) {
      if (r.minRatio === null) continue
      out.write(
        `target ${r.id}: ${r.label} >= ${r.minRatio.toFixed(2)}x ${r.baselineLabel}: ` +
          `${r.ratio.toFixed(2)}x ${r.met ? 'MET' : 'NOT MET'}\n`,
      )
    }

    mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
    const report = {
      benchmark: 'auth',
      date: new Date().toISOString(),
      machine,
      settings: {
        ...settings,
        earmark: ready.config,
        pinning: pinned ? { server: pinned.server, runner: pinned.runner } : null,
      },
      scenarios: results.map((r) => ({
        id: r.id,
        label: r.label,
        baseline: r.baselineLabel,
        target_ratio: r.minRatio,
        ratio: r.ratio,
        round_ratios: r.roundRatios,
        met: r.met,
        scenario_median: {
          rps: r.scenario.rps,
          p50_ms: r.scenario.p50Ms,
          p99_ms: r.scenario.p99Ms,
          server_cpu_us_per_request: r.scenario.serverCpuUsPerRequest,
        },
        baseline_median: {
          rps: r.baseline.rps,
          p50_ms: r.baseline.p50Ms,
          p99_ms: r.baseline.p99Ms,
          server_cpu_us_per_request: r.baseline.serverCpuUsPerRequest,
        },
        scenario_rounds: r.scenario.rounds,
        baseline_rounds: r.baseline.rounds,
      })),
      seconds_total: (Date.now() - started) / 1000,
    }
    writeFileSync(OUTPUT, `${JSON.stringify(report, null, 2)}\n`)
    out.write(`\nresults: ${OUTPUT} (${report.seconds_total.toFixed(0)} s in all)\n`)
    return { allMet: !results.some((r) => r.met === false) }
  } finally {
    pinned?.release()
    await stopChild(child)
  }
}
