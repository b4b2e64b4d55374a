// The gateway benchmark of `npm run bench` (BENCH_ONLY=gateway; issue 11 item 2, docs/gateway.md): what Earmark
// adds when it relays live `/v1/listen` to an upstream service, against a direct connection to that service,
// in the same run. B is a real Earmark with PocketSphinx and a fixed capacity; A is a real Earmark with
// EARMARK_ENGINE=upstream pointing at B, holding a key made on B. Each is a child process of its own
// (bench/multinode-server.ts), as `earmark serve` is in production. Two parts:
// - latency: one socket direct to B and one through A, open together; `Finalize` is sent and the
//   `from_finalize` Results awaited, alternately on each, many times. With no audio since the last Finalize,
//   B answers at once with an empty final (no decoder call), so the round trip is the sockets and the relay
//   only, and the difference of the medians is the relay hop. The same again with a 100 ms speech chunk
//   before each Finalize (B then decodes it), the per-chunk figure with B's decoding in it. Target: the
//   added p50 of the first at most 1 ms.
// - cpu: BENCH_GATEWAY_STREAMS real-time streams (flite speech, 16 kHz linear16, 100 ms chunks, interim
//   results), through A and direct to B, alternately; A's and B's process CPU time over the audio time
//   streamed (what one real-time stream costs, even when B lags and the streams end late), in % of one core.
//   Target: A at most 5 % of a core per stream. A's CPU per relayed frame is reported from both parts: the
//   round-trip loop (no connection set-up in it) and the streams (set-up included).
// Figures are medians over the rounds; the load average is printed with them (the machine is shared).
//
// Env: BENCH_GATEWAY_ROUNDS (3), BENCH_GATEWAY_PINGS (200 round trips per path, kind and round),
// BENCH_GATEWAY_STREAMS (4, also B's EARMARK_CAPACITY), BENCH_GATEWAY_SECONDS (10 s of audio per stream),
// BENCH_PIN=0 (do not pin A and B to the last CPU).
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises'
import { generateKeySecret } from '../src/auth/index.js'
import { ownerApi } from '../test/helpers/listen-e2e.js'
import { childCpuUs, type Pinning, pinServer, ROOT, startChild, stopChild } from './child.js'
import { isNodeReadyMessage } from './protocol.js'
import { cpuTicks, envNumber, log, machineCpuSince, machineInfo, table } from './report.js'
import { runStreams } from './speech.js'
import { buildCorpus, type Corpus, chunksOf, rotateCorpus } from './speech-audio.js'
import { closeStream, connect, listenUrl, type Opened } from './speech-client.js'
import { median, percentile } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-gateway.json')
/** Issue 11's bounds for the relay: added latency p50, and the gateway's CPU per stream (% of one core). */
const TARGET_ADDED_P50_MS = 1
const TARGET_CPU_PERCENT = 5
const FINALIZE = JSON.stringify({ type: 'Finalize' })
const KEEPALIVE = JSON.stringify({ type: 'KeepAlive' })
/** B's and A's idle timeout is 10 s and Finalize does not reset it: a KeepAlive this often does. */
const KEEPALIVE_EVERY_MS = 2000
const ANSWER_TIMEOUT_MS = 10_000

function readSettings() {
  return {
    rounds: Math.round(envNumber('BENCH_GATEWAY_ROUNDS', 3, 1)),
    pings: Math.round(envNumber('BENCH_GATEWAY_PINGS', 200, 10)),
    streams: Math.round(envNumber('BENCH_GATEWAY_STREAMS', 4, 1)),
    seconds: envNumber('BENCH_GATEWAY_SECONDS', 10, 2),
  }
}

type Settings = ReturnType<typeof readSettings>

const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-')
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-')
const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-')

interface Server {
  child: ChildProcess
  /** `ws://127.0.0.1:port` */
  wsUrl: string
  /** The key a client of this server presents. */
  key: string
}

async function startServer(env: Record<string, string>, cpuProfDir: string | undefined) {
  const { child, ready } = await startChild('multinode-server.ts', isNodeReadyMessage, {
    env: { BENCH_NODE_ENV: JSON.stringify(env) },
    startTimeoutMs: 120_000,
    ...(cpuProfDir ? { cpuProfDir } : {}),
  })
  return { child, url: ready.earmarkUrl, wsUrl: ready.earmarkUrl.replace(/^http/, 'ws') }
}

