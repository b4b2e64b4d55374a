// The speech benchmark of `npm run bench`: Earmark's live /v1/listen against the PocketSphinx engine alone
// and a bare `ws` upgrade, all measured in the same run. Earmark runs in a child process
// (bench/speech-server.ts, a fixed capacity: 1 for rtf and finalize, then 8 for sweep and connect); the
// clients and the engine baseline run here.
//
// Parts (BENCH_ONLY=speech runs all; speech:rtf, speech:sweep, speech:finalize, speech:connect and
// speech:auto select some):
// - rtf: real-time factor of the engine alone and through the socket, same audio, same 100 ms chunks, as
//   fast as each takes them; interleaved rounds; the ratio of the medians is Earmark's overhead.
// - sweep: N concurrent streams paced in real time with interim results; result lag per N (its N = 1 step
//   is also the single-stream interim latency).
// - finalize: Finalize a third and two thirds into every utterance of a paced stream → from_finalize Results.
// - connect: new WebSocket → 'open' with a Token key and a Bearer grant, against a bare ws upgrade.
// - auto: what admission control would admit here (EARMARK_CAPACITY=auto, measured by a real server start).
// - wer: word error rate of the held-apart set over REST, live paced and live as fast as possible, and of
//   decoder settings against their CPU cost (bench/speech-wer.ts; not in the default run: about 20 minutes).
//
// Env: BENCH_SPEECH_ROUNDS (3), BENCH_SPEECH_SWEEP (1,2,3,4,6,8), BENCH_SPEECH_SWEEP_SECONDS (15),
// BENCH_SPEECH_FINALIZE_ROUNDS (1), BENCH_SPEECH_CONNECTS (20), BENCH_SPEECH_CAPACITY (8, at least the
// largest N), BENCH_SPEECH_LAG_MS (500), BENCH_SPEECH_GIVE_UP_MS (5000: larger N are skipped once a step's
// p95 result lag reaches it).
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Engine } from '../src/engines/index.js'
import { wordErrorRate } from '../test/helpers/speech.js'
import { childCpuUs, ROOT, startChild, stopChild } from './child.js'
import { isSpeechReadyMessage, type SpeechReadyMessage } from './protocol.js'
import { cpuTicks, envNumber, log, machineCpuSince, machineInfo, table } from './report.js'
import { buildCorpus, type Corpus, midUtteranceChunks, rotateCorpus } from './speech-audio.js'
import {
  connect,
  listenUrl,
  type Opened,
  type PacedOutcome,
  streamAsFastAsPossible,
  streamPaced,
  timeConnect,
} from './speech-client.js'
import {
  createBaselineEngine,
  engineAsFastAsPossible,
  engineFinalizeTimes,
  WARMUP_SPEECH,
} from './speech-engine.js'
import { runWerPart, type WerReport } from './speech-wer.js'
import { median, percentile } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-speech.json')

export type SpeechPartId = 'rtf' | 'sweep' | 'finalize' | 'connect' | 'auto' | 'wer'
export const SPEECH_PARTS: readonly SpeechPartId[] = ['rtf', 'sweep', 'finalize', 'connect', 'auto', 'wer']
/** What `npm run bench` and BENCH_ONLY=speech run: all but `wer` (about 20 minutes on its own). */
export const DEFAULT_SPEECH_PARTS: readonly SpeechPartId[] = SPEECH_PARTS.filter((p) => p !== 'wer')

/** The targets; a miss is reported (and fails the run only with BENCH_STRICT=1). */
const TARGETS = {
  /** Socket RTF / engine RTF, same audio and chunks. */
  overheadRatio: 1.15,
  /** Interim latency p50, one real-time stream, ms. */
  interimP50Ms: 150,
  /** Finalize → from_finalize Results, median, ms. */
  finalizeP50Ms: 300,
} as const

function intList(name: string, fallback: string): number[] {
  const raw = process.env[name] || fallback
  const values = raw.split(',').map((s) => Number(s.trim()))
  if (values.some((v) => !Number.isInteger(v) || v < 1))
    throw new Error(`${name} must list positive integers (got ${raw})`)
  return [...new Set(values)].sort((a, b) => a - b)
}

