// The memory benchmark of `npm run bench` (BENCH_ONLY=memory): the Earmark server's resident memory (RSS,
// read from /proc/<pid>/status every 50 ms) while pre-recorded uploads stream in, against its own idle RSS
// measured in the same run. Earmark runs alone in a child process (bench/memory-server.ts); the clients run
// here and generate their uploads on the fly: one short MP3 clip (MP3 frames can be concatenated) written
// again and again into the request body with back-pressure, so no upload is ever whole in any memory.
//
// Phases: a warm-up request (the whole path once: spool, ffmpeg, decoder); idle RSS; one 500 MB upload;
// four concurrent 100 MB uploads. Every upload is longer than EARMARK_MAX_AUDIO_SECONDS, so after the
// upload the server decodes up to that limit and answers 413: what a huge upload costs at most.
//
// Targets: peak growth over idle under 64 MB per concurrent upload; RSS back within 10 % of idle after.
// Env: BENCH_MEMORY_ROUNDS (1; medians over rounds), BENCH_MEMORY_BIG_MB (500), BENCH_MEMORY_SMALL_MB (100),
// BENCH_MEMORY_CONCURRENT (4), BENCH_MEMORY_AUDIO_SECONDS (120: the server's EARMARK_MAX_AUDIO_SECONDS),
// BENCH_MEMORY_SETTLE_MS (5000: quiet time before the "after" reading).
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { ROOT, startChild, stopChild } from './child.js'
import { isMemoryReadyMessage, type MemoryReadyMessage } from './protocol.js'
import { envNumber, log, machineInfo, table } from './report.js'
import { WARMUP_SPEECH } from './speech-engine.js'
import { median } from './stats.js'

const OUTPUT = join(ROOT, 'artifacts', 'bench-memory.json')
const MB = 1024 * 1024

const TARGETS = {
  /** (peak RSS - idle RSS) / concurrent uploads, MB. */
  growthPerUploadMb: 64,
  /** RSS after / idle RSS. */
  afterRatio: 1.1,
} as const

function readSettings() {
  return {
    rounds: Math.round(envNumber('BENCH_MEMORY_ROUNDS', 1, 1)),
    bigMb: envNumber('BENCH_MEMORY_BIG_MB', 500, 1),
    smallMb: envNumber('BENCH_MEMORY_SMALL_MB', 100, 1),
    concurrent: Math.round(envNumber('BENCH_MEMORY_CONCURRENT', 4, 1)),
    audioSeconds: Math.round(envNumber('BENCH_MEMORY_AUDIO_SECONDS', 120, 1)),
    settleMs: envNumber('BENCH_MEMORY_SETTLE_MS', 5000, 0),
  }
}

type Settings = ReturnType<typeof readSettings>

/** About a minute of speech as 32 kbit/s MP3 (no ID3 tag, no Xing frame: pure frames, safe to repeat). */
async function mp3Clip(): Promise<Buffer> {
  const input = existsSync(WARMUP_SPEECH)
    ? ['-f', 's16le', '-ar', '16000', '-ac', '1', '-stream_loop', '19', '-i', WARMUP_SPEECH]
    : ['-f', 'lavfi', '-i', 'sine=frequency=300:duration=60']
  const { stdout } = await promisify(execFile)(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      ...input,
      '-ac',
      '1',
      '-ar',
      '16000',
      '-c:a',
      'libmp3lame',
      '-b:a',
      '32k',
      '-id3v2_version',
      '0',
      '-write_xing',
      '0',
      '-f',
      'mp3',
      'pipe:1',
    ],
    { encoding: 'buffer', maxBuffer: 64 * MB },
  )
  return stdout
}

/** RSS of a process, bytes (VmRSS of /proc/<pid>/status); NaN once it is gone. */
function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : Number.NaN
  } catch {
    return Number.NaN
  }
}

/** Summed RSS of the processes whose parent is `pid` (the server's ffmpeg decoders), bytes. */
function childrenRss(pid: number): number {
  let total = 0
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue
    }
    // pid (comm) state ppid ...
    if (Number(/^\d+ \(.*\) \S+ (\d+)/.exec(stat)?.[1]) !== pid) continue
    const rss = rssOf(Number(entry))
    if (Number.isFinite(rss)) total += rss
  }
  return total
}

/** Reads RSS every `everyMs` until stopped; `withChildren` also keeps the peak of server + its children. */
function sampleRss(pid: number, everyMs = 50, withChildren = false) {
  const samples: number[] = []
  let peakWithChildren = 0
  const sample = () => {
    const rss = rssOf(pid)
    if (!Number.isFinite(rss)) return
    samples.push(rss)
    if (withChildren) peakWithChildren = Math.max(peakWithChildren, rss + childrenRss(pid))
  }
  const timer = setInterval(sample, everyMs)
  sample()
  return {
    stop() {
      clearInterval(timer)
      sample()
      return { peak: Math.max(...samples), median: median(samples), peakWithChildren, n: samples.length }
    },
  }
}