// ------------------------------------------------------------------------------------------ latency

/** A live socket that times `Finalize` → `from_finalize` Results, one at a time. */
interface Pinger {
  opened: Opened
  /** Sends `chunk` (if any) then Finalize; resolves with ms until the from_finalize Results arrived. */
  roundTrip(chunk?: Buffer): Promise<number>
}

async function openPinger(server: Server): Promise<Pinger> {
  const opened = await connect(listenUrl(server.wsUrl), ['token', server.key])
  let waiting: ((at: number) => void) | undefined
  opened.ws.on('message', (data, isBinary) => {
    const at = performance.now()
    if (isBinary || !waiting) return
    const m = JSON.parse(data.toString()) as { type?: unknown; from_finalize?: unknown }
    if (m.type !== 'Results' || m.from_finalize !== true) return
    const answered = waiting
    waiting = undefined
    answered(at)
  })
  let keptAlive = performance.now()
  return {
    opened,
    async roundTrip(chunk) {
      if (performance.now() - keptAlive > KEEPALIVE_EVERY_MS) {
        opened.ws.send(KEEPALIVE)
        keptAlive = performance.now()
        await tick()
      }
      let timer: NodeJS.Timeout | undefined
      const answered = new Promise<number>((resolve, reject) => {
        waiting = resolve
        timer = setTimeout(() => reject(new Error('no from_finalize Results within 10 s')), ANSWER_TIMEOUT_MS)
      })
      const start = performance.now()
      if (chunk) opened.ws.send(chunk)
      opened.ws.send(FINALIZE)
      try {
        return (await answered) - start
      } finally {
        clearTimeout(timer)
      }
    },
  }
}

interface Spread {
  p50: number
  p95: number
  p99: number
}

const spread = (values: readonly number[]): Spread => ({
  p50: median(values),
  p95: percentile(values, 95),
  p99: percentile(values, 99),
})

type LatencyKind = 'finalize' | 'chunk'

interface LatencyRound {
  kind: LatencyKind
  direct: Spread
  relayed: Spread
  /** Relayed p50 − direct p50, ms. */
  addedP50: number
  /** A's CPU time during the loop / the frames it relayed (no connection set-up in it), µs. */
  aUsPerFrame: number
}

/**
 * One round: both sockets open together; direct and relayed round trips alternate, each first in turn; the
 * two kinds run in `kinds` order (swapped from round to round).
 */
async function latencyRound(
  b: Server,
  a: Server,
  corpus: Corpus,
  pings: number,
  kinds: readonly LatencyKind[],
): Promise<LatencyRound[]> {
  const direct = await openPinger(b)
  const relayed = await openPinger(a)
  const chunks = chunksOf(corpus.pcm).map((c) => Buffer.from(c.buffer, c.byteOffset, c.byteLength))
  const chunk = (i: number) => chunks[i % chunks.length] ?? Buffer.alloc(3200)
  try {
    // Warm-up: audio first (so the stream has started and KeepAlive counts), then untimed round trips.
    for (const p of [direct, relayed]) {
      await p.roundTrip(chunk(0))
      for (let i = 0; i < 50; i++) await p.roundTrip()
    }
    const rounds: LatencyRound[] = []
    for (const kind of kinds) {
      const times = { direct: [] as number[], relayed: [] as number[] }
      const aBefore = await childCpuUs(a.child)
      for (let i = 0; i < pings; i++) {
        const order = i % 2 === 0 ? (['direct', 'relayed'] as const) : (['relayed', 'direct'] as const)
        for (const side of order) {
          const p = side === 'direct' ? direct : relayed
          // The same chunk on both paths, so B decodes the same audio for each.
          times[side].push(await p.roundTrip(kind === 'chunk' ? chunk(i) : undefined))
        }
      }
      const aUs = (await childCpuUs(a.child)) - aBefore
      // Per relayed round trip: Finalize and Results (and the chunk), plus a KeepAlive every 2 s at most.
      const frames = pings * (kind === 'chunk' ? 3 : 2)
      const d = spread(times.direct)
      const r = spread(times.relayed)
      rounds.push({ kind, direct: d, relayed: r, addedP50: r.p50 - d.p50, aUsPerFrame: aUs / frames })
    }
    return rounds
  } finally {
    await Promise.allSettled([closeStream(direct.opened), closeStream(relayed.opened)])
  }
}