function readSettings() {
  const sweep = intList('BENCH_SPEECH_SWEEP', '1,2,3,4,6,8')
  const largest = sweep.at(-1) ?? 1
  const capacity = Math.round(envNumber('BENCH_SPEECH_CAPACITY', Math.max(8, largest), 1))
  if (capacity < largest)
    throw new Error(`BENCH_SPEECH_CAPACITY (${capacity}) must be at least the largest N (${largest})`)
  return {
    rounds: Math.round(envNumber('BENCH_SPEECH_ROUNDS', 3, 1)),
    sweep,
    sweepSeconds: envNumber('BENCH_SPEECH_SWEEP_SECONDS', 15, 1),
    finalizeRounds: Math.round(envNumber('BENCH_SPEECH_FINALIZE_ROUNDS', 1, 1)),
    connects: Math.round(envNumber('BENCH_SPEECH_CONNECTS', 20, 1)),
    capacity,
    lagLimitMs: envNumber('BENCH_SPEECH_LAG_MS', 500, 1),
    /** The sweep stops once a step's p95 result lag reaches this, ms. */
    giveUpMs: envNumber('BENCH_SPEECH_GIVE_UP_MS', 5000, 1),
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? String(Math.max(16, availableParallelism() * 4)),
  }
}

type Settings = ReturnType<typeof readSettings>

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : '-')
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '-')
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-')
const f3 = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : '-')
const pct = (n: number) => `${(n * 100).toFixed(1)} %`
const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET')

/** p50, p90, p95, p99 and the count of a list of milliseconds. */
function spread(values: readonly number[]) {
  return {
    n: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p95: percentile(values, 95),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : Number.NaN,
  }
}

// ---------------------------------------------------------------------------------------------- auto

interface AutoCapacity {
  capacity: number
  realTimeFactor: number | null
  startSeconds: number
}

/**
 * Starts a real server (`bin/earmark.js serve`) with EARMARK_CAPACITY=auto on a temporary data dir and reads
 * what it measured from its log lines ('measured speech capacity', then 'listening'), then stops it.
 * Its stdout also carries the generated owner key: lines are parsed as JSON and nothing else is kept.
 */