/** The median RSS over `ms` of quiet. */
async function quietRss(pid: number, ms = 2000): Promise<number> {
  const sampler = sampleRss(pid, 100)
  await sleep(ms)
  return sampler.stop().median
}

interface UploadOutcome {
  status: number
  errCode: string | undefined
  seconds: number
}

/**
 * POSTs `totalBytes` of `clip` repeated, as one streamed body with a Content-Length: each write waits for
 * the socket to drain, so this process never holds more than a clip and the socket's buffer.
 */
function upload(ready: MemoryReadyMessage, totalBytes: number, clip: Buffer): Promise<UploadOutcome> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    let answered = false
    const req = request(`${ready.earmarkUrl}/v1/listen`, {
      method: 'POST',
      headers: {
        authorization: `Token ${ready.apiKey}`,
        'content-type': 'audio/mpeg',
        'content-length': totalBytes,
      },
    })
    req.on('response', (res) => {
      answered = true
      const parts: Buffer[] = []
      res.on('data', (d: Buffer) => parts.push(d))
      res.on('end', () => {
        let errCode: string | undefined
        try {
          errCode = (JSON.parse(Buffer.concat(parts).toString('utf8')) as { err_code?: string }).err_code
        } catch {
          errCode = undefined
        }
        resolve({ status: res.statusCode ?? 0, errCode, seconds: (performance.now() - started) / 1000 })
      })
    })
    req.on('error', (err) => {
      if (!answered) reject(err)
    })
    void (async () => {
      let sent = 0
      while (sent < totalBytes && !answered && !req.destroyed) {
        const piece = clip.subarray(0, Math.min(clip.length, totalBytes - sent))
        sent += piece.length
        if (!req.write(piece)) await new Promise((r) => req.once('drain', r))
      }
      req.end()
    })()
  })
}

interface Phase {
  uploads: number
  mbEach: number
  /** RSS just before this phase (the previous phase's "after" for the second one). */
  before: number
  peak: number
  /** Peak of the server's RSS plus its ffmpeg children's, sampled together. */
  peakWithChildren: number
  after: number
  seconds: number
  outcomes: UploadOutcome[]
  spoolFilesLeft: number
}

async function runPhase(
  pid: number,
  ready: MemoryReadyMessage,
  clip: Buffer,
  uploads: number,
  mbEach: number,
  settings: Settings,
): Promise<Phase> {
  const before = await quietRss(pid)
  log(`memory: ${uploads} x ${mbEach} MB (RSS before ${(before / MB).toFixed(1)} MB)`)
  const sampler = sampleRss(pid, 50, true)
  const started = performance.now()
  const outcomes = await Promise.all(Array.from({ length: uploads }, () => upload(ready, mbEach * MB, clip)))
  const seconds = (performance.now() - started) / 1000
  const { peak, peakWithChildren } = sampler.stop()
  await sleep(settings.settleMs)
  const after = await quietRss(pid)
  const spoolFilesLeft = existsSync(ready.uploadDir) ? readdirSync(ready.uploadDir).length : 0
  log(
    `memory: peak ${(peak / MB).toFixed(1)} MB, after ${(after / MB).toFixed(1)} MB, ` +
      `answers ${outcomes.map((o) => `${o.status} ${o.errCode ?? ''}`.trim()).join(', ')} in ${seconds.toFixed(1)} s`,
  )
  return { uploads, mbEach, before, peak, peakWithChildren, after, seconds, outcomes, spoolFilesLeft }
}

