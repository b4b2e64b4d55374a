// The `speech:wer` part of the speech benchmark (bench/speech.ts): word error rate on the held-apart set
// (test/fixtures/wer-set.ts: 24 sentences × 5 flite voices, kal at 8 kHz, and pocketsphinx-testdata's read
// speech), in two tables:
// - transports: the same audio over POST /v1/listen, live paced in real time (100 ms chunks) and live as
//   fast as the server takes it, through a real server (capacity 2, two requests at a time);
// - settings: the engine alone (one decoder, this process) with the shipped decoder settings and
//   alternatives, WER against CPU time per audio second (the real-time budget: a core holds 1 / that streams).
//
// Env: BENCH_SPEECH_WER_SETTINGS (comma list of the names in SETTINGS; default all), BENCH_SPEECH_WER_TRANSPORTS
// (rest,live-paced,live-fast).
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import {
  createPocketsphinxDecoder,
  type PocketsphinxDecoderOptions,
} from '../src/engines/pocketsphinx/pocketsphinx-decoder.js'
import { transcribeWithDecoder } from '../src/engines/pocketsphinx/pocketsphinx-transcribe.js'
import { buildWerSet, type WerItem } from '../test/fixtures/wer-set.js'
import { wordErrors } from '../test/helpers/speech.js'
import {
  measureWer,
  WER_TRANSPORTS,
  type WerRun,
  type WerTarget,
  type WerTransport,
} from '../test/helpers/wer-eval.js'
import { log, table } from './report.js'

const run = promisify(execFile)

/** Decoder settings compared; `shipped` is what the server runs (pocketsphinx-decoder.ts defaults). */
export const SETTINGS: readonly { name: string; options: PocketsphinxDecoderOptions }[] = [
  { name: 'shipped', options: {} },
  // The model's own -cmninit (goforward.raw's mean) as every stream's baseline instead of SPEECH_CMN_INIT.
  { name: 'model CMN baseline', options: { cmnInit: 'model' } },
  { name: 'maxhmmpf 10000', options: { maxHmmsPerFrame: 10_000 } },
  { name: 'maxhmmpf 2000', options: { maxHmmsPerFrame: 2000 } },
  { name: 'fwdflat no', options: { fwdflat: false } },
  { name: 'pl_window 5', options: { phoneLoopWindow: 5 } },
  { name: 'lw 8', options: { extraArgs: { '-lw': '8' } } },
]

const pct = (n: number) => `${(n * 100).toFixed(1)} %`

/** Per item group (the voice, `librivox`, `cards`): errors / words. */
function byGroup(items: readonly WerItem[], results: readonly { errors: number; words: number }[]) {
  const groups = new Map<string, { errors: number; words: number }>()
  for (const [i, item] of items.entries()) {
    const key = item.id.split('-')[0] ?? item.id
    const g = groups.get(key) ?? { errors: 0, words: 0 }
    g.errors += results[i]?.errors ?? 0
    g.words += results[i]?.words ?? 0
    groups.set(key, g)
  }
  return groups
}

/** An item at 16 kHz, as the server hands it to the engine (ffmpeg resamples other rates). */
async function at16k(item: WerItem): Promise<Int16Array> {
  if (item.sampleRate === 16_000) return item.pcm
  const child = run(
    'ffmpeg',
    [
      '-hide_banner',
      '-loglevel',
      'error',
      '-f',
      's16le',
      '-ar',
      String(item.sampleRate),
      '-ac',
      '1',
      '-i',
      'pipe:0',
    ].concat(['-ac', '1', '-ar', '16000', '-f', 's16le', 'pipe:1']),
    { encoding: 'buffer', maxBuffer: 1 << 30 },
  )
  child.child.stdin?.end(Buffer.from(item.pcm.buffer, item.pcm.byteOffset, item.pcm.byteLength))
  const { stdout } = await child
  const pcm = new Int16Array(stdout.length >> 1)
  new Uint8Array(pcm.buffer).set(stdout.subarray(0, pcm.length * 2))
  return pcm
}

export interface WerSettingsRow {
  name: string
  wer: number
  errors: number
  words: number
  cpuMsPerAudioSecond: number
  groups: Record<string, number>
}