// ------------------------------------------------------------------------------------------ cpu

type Path = 'direct' | 'relayed'

interface CpuPhase {
  path: Path
  wallSeconds: number
  /** Seconds of audio streamed, all streams together. */
  audioSeconds: number
  /**
   * A's CPU time / the audio seconds streamed, % of one core: what one real-time stream costs, however long
   * B took to flush (while direct: A idle, its floor).
   */
  aPercentPerStream: number
  /** B's, the same way. */
  bPercentPerStream: number
  /** A's CPU time / every frame the clients sent and received, µs (connection set-up included). */
  aUsPerFrame: number
  frames: number
  resultLagP50Ms: number
  machineBusyPercent: number
}

async function cpuPhase(
  path: Path,
  b: Server,
  a: Server,
  corpus: Corpus,
  settings: Settings,
  round: number,
  machineCpus: number,
): Promise<CpuPhase> {
  const to = path === 'direct' ? b : a
  const audios = Array.from({ length: settings.streams }, (_, i) =>
    rotateCorpus(corpus, i + round, settings.seconds),
  )
  const [a0, b0] = await Promise.all([childCpuUs(a.child), childCpuUs(b.child)])
  const ticks = cpuTicks()
  const started = performance.now()
  const outcomes = await runStreams({ earmarkWsUrl: to.wsUrl, apiKey: to.key }, audios, {
    interim_results: 'true',
  })
  const wallSeconds = (performance.now() - started) / 1000
  const machine = machineCpuSince(ticks, machineCpus)
  const [a1, b1] = await Promise.all([childCpuUs(a.child), childCpuUs(b.child)])
  const audioSeconds = audios.reduce((n, x) => n + x.seconds, 0)
  const perStream = (us: number) => (us / 1e6 / audioSeconds) * 100
  const frames = outcomes.reduce((n, o) => n + o.framesSent + o.framesReceived, 0)
  return {
    path,
    wallSeconds,
    audioSeconds,
    aPercentPerStream: perStream(a1 - a0),
    bPercentPerStream: perStream(b1 - b0),
    aUsPerFrame: (a1 - a0) / frames,
    frames,
    resultLagP50Ms: median(outcomes.flatMap((o) => o.resultLags.map((l) => l.ms))),
    machineBusyPercent: machine.busyPercent,
  }
}

// ------------------------------------------------------------------------------------------ run

const med = <T>(items: readonly T[], pick: (t: T) => number) => median(items.map(pick))