export async function runMemoryBenchmark(
  options: { cpuProfDir?: string } = {},
): Promise<{ allMet: boolean }> {
  const settings = readSettings()
  const startedAt = Date.now()
  const clip = await mp3Clip()
  log(`memory: upload clip ${(clip.length / 1024).toFixed(0)} KiB of MP3, repeated`)
  const server = await startChild('memory-server.ts', isMemoryReadyMessage, {
    env: { EARMARK_MAX_AUDIO_SECONDS: String(settings.audioSeconds) },
    startTimeoutMs: 120_000,
    ...(options.cpuProfDir ? { cpuProfDir: options.cpuProfDir } : {}),
  })
  const pid = server.child.pid ?? 0
  const ready = server.ready
  /** Per round: the idle RSS (after the warm-up, before any big upload) both phases are compared with. */
  const rounds: { idle: number; big: Phase; concurrent: Phase; startRss: number }[] = []
  try {
    const startRss = rssOf(pid)
    // Warm-up: the whole path once (spool, ffmpeg, engine), about 30 s of audio.
    const warm = await upload(ready, Math.min(clip.length, 120 * 1024), clip)
    log(`memory: warm-up answered ${warm.status}`)
    for (let round = 1; round <= settings.rounds; round++) {
      const big = await runPhase(pid, ready, clip, 1, settings.bigMb, settings)
      const concurrent = await runPhase(pid, ready, clip, settings.concurrent, settings.smallMb, settings)
      rounds.push({ idle: rounds[0]?.idle ?? big.before, big, concurrent, startRss })
    }
  } finally {
    await stopChild(server.child)
  }

  type Round = (typeof rounds)[number]
  const med = (f: (r: Round) => number) => median(rounds.map(f))
  const phaseFigures = (phase: (r: Round) => Phase) => ({
    idleMb: med((r) => r.idle) / MB,
    peakMb: med((r) => phase(r).peak) / MB,
    peakWithFfmpegMb: med((r) => phase(r).peakWithChildren) / MB,
    afterMb: med((r) => phase(r).after) / MB,
    growthMb: med((r) => (phase(r).peak - r.idle) / phase(r).uploads / MB),
    afterRatio: med((r) => phase(r).after / r.idle),
    seconds: med((r) => phase(r).seconds),
  })
  const figures = {
    startMb: med((r) => r.startRss) / MB,
    big: phaseFigures((r) => r.big),
    concurrent: phaseFigures((r) => r.concurrent),
  }
  const checks = [
    { name: `${settings.bigMb} MB upload: growth`, met: figures.big.growthMb < TARGETS.growthPerUploadMb },
    { name: `${settings.bigMb} MB upload: after / idle`, met: figures.big.afterRatio <= TARGETS.afterRatio },
    {
      name: `${settings.concurrent} x ${settings.smallMb} MB: growth per upload`,
      met: figures.concurrent.growthMb < TARGETS.growthPerUploadMb,
    },
    {
      name: `${settings.concurrent} x ${settings.smallMb} MB: after / idle`,
      met: figures.concurrent.afterRatio <= TARGETS.afterRatio,
    },
  ]
  const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET')
  const f1 = (n: number) => n.toFixed(1)
  const machine = machineInfo()
  const out = process.stdout
  out.write('\nEarmark memory benchmark (pre-recorded uploads)\n')
  out.write(
    `machine: ${machine.nproc} CPUs (${machine.cpu}), node ${machine.node}, ${machine.os}\n` +
      `server: a child process (createEarmark, capacity ${ready.config.capacity}, queue ${ready.config.listenQueue}, ` +
      `EARMARK_MAX_AUDIO_SECONDS=${ready.config.maxAudioSeconds}); uploads: a ${(clip.length / 1024).toFixed(0)} KiB ` +
      `MP3 clip repeated, streamed with a Content-Length; RSS of the server process every 50 ms; ` +
      `${settings.rounds} round(s), medians\n\n`,
  )
  const rows = [
    [
      'figure',
      'idle MB',
      'peak MB',
      'after MB',
      'growth / upload MB',
      'after / idle',
      'peak + ffmpeg MB',
      'seconds',
    ],
  ]
  for (const [label, p] of [
    [`1 x ${settings.bigMb} MB`, figures.big],
    [`${settings.concurrent} x ${settings.smallMb} MB at once`, figures.concurrent],
  ] as const) {
    rows.push([
      label,
      f1(p.idleMb),
      f1(p.peakMb),
      f1(p.afterMb),
      f1(p.growthMb),
      `${p.afterRatio.toFixed(3)}`,
      f1(p.peakWithFfmpegMb),
      f1(p.seconds),
    ])
  }
  out.write(`${table(rows)}\n\n`)
  const last = rounds.at(-1)
  if (last) {
    const answers = [...last.big.outcomes, ...last.concurrent.outcomes]
    out.write(
      `answers (last round): ${answers.map((o) => `${o.status} ${o.errCode ?? ''}`.trim()).join(', ')}; ` +
        `spool files left: ${last.big.spoolFilesLeft + last.concurrent.spoolFilesLeft}; ` +
        `server RSS right after start ${f1(figures.startMb)} MB\n`,
    )
  }
  for (const c of checks) {
    out.write(
      `target ${c.name} (< ${TARGETS.growthPerUploadMb} MB growth, <= ${TARGETS.afterRatio} after/idle): ${verdict(c.met)}\n`,
    )
  }
  mkdirSync(join(ROOT, 'artifacts'), { recursive: true })
  const report = {
    benchmark: 'memory',
    date: new Date().toISOString(),
    machine,
    settings,
    server: ready.config,
    targets: TARGETS,
    figures,
    rounds,
    checks,
    seconds_total: (Date.now() - startedAt) / 1000,
  }
  writeFileSync(OUTPUT, `${JSON.stringify(report, null, 2)}\n`)
  out.write(`\nresults: ${OUTPUT} (${report.seconds_total.toFixed(0)} s in all)\n`)
  return { allMet: checks.every((c) => c.met) }
}