async function measureAutoCapacity(): Promise<AutoCapacity> {
  const dir = mkdtempSync(join(tmpdir(), 'earmark-bench-auto-'))
  const started = performance.now()
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'earmark.js'), 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: '0',
      HOST: '127.0.0.1',
      EARMARK_DATA_DIR: dir,
      EARMARK_CAPACITY: 'auto',
      EARMARK_LOG_LEVEL: 'info',
      EARMARK_ACCESS_LOG: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-2000)
  })
  try {
    return await new Promise<AutoCapacity>((resolve, reject) => {
      let rtf: number | null = null
      const timer = setTimeout(
        () => reject(new Error('the auto-capacity server did not start within 90 s')),
        90_000,
      )
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
      lines.on('line', (line) => {
        let entry: { msg?: unknown; real_time_factor?: unknown; capacity?: unknown }
        try {
          entry = JSON.parse(line) as typeof entry
        } catch {
          return // not a log line (the owner key notice): never kept
        }
        if (entry.msg === 'measured speech capacity' && typeof entry.real_time_factor === 'number') {
          rtf = entry.real_time_factor
        }
        if (entry.msg === 'listening' && typeof entry.capacity === 'number') {
          clearTimeout(timer)
          resolve({
            capacity: entry.capacity,
            realTimeFactor: rtf,
            startSeconds: (performance.now() - started) / 1000,
          })
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the auto-capacity server exited (code ${code}): ${stderr.trim()}`))
      })
    })
  } finally {
    await stopProcess(child)
    rmSync(dir, { recursive: true, force: true })
  }
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((done) => child.once('exit', () => done()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

// ----------------------------------------------------------------------------------------------- rtf

type RtfSide = 'engine' | 'socket'

interface RtfRun {
  round: number
  side: RtfSide
  interim: boolean
  rtf: number
  /** CPU time of the process that decoded (this one for the engine, the server for the socket), ms per audio second. */
  cpuMsPerAudioSecond: number
  wer: number
  /** Every other process on the machine during the run, % of one CPU. */
  othersPercent: number
}

async function measureRtf(
  engine: Engine,
  server: { child: ChildProcess; ready: SpeechReadyMessage },
  corpus: Corpus,
  settings: Settings,
): Promise<RtfRun[]> {
  const { ready, child } = server
  const protocols = ['token', ready.apiKey]
  const url = (interim: boolean) => listenUrl(ready.earmarkWsUrl, interim ? { interim_results: 'true' } : {})
  const first = rotateCorpus(corpus, 0, 5)
  // Warm-up (discarded): JIT, sockets and decoders on both sides.
  await engineAsFastAsPossible(engine, first.pcm, false)
  await streamAsFastAsPossible(url(false), protocols, first.pcm)

  const kinds: { side: RtfSide; interim: boolean }[] = [
    { side: 'engine', interim: false },
    { side: 'socket', interim: false },
    { side: 'engine', interim: true },
    { side: 'socket', interim: true },
  ]
  const runs: RtfRun[] = []
  for (let round = 1; round <= settings.rounds; round++) {
    // The order turns every round, so drift does not always hit the same side first.
    const order = kinds.map((_, i) => kinds[(i + round - 1) % kinds.length]).filter((k) => k !== undefined)
    for (const { side, interim } of order) {
      let wallMs: number
      let cpuMs: number
      let transcript: string
      const childBefore = await childCpuUs(child)
      const parentBefore = process.cpuUsage()
      const ticks = cpuTicks()
      if (side === 'engine') {
        ;({ wallMs, cpuMs, transcript } = await engineAsFastAsPossible(engine, corpus.pcm, interim))
      } else {
        ;({ wallMs, transcript } = await streamAsFastAsPossible(url(interim), protocols, corpus.pcm))
        cpuMs = 0
      }
      const machine = machineCpuSince(ticks)
      const parent = process.cpuUsage(parentBefore)
      const serverMs = ((await childCpuUs(child)) - childBefore) / 1000
      if (side === 'socket') cpuMs = serverMs
      const oursMs = (parent.user + parent.system) / 1000 + serverMs
      const run: RtfRun = {
        round,
        side,
        interim,
        rtf: wallMs / 1000 / corpus.seconds,
        cpuMsPerAudioSecond: cpuMs / corpus.seconds,
        wer: wordErrorRate(corpus.reference, transcript),
        othersPercent: Math.max(0, machine.busyPercent - (oursMs / wallMs) * 100),
      }
      runs.push(run)
      log(
        `rtf round ${round}/${settings.rounds} ${side} (interim ${interim ? 'on' : 'off'}): RTF ${f3(run.rtf)}, ` +
          `${f0(run.cpuMsPerAudioSecond)} ms CPU per audio s, WER ${pct(run.wer)}, ` +
          `other processes ${f0(run.othersPercent)} % of a CPU`,
      )
    }
  }
  return runs
}

function summarizeRtf(runs: readonly RtfRun[]) {
  const pick = (side: RtfSide, interim: boolean) =>
    runs.filter((r) => r.side === side && r.interim === interim)
  const pair = (interim: boolean) => {
    const engine = pick('engine', interim)
    const socket = pick('socket', interim)
    const engineRtf = median(engine.map((r) => r.rtf))
    const socketRtf = median(socket.map((r) => r.rtf))
    return {
      interim,
      engineRtf,
      socketRtf,
      ratio: socketRtf / engineRtf,
      roundRatios: socket.map((s) => s.rtf / (engine.find((e) => e.round === s.round)?.rtf ?? Number.NaN)),
      engineCpuMsPerAudioSecond: median(engine.map((r) => r.cpuMsPerAudioSecond)),
      socketCpuMsPerAudioSecond: median(socket.map((r) => r.cpuMsPerAudioSecond)),
      engineWer: median(engine.map((r) => r.wer)),
      socketWer: median(socket.map((r) => r.wer)),
      othersPercent: median([...engine, ...socket].map((r) => r.othersPercent)),
    }
  }
  return { off: pair(false), on: pair(true) }
}

// --------------------------------------------------------------------------------------------- sweep

interface SweepStep {
  n: number
  /** All Results messages of all streams, timed against the chunk they end at. */
  resultLag: ReturnType<typeof spread>
  /** Interim Results only. */
  interimLag: ReturnType<typeof spread>
  /** Every chunk, to the first Results covering it (includes pauses). */
  coverageLag: ReturnType<typeof spread>
  /** Client send delay against the schedule, p99 ms (this process's own health). */
  sendDelayP99Ms: number
  /** Server process CPU, % of one core, over the step. */
  serverCpuPercent: number
  /** This process (the clients), % of one core. */
  clientCpuPercent: number
  /** The whole machine (everyone's processes), and steal, % of one core. */
  machineBusyPercent: number
  machineStealPercent: number
  /** The machine minus the server and the clients: other people's work, % of one core. */
  othersPercent: number
  werMedian: number
  seconds: number
}

/**
 * Opens one socket per audio, then streams them all in real time, starts spread over one chunk period (the
 * gateway benchmark runs the same streams, direct and relayed).
 */
export async function runStreams(
  ready: Pick<SpeechReadyMessage, 'earmarkWsUrl' | 'apiKey'>,
  audios: { pcm: Int16Array; finalizeAfter?: ReadonlySet<number> }[],
  params: Record<string, string>,
): Promise<PacedOutcome[]> {
  const url = listenUrl(ready.earmarkWsUrl, params)
  const opened: Opened[] = []
  for (const _ of audios) opened.push(await connect(url, ['token', ready.apiKey]))
  // Starts are spread over one chunk period, so the streams do not send in lock-step.
  const base = performance.now() + 200
  const period = 100 / audios.length
  return Promise.all(
    audios.map((a, i) => {
      const o = opened[i]
      if (!o) throw new Error('a socket is missing')
      return streamPaced({
        opened: o,
        pcm: a.pcm,
        startAt: base + i * period,
        ...(a.finalizeAfter ? { finalizeAfter: a.finalizeAfter } : {}),
      })
    }),
  )
}

async function measureSweep(
  server: { child: ChildProcess; ready: SpeechReadyMessage },
  corpus: Corpus,
  settings: Settings,
): Promise<SweepStep[]> {
  const steps: SweepStep[] = []
  for (const n of settings.sweep) {
    const behind = steps.find((s) => s.resultLag.p95 >= settings.giveUpMs)
    if (behind) {
      // Larger N only fall further behind, and the server decodes every backlog before it closes a stream.
      log(`sweep N=${n}: skipped (N=${behind.n} already lagged ${f0(behind.resultLag.p95)} ms at p95)`)
      continue
    }
    const audios = Array.from({ length: n }, (_, i) => rotateCorpus(corpus, i, settings.sweepSeconds))
    const cpuBefore = await childCpuUs(server.child)
    const clientBefore = process.cpuUsage()
    const ticks = cpuTicks()
    const started = performance.now()
    const outcomes = await runStreams(server.ready, audios, { interim_results: 'true' })
    const seconds = (performance.now() - started) / 1000
    const machine = machineCpuSince(ticks)
    const client = process.cpuUsage(clientBefore)
    const serverPercent = (((await childCpuUs(server.child)) - cpuBefore) / 1e6 / seconds) * 100
    const clientPercent = ((client.user + client.system) / 1e6 / seconds) * 100
    const lags = outcomes.flatMap((o) => o.resultLags)
    const step: SweepStep = {
      n,
      resultLag: spread(lags.map((l) => l.ms)),
      interimLag: spread(lags.filter((l) => !l.final).map((l) => l.ms)),
      coverageLag: spread(outcomes.flatMap((o) => o.coverageMs)),
      sendDelayP99Ms: percentile(
        outcomes.flatMap((o) => o.sendDelayMs),
        99,
      ),
      serverCpuPercent: serverPercent,
      clientCpuPercent: clientPercent,
      machineBusyPercent: machine.busyPercent,
      machineStealPercent: machine.stealPercent,
      othersPercent: Math.max(0, machine.busyPercent - serverPercent - clientPercent),
      werMedian: median(outcomes.map((o, i) => wordErrorRate(audios[i]?.reference ?? '', o.transcript))),
      seconds,
    }
    steps.push(step)
    log(
      `sweep N=${n}: result lag p50 ${f0(step.resultLag.p50)} / p95 ${f0(step.resultLag.p95)} / ` +
        `p99 ${f0(step.resultLag.p99)} ms (${step.resultLag.n} results), server CPU ${f0(step.serverCpuPercent)} %, ` +
        `other processes ${f0(step.othersPercent)} %, steal ${f0(step.machineStealPercent)} %, ` +
        `WER ${pct(step.werMedian)}`,
    )
    await sleep(500) // let the server settle (streams closed, decoders back in the pool)
  }
  return steps
}

// ------------------------------------------------------------------------------------------ finalize

async function measureFinalize(
  engine: Engine,
  ready: SpeechReadyMessage,
  corpus: Corpus,
  settings: Settings,
): Promise<{ socketMs: number[]; engineMs: number[]; short: number }> {
  const mids = midUtteranceChunks(corpus)
  const socketMs: number[] = []
  const engineMs: number[] = []
  let short = 0
  for (let round = 1; round <= settings.finalizeRounds; round++) {
    engineMs.push(...(await engineFinalizeTimes(engine, corpus.pcm, mids)))
    const [outcome] = await runStreams(ready, [{ pcm: corpus.pcm, finalizeAfter: new Set(mids) }], {
      interim_results: 'true',
    })
    if (!outcome) throw new Error('the finalize stream gave no outcome')
    if (outcome.finalizeMs.length !== mids.length) {
      throw new Error(`sent ${mids.length} Finalize, got ${outcome.finalizeMs.length} from_finalize Results`)
    }
    socketMs.push(...outcome.finalizeMs)
    short += outcome.finalizeShort
    log(
      `finalize round ${round}/${settings.finalizeRounds}: socket ${outcome.finalizeMs.map(f0).join(', ')} ms; ` +
        `engine alone ${engineMs.slice(-mids.length).map(f0).join(', ')} ms`,
    )
  }
  return { socketMs, engineMs, short }
}

// ------------------------------------------------------------------------------------------- connect

type ConnectSide = 'bare' | 'token' | 'bearer'

async function mintGrant(ready: SpeechReadyMessage): Promise<string> {
  const res = await fetch(`${ready.earmarkUrl}/v1/auth/grant`, {
    method: 'POST',
    headers: { authorization: `Token ${ready.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ ttl_seconds: 3600 }),
  })
  const body = (await res.json()) as { access_token?: unknown }
  if (res.status !== 200 || typeof body.access_token !== 'string') {
    throw new Error(`POST /v1/auth/grant: expected 200 with an access_token, got ${res.status}`)
  }
  return body.access_token
}

async function measureConnect(
  ready: SpeechReadyMessage,
  settings: Settings,
): Promise<Record<ConnectSide, number[]>> {
  const jwt = await mintGrant(ready)
  const earmark = listenUrl(ready.earmarkWsUrl)
  const sides: Record<ConnectSide, () => Promise<number>> = {
    bare: () => timeConnect(listenUrl(ready.bareWsUrl), ['token', ready.apiKey], false),
    token: () => timeConnect(earmark, ['token', ready.apiKey], true),
    bearer: () => timeConnect(earmark, ['bearer', jwt], true),
  }
  const order: ConnectSide[] = ['bare', 'token', 'bearer']
  for (let i = 0; i < 5; i++) for (const side of order) await sides[side]() // warm-up, discarded
  const times: Record<ConnectSide, number[]> = { bare: [], token: [], bearer: [] }
  for (let round = 1; round <= settings.rounds; round++) {
    for (let i = 0; i < settings.connects; i++) {
      for (const side of order) times[side].push(await sides[side]())
    }
    log(
      `connect round ${round}/${settings.rounds}: p50 bare ${f2(percentile(times.bare, 50))} ms, ` +
        `token ${f2(percentile(times.token, 50))} ms, bearer ${f2(percentile(times.bearer, 50))} ms (so far)`,
    )
  }
  return times
}

// -------------------------------------------------------------------------------------------- report

/**
 * Runs the speech parts `parts`, prints the figures and writes artifacts/bench-speech.json. Resolves with
 * whether every target measured was met.
 */
export async function runSpeechBenchmark(
  parts: readonly SpeechPartId[],
  options: { cpuProfDir?: string } = {},
): Promise<{ allMet: boolean }> {
  const settings = readSettings()
  const started = Date.now()
  const load = [loadavg()]
  const has = (p: SpeechPartId) => parts.includes(p)

  log('speech: synthesising the test audio (flite)')
  const corpus = await buildCorpus()
  log(`speech: ${corpus.utterances.length} utterances, ${f1(corpus.seconds)} s of audio`)

  // First, alone on the machine (as far as this run goes): the server's own capacity measurement.
  let auto: AutoCapacity | undefined
  if (has('auto')) {
    log('speech: starting a server with EARMARK_CAPACITY=auto')
    auto = await measureAutoCapacity()
    log(`speech: auto capacity ${auto.capacity} (measured RTF ${auto.realTimeFactor ?? '?'})`)
  }

  const startServer = (capacity: number) =>
    startChild('speech-server.ts', isSpeechReadyMessage, {
      env: { EARMARK_CAPACITY: String(capacity), UV_THREADPOOL_SIZE: settings.uvThreadpoolSize },
      startTimeoutMs: 120_000,
      ...(options.cpuProfDir ? { cpuProfDir: options.cpuProfDir } : {}),
    })
  const servers: { role: string; ready: SpeechReadyMessage }[] = []
  let rtfRuns: RtfRun[] = []
  let sweep: SweepStep[] = []
  let finalize: Awaited<ReturnType<typeof measureFinalize>> | undefined
  let connects: Record<ConnectSide, number[]> | undefined

  // The engine against the socket, one decoder on each side. A PocketSphinx decoder adapts its cepstral
  // mean to what it decodes, and a decoder's first pass over this audio recognises it differently (and at
  // a different cost) from later passes. With one decoder per side, reused run after run, both sides have
  // the same history; a pool would hand every socket stream a decoder that never heard this audio.
  if (has('rtf') || has('finalize')) {
    const single = await startServer(1)
    let engine: Engine | undefined
    try {
      servers.push({ role: 'rtf, finalize', ready: single.ready })
      log(`speech: earmark on ${single.ready.earmarkUrl} (capacity 1) against the engine alone`)
      engine = await createBaselineEngine()
      if (has('rtf')) rtfRuns = await measureRtf(engine, single, corpus, settings)
      if (has('finalize')) finalize = await measureFinalize(engine, single.ready, corpus, settings)
    } finally {
      await engine?.close()
      await stopChild(single.child)
    }
  }

  // Concurrency and connections: a pool large enough for the sweep, so admission control never refuses.
  if (has('sweep') || has('connect')) {
    const pool = await startServer(settings.capacity)
    try {
      servers.push({ role: 'sweep, connect', ready: pool.ready })
      log(
        `speech: earmark on ${pool.ready.earmarkUrl} (capacity ${pool.ready.config.capacity}), ` +
          `bare ws on ${pool.ready.bareWsUrl}`,
      )
      if (has('sweep')) sweep = await measureSweep(pool, corpus, settings)
      if (has('connect')) connects = await measureConnect(pool.ready, settings)
    } finally {
      await stopChild(pool.child)
    }
  }
  // Word error rate, REST against live, on the held-apart set: a pool of two, two requests at a time.
  let wer: WerReport | undefined
  if (has('wer')) {
    const pair = await startServer(2)
    try {
      servers.push({ role: 'wer', ready: pair.ready })
      wer = await runWerPart({
        url: pair.ready.earmarkUrl,
        wsUrl: pair.ready.earmarkWsUrl,
        key: pair.ready.apiKey,
      })
    } finally {
      await stopChild(pair.child)
    }
  }
  load.push(loadavg())

  // ---- figures
  const machine = machineInfo()
  const rtf = rtfRuns.length ? summarizeRtf(rtfRuns) : undefined
  const sustained = (() => {
    let best = 0
    for (const s of sweep) {
      if (s.resultLag.p95 < settings.lagLimitMs) best = s.n
      else break
    }
    return best
  })()
  const single = sweep.find((s) => s.n === 1)
  const fin = finalize
    ? { socket: spread(finalize.socketMs), engine: spread(finalize.engineMs), short: finalize.short }
    : undefined
  const conn = connects
    ? {
        bare: spread(connects.bare),
        token: spread(connects.token),
        bearer: spread(connects.bearer),
      }
    : undefined

  const out = process.stdout
  out.write('\nEarmark speech benchmark\n')
  out.write(
    `machine: ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, ${machine.os}; ` +
      `load average ${load[0]?.map(f2).join(' ')} at start, ${load[1]?.map(f2).join(' ')} at end\n` +
      `audio: ${corpus.utterances.length} flite sentences (slt/rms) with pauses, ${f1(corpus.seconds)} s, ` +
      'sent as 16 kHz linear16 in 100 ms chunks\n' +
      `server: a child process (createEarmark, EARMARK_LOG_LEVEL=warn, EARMARK_ACCESS_LOG=false, ` +
      `UV_THREADPOOL_SIZE=${settings.uvThreadpoolSize}) with ` +
      `${servers.map((x) => `EARMARK_CAPACITY=${x.ready.config.capacity} for ${x.role}`).join(', then one ')}; ` +
      'the clients (ws) and the engine baseline (capacity 1) run here\n\n',
  )

  const checks: { name: string; met: boolean }[] = []
  const rows: string[][] = [['figure', 'value', 'baseline', 'ratio', 'target', 'verdict']]
  if (rtf) {
    const { off, on } = rtf
    const met = off.ratio <= TARGETS.overheadRatio
    checks.push({ name: 'socket overhead', met })
    rows.push([
      `1. RTF, interim_results off (median of ${settings.rounds})`,
      `socket ${f3(off.socketRtf)}`,
      `engine ${f3(off.engineRtf)}`,
      `${f2(off.ratio)}x`,
      `<= ${TARGETS.overheadRatio}x`,
      verdict(met),
    ])
    rows.push([
      `   RTF, interim_results on (median of ${settings.rounds})`,
      `socket ${f3(on.socketRtf)}`,
      `engine ${f3(on.engineRtf)}`,
      `${f2(on.ratio)}x`,
      `(<= ${TARGETS.overheadRatio}x)`,
      verdict(on.ratio <= TARGETS.overheadRatio),
    ])
    rows.push([
      '   CPU ms per audio s, interim off / on',
      `${f0(off.socketCpuMsPerAudioSecond)} / ${f0(on.socketCpuMsPerAudioSecond)}`,
      `${f0(off.engineCpuMsPerAudioSecond)} / ${f0(on.engineCpuMsPerAudioSecond)}`,
      `${f2(off.socketCpuMsPerAudioSecond / off.engineCpuMsPerAudioSecond)}x / ${f2(on.socketCpuMsPerAudioSecond / on.engineCpuMsPerAudioSecond)}x`,
      '-',
      '',
    ])
  }
  if (sweep.length) {
    rows.push([
      `2. streams sustained (result lag p95 < ${settings.lagLimitMs} ms)`,
      `N = ${sustained} of ${settings.sweep.join(',')}`,
      auto ? `auto capacity ${auto.capacity}` : '-',
      '-',
      '-',
      auto ? `auto ${auto.capacity} ${auto.capacity <= sustained ? '<=' : '>'} N ${sustained}` : '',
    ])
  }
  if (single) {
    const met = single.interimLag.p50 <= TARGETS.interimP50Ms
    checks.push({ name: 'interim latency', met })
    rows.push([
      '3. interim latency, 1 stream, p50 / p95 ms',
      `${f0(single.interimLag.p50)} / ${f0(single.interimLag.p95)}`,
      '-',
      '-',
      `p50 <= ${TARGETS.interimP50Ms}`,
      verdict(met),
    ])
  }
  if (fin) {
    const met = fin.socket.p50 <= TARGETS.finalizeP50Ms
    checks.push({ name: 'finalize', met })
    rows.push([
      `4. Finalize -> final, p50 / p95 / max ms (${fin.socket.n})`,
      `${f0(fin.socket.p50)} / ${f0(fin.socket.p95)} / ${f0(fin.socket.max)}`,
      `engine ${f0(fin.engine.p50)} / ${f0(fin.engine.p95)} / ${f0(fin.engine.max)}`,
      `${f2(fin.socket.p50 / fin.engine.p50)}x`,
      `p50 <= ${TARGETS.finalizeP50Ms}`,
      verdict(met),
    ])
  }
  if (conn) {
    for (const side of ['token', 'bearer'] as const) {
      rows.push([
        `5. connect + auth, ${side === 'token' ? 'Token key' : 'Bearer grant'}, p50 / p95 ms (${conn[side].n})`,
        `${f2(conn[side].p50)} / ${f2(conn[side].p95)}`,
        `bare ws ${f2(conn.bare.p50)} / ${f2(conn.bare.p95)}`,
        `${f2(conn[side].p50 / conn.bare.p50)}x`,
        '-',
        '',
      ])
    }
  }
  out.write(`${table(rows)}\n\n`)

  if (sweep.length) {
    const sweepRows = [
      [
        'N',
        'result lag p50',
        'p90',
        'p95',
        'p99',
        'max',
        'results',
        'interim p50',
        'interim p95',
        'coverage p50',
        'coverage p95',
        'server CPU',
        'clients',
        'others',
        'steal',
        'WER',
        `p95 < ${settings.lagLimitMs}`,
      ],
    ]
    for (const s of sweep) {
      sweepRows.push([
        String(s.n),
        f0(s.resultLag.p50),
        f0(s.resultLag.p90),
        f0(s.resultLag.p95),
        f0(s.resultLag.p99),
        f0(s.resultLag.max),
        String(s.resultLag.n),
        f0(s.interimLag.p50),
        f0(s.interimLag.p95),
        f0(s.coverageLag.p50),
        f0(s.coverageLag.p95),
        `${f0(s.serverCpuPercent)} %`,
        `${f0(s.clientCpuPercent)} %`,
        `${f0(s.othersPercent)} %`,
        `${f0(s.machineStealPercent)} %`,
        pct(s.werMedian),
        s.resultLag.p95 < settings.lagLimitMs ? 'yes' : 'no',
      ])
    }
    out.write(
      `concurrency sweep (ms; each stream up to ${f1(settings.sweepSeconds)} s of whole sentences, paced in real time, interim_results=true):\n`,
    )
    out.write(`${table(sweepRows)}\n`)
    out.write(
      "(result lag: for each chunk at which a Results message ends, from that chunk's send to the message; " +
        'coverage: every chunk to the first Results covering its end, pauses included; ' +
        'CPU in % of one core: server = the Earmark process, clients = this process, others = every other ' +
        "process on the machine (other people's work), steal = time the hypervisor gave to other guests)\n",
    )
    const skipped = settings.sweep.filter((n) => !sweep.some((s) => s.n === n))
    if (skipped.length > 0) {
      out.write(
        `not run: N = ${skipped.join(', ')} (a smaller N already lagged >= ${settings.giveUpMs} ms at p95)\n`,
      )
    }
    const busy = sweep.filter((s) => s.othersPercent > 50)
    if (busy.length > 0) {
      out.write(
        `warning: other processes used more than half a CPU during N = ${busy.map((s) => s.n).join(', ')} ` +
          '(the "others" column): those lags say more about the machine than about Earmark; rerun when it is quiet\n',
      )
    }
    out.write('\n')
  }
  if (rtf) {
    out.write(
      `RTF per round (socket / engine ratio), interim off: ${rtf.off.roundRatios.map(f2).join(', ')}; ` +
        `interim on: ${rtf.on.roundRatios.map(f2).join(', ')}; WER socket ${pct(rtf.off.socketWer)}, ` +
        `engine ${pct(rtf.off.engineWer)}; other processes used ${f0(rtf.off.othersPercent)} / ` +
        `${f0(rtf.on.othersPercent)} % of a CPU (median, off / on runs)\n`,
    )
  }
  if (auto) {
    out.write(
      `admission control: EARMARK_CAPACITY=auto measured RTF ${auto.realTimeFactor ?? '?'} on ${WARMUP_SPEECH} ` +
        `(real read speech) and admits ${auto.capacity} streams on ${machine.nproc} CPUs\n`,
    )
  }
  if (fin) {
    out.write(
      `finalize: ${fin.short} of ${fin.socket.n} from_finalize finals ended before the chunk sent just before ` +
        'the Finalize (0: every frame sent before Finalize was in its final)\n',
    )
  }

  mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
  const report = {
    benchmark: 'speech',
    date: new Date().toISOString(),
    machine,
    load_average: { start: load[0], end: load[1] },
    settings: { ...settings, parts, earmark: servers.map((x) => ({ role: x.role, ...x.ready.config })) },
    audio: {
      seconds: corpus.seconds,
      utterances: corpus.utterances,
      chunk_ms: 100,
    },
    targets: TARGETS,
    rtf: rtf ? { ...rtf, runs: rtfRuns } : null,
    sweep: sweep.length ? { lag_limit_ms: settings.lagLimitMs, sustained_n: sustained, steps: sweep } : null,
    interim_single_stream: single ? { lag: single.interimLag, all_results: single.resultLag } : null,
    finalize: fin ? { ...fin, socket_ms: finalize?.socketMs, engine_ms: finalize?.engineMs } : null,
    connect: conn ? { ...conn, samples: connects } : null,
    auto_capacity: auto ?? null,
    wer: wer ?? null,
    checks,
    seconds_total: (Date.now() - started) / 1000,
  }
  writeFileSync(OUTPUT, `${JSON.stringify(report, null, 2)}\n`)
  for (const c of checks) out.write(`target ${c.name}: ${verdict(c.met)}\n`)
  out.write(`\nresults: ${OUTPUT} (${report.seconds_total.toFixed(0)} s in all)\n`)
  return { allMet: checks.every((c) => c.met) }
}