/** The engine alone, one decoder per setting (every item starts from the decoder's fixed baseline), over the whole set. */
async function measureSettings(
  items: readonly WerItem[],
  names: readonly string[],
): Promise<WerSettingsRow[]> {
  const pcms = await Promise.all(items.map(at16k))
  const seconds = pcms.reduce((n, p) => n + p.length / 16_000, 0)
  const rows: WerSettingsRow[] = []
  for (const setting of SETTINGS.filter((s) => names.includes(s.name))) {
    const decoder = await createPocketsphinxDecoder(setting.options)
    const options = { endpointingMs: 10, maxUtteranceMs: 12_000, sliceSamples: 1600 } as const
    try {
      const results: { errors: number; words: number }[] = []
      const cpu = process.cpuUsage()
      for (const [i, item] of items.entries()) {
        const out = await transcribeWithDecoder(decoder, pcms[i] ?? new Int16Array(0), options)
        results.push(wordErrors(item.reference, out.utterances.map((u) => u.transcript).join(' ')))
      }
      const used = process.cpuUsage(cpu)
      const errors = results.reduce((n, r) => n + r.errors, 0)
      const words = results.reduce((n, r) => n + r.words, 0)
      const row: WerSettingsRow = {
        name: setting.name,
        wer: errors / words,
        errors,
        words,
        cpuMsPerAudioSecond: (used.user + used.system) / 1000 / seconds,
        groups: Object.fromEntries([...byGroup(items, results)].map(([k, g]) => [k, g.errors / g.words])),
      }
      rows.push(row)
      log(
        `wer settings ${row.name}: WER ${pct(row.wer)}, ${row.cpuMsPerAudioSecond.toFixed(0)} ms CPU per audio s`,
      )
    } finally {
      await decoder.close()
    }
  }
  return rows
}

export interface WerReport {
  items: number
  audioSeconds: number
  transports: WerRun[]
  settings: WerSettingsRow[]
}

/**
 * Runs the part against a server at `target` (capacity at least 2) and prints both tables to stdout. The
 * transports run first, while the server has the machine to itself.
 */
export async function runWerPart(target: WerTarget): Promise<WerReport> {
  const items = await buildWerSet()
  const audioSeconds = items.reduce((n, i) => n + i.pcm.length / i.sampleRate, 0)
  log(`wer: ${items.length} items, ${audioSeconds.toFixed(0)} s of audio`)
  const transportNames = (process.env.BENCH_SPEECH_WER_TRANSPORTS || WER_TRANSPORTS.join(','))
    .split(',')
    .map((s) => s.trim()) as WerTransport[]
  const settingNames = (process.env.BENCH_SPEECH_WER_SETTINGS || SETTINGS.map((s) => s.name).join(','))
    .split(',')
    .map((s) => s.trim())
  const transports: WerRun[] = []
  for (const transport of WER_TRANSPORTS.filter((t) => transportNames.includes(t))) {
    const measured = await measureWer(target, items, transport, 2)
    transports.push(measured)
    log(
      `wer ${transport}: ${pct(measured.wer)} (${measured.errors}/${measured.words}) in ${(measured.wallMs / 1000).toFixed(0)} s`,
    )
  }
  const settings = await measureSettings(items, settingNames)

  const groupNames = [...byGroup(items, []).keys()]
  const out = process.stdout
  out.write(
    `\nword error rate, held-apart set (${items.length} items, ${audioSeconds.toFixed(0)} s; test/fixtures/wer-set.ts):\n`,
  )
  const rest = transports.find((t) => t.transport === 'rest')
  const rows = [['transport', 'WER', 'errors / words', 'vs REST', 'wall s', ...groupNames]]
  for (const t of transports) {
    const groups = byGroup(items, t.items)
    rows.push([
      t.transport,
      pct(t.wer),
      `${t.errors} / ${t.words}`,
      rest ? `${((t.wer - rest.wer) * 100).toFixed(1)} pt` : '-',
      (t.wallMs / 1000).toFixed(0),
      ...groupNames.map((g) => {
        const v = groups.get(g)
        return v ? pct(v.errors / v.words) : '-'
      }),
    ])
  }
  out.write(`${table(rows)}\n`)
  if (rest) {
    const differing = transports.flatMap((t) =>
      t.items.flatMap((r, i) =>
        r.transcript !== rest.items[i]?.transcript ? [`${t.transport} ${r.id}`] : [],
      ),
    )
    out.write(
      `transcripts that differ from REST: ${differing.length === 0 ? 'none' : differing.join(', ')}\n`,
    )
  }
  if (settings.length > 0) {
    out.write(
      '\ndecoder settings, engine alone (one decoder, 100 ms slices), WER against CPU per audio second:\n',
    )
    const shipped = settings.find((s) => s.name === 'shipped')
    const srows = [['setting', 'WER', 'vs shipped', 'CPU ms / audio s', 'streams per core', ...groupNames]]
    for (const s of settings) {
      srows.push([
        s.name,
        pct(s.wer),
        shipped ? `${((s.wer - shipped.wer) * 100).toFixed(1)} pt` : '-',
        s.cpuMsPerAudioSecond.toFixed(0),
        (1000 / s.cpuMsPerAudioSecond).toFixed(1),
        ...groupNames.map((g) => (s.groups[g] === undefined ? '-' : pct(s.groups[g] ?? 0))),
      ])
    }
    out.write(`${table(srows)}\n`)
  }
  return { items: items.length, audioSeconds, transports, settings }
}