/** Runs both parts, prints the figures and writes artifacts/bench-gateway.json. */
export async function runGatewayBenchmark(
  options: { cpuProfDir?: string } = {},
): Promise<{ allMet: boolean }> {
  const settings = readSettings()
  const machine = machineInfo() // before pinning narrows this process's CPU set
  const load = [loadavg()]
  const started = Date.now()
  log('gateway: synthesising the test audio (flite)')
  const corpus = await buildCorpus()
  const bOwner = generateKeySecret()
  const aOwner = generateKeySecret()
  const children: ChildProcess[] = []
  let pinned: (Pinning & { release(): void }) | undefined
  try {
    log(`gateway: starting B (PocketSphinx, capacity ${settings.streams})`)
    const bProc = await startServer(
      { EARMARK_BOOTSTRAP_KEY: bOwner, EARMARK_CAPACITY: String(settings.streams) },
      options.cpuProfDir,
    )
    children.push(bProc.child)
    const upstreamKey = await (await ownerApi(bProc.url, bOwner)).createKey('gateway A', ['member'])
    log('gateway: starting A (EARMARK_ENGINE=upstream, relaying to B)')
    const aProc = await startServer(
      {
        EARMARK_BOOTSTRAP_KEY: aOwner,
        EARMARK_ENGINE: 'upstream',
        EARMARK_UPSTREAM_URL: bProc.url,
        EARMARK_UPSTREAM_KEY: upstreamKey.key,
      },
      options.cpuProfDir,
    )
    children.push(aProc.child)
    const b: Server = { child: bProc.child, wsUrl: bProc.wsUrl, key: bOwner }
    const a: Server = { child: aProc.child, wsUrl: aProc.wsUrl, key: aOwner }
    // A and B on the last CPU, the clients on the others (bench/child.ts), as in the other benchmarks.
    for (const c of children) pinned = pinServer(c) ?? pinned
    log(pinned ? `A and B pinned to CPU ${pinned.server}, clients to CPU ${pinned.runner}` : 'not pinned')

    const latency: LatencyRound[][] = []
    const cpu: CpuPhase[][] = []
    for (let round = 1; round <= settings.rounds; round++) {
      const kinds: LatencyKind[] = round % 2 === 1 ? ['finalize', 'chunk'] : ['chunk', 'finalize']
      const rounds = await latencyRound(b, a, corpus, settings.pings, kinds)
      latency.push(rounds)
      for (const r of rounds)
        log(
          `gateway round ${round} ${r.kind}: direct p50 ${f2(r.direct.p50)} ms, relayed p50 ${f2(r.relayed.p50)} ms, ` +
            `added ${f2(r.addedP50)} ms`,
        )
      // Each path first in every other round.
      const order: Path[] = round % 2 === 1 ? ['relayed', 'direct'] : ['direct', 'relayed']
      const phases: CpuPhase[] = []
      for (const path of order) {
        const phase = await cpuPhase(path, b, a, corpus, settings, round, machine.nproc)
        phases.push(phase)
        log(
          `gateway round ${round} ${path}: A ${f2(phase.aPercentPerStream)} %/stream, ` +
            `B ${f1(phase.bPercentPerStream)} %/stream, machine busy ${f0(phase.machineBusyPercent)} %`,
        )
        await sleep(500) // streams closed, decoders back in B's pool
      }
      cpu.push(phases)
    }
    load.push(loadavg())

    // ---- figures: medians over the rounds
    const kindRounds = (kind: LatencyKind) => latency.map((rs) => rs.find((r) => r.kind === kind))
    const latencySummary = (kind: LatencyKind) => {
      const rs = kindRounds(kind).filter((r): r is LatencyRound => r !== undefined)
      const side = (pick: (r: LatencyRound) => Spread): Spread => ({
        p50: med(rs, (r) => pick(r).p50),
        p95: med(rs, (r) => pick(r).p95),
        p99: med(rs, (r) => pick(r).p99),
      })
      return {
        direct: side((r) => r.direct),
        relayed: side((r) => r.relayed),
        addedP50: med(rs, (r) => r.addedP50),
        aUsPerFrame: med(rs, (r) => r.aUsPerFrame),
      }
    }
    const fin = latencySummary('finalize')
    const chk = latencySummary('chunk')
    const phasesOf = (path: Path) => cpu.flatMap((ps) => ps.filter((p) => p.path === path))
    const cpuSummary = (path: Path) => {
      const ps = phasesOf(path)
      return {
        aPercentPerStream: med(ps, (p) => p.aPercentPerStream),
        bPercentPerStream: med(ps, (p) => p.bPercentPerStream),
        aUsPerFrame: med(ps, (p) => p.aUsPerFrame),
        wallOverAudio: med(ps, (p) => (p.wallSeconds * settings.streams) / p.audioSeconds),
        resultLagP50Ms: med(ps, (p) => p.resultLagP50Ms),
        machineBusyPercent: med(ps, (p) => p.machineBusyPercent),
      }
    }
    const direct = cpuSummary('direct')
    const relayed = cpuSummary('relayed')
    const ratio = relayed.aPercentPerStream / direct.bPercentPerStream
    const latencyMet = fin.addedP50 <= TARGET_ADDED_P50_MS
    const cpuMet = relayed.aPercentPerStream <= TARGET_CPU_PERCENT

    const out = process.stdout
    const la = (l: number[] | undefined) => (l ?? []).map((v) => v.toFixed(2)).join(' ')
    out.write(
      '\nEarmark gateway benchmark (EARMARK_ENGINE=upstream relaying to a second Earmark)\n' +
        `machine: ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, ${machine.os}; ` +
        `load average ${la(load[0])} at start, ${la(load[1])} at end\n` +
        `B: Earmark with PocketSphinx, EARMARK_CAPACITY=${settings.streams}; A: EARMARK_ENGINE=upstream to B; ` +
        `each a child process${pinned ? `, both pinned to CPU ${pinned.server}, clients to CPU ${pinned.runner}` : ''}\n` +
        `figures: medians over ${settings.rounds} rounds\n`,
    )
    const spreadRow = (label: string, s: Spread, usPerFrame = '') => [
      label,
      f2(s.p50),
      f2(s.p95),
      f2(s.p99),
      usPerFrame,
    ]
    out.write(
      `\nRound trip Finalize → from_finalize Results, ${settings.pings} per path and kind per round, direct and ` +
        `relayed alternating (target: added p50 <= ${TARGET_ADDED_P50_MS} ms without decoding)\n` +
        table([
          ['round trip', 'p50 ms', 'p95 ms', 'p99 ms', 'A CPU µs/frame'],
          spreadRow('no decoding: direct to B', fin.direct),
          spreadRow('no decoding: through A', fin.relayed, f0(fin.aUsPerFrame)),
          ['no decoding: added (p50 - p50)', f2(fin.addedP50), '', '', ''],
          spreadRow('100 ms chunk: direct to B', chk.direct),
          spreadRow('100 ms chunk: through A', chk.relayed, f0(chk.aUsPerFrame)),
          ['100 ms chunk: added (p50 - p50)', f2(chk.addedP50), '', '', ''],
        ]) +
        `\nadded latency: ${latencyMet ? 'target met' : 'target NOT met'}\n`,
    )
    out.write(
      `\nCPU per stream: ${settings.streams} streams, ${settings.seconds} s of speech each, paced in real time ` +
        '(16 kHz linear16, 100 ms chunks, interim results); %/stream = CPU time / audio time, % of one core ' +
        `(target: A <= ${TARGET_CPU_PERCENT} %)\n` +
        table([
          [
            'path',
            'A %/stream',
            'B %/stream',
            'A µs/frame (set-up incl.)',
            'wall / audio',
            'result lag p50 ms',
            'machine busy %',
          ],
          [
            'direct to B',
            f2(direct.aPercentPerStream),
            f1(direct.bPercentPerStream),
            '-',
            f2(direct.wallOverAudio),
            f0(direct.resultLagP50Ms),
            f0(direct.machineBusyPercent),
          ],
          [
            'through A',
            f2(relayed.aPercentPerStream),
            f1(relayed.bPercentPerStream),
            f0(relayed.aUsPerFrame),
            f2(relayed.wallOverAudio),
            f0(relayed.resultLagP50Ms),
            f0(relayed.machineBusyPercent),
          ],
        ]) +
        `\nA per relayed stream / B per direct stream: ${f2(ratio * 100)} % ` +
        `(A idle while direct: ${f2(direct.aPercentPerStream)} %/stream); ` +
        `CPU per stream: ${cpuMet ? 'target met' : 'target NOT met'}\n`,
    )
    log(`gateway: done in ${f0((Date.now() - started) / 1000)} s`)

    mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
    writeFileSync(
      OUTPUT,
      `${JSON.stringify(
        {
          benchmark: 'gateway',
          date: new Date().toISOString(),
          machine,
          loadAverage: { start: load[0], end: load[1] },
          settings,
          pinning: pinned ? { server: pinned.server, runner: pinned.runner } : null,
          latency: { noDecoding: fin, chunk: chk, rounds: latency },
          cpu: { direct, relayed, aOverBDirect: ratio, rounds: cpu },
          targets: { addedP50Ms: TARGET_ADDED_P50_MS, cpuPercentPerStream: TARGET_CPU_PERCENT },
          met: { latency: latencyMet, cpu: cpuMet },
        },
        null,
        2,
      )}\n`,
    )
    return { allMet: latencyMet && cpuMet }
  } finally {
    pinned?.release()
    await Promise.allSettled(children.map((c) => stopChild(c)))
  }
}
