// Keyword boosting's cost on one real PocketSphinx decoder (docs/speech.md "Keywords"):
//   node --import tsx bench/keywords.ts
// For each way of boosting (none; in place, every word known to the base search, two sets taking turns; a
// separate search, some word added to the dictionary) it prints the time of the first switch to the keyword
// set (building), of the first switch in later rounds (the in-place sets replace each other's keyword
// model; the others are cached) and of a second switch right after (cached); the decoding CPU per second of
// audio and its ratio to no keywords, measured in the same run on the same audio; and the resident memory
// the decoder gained. BENCH_KEYWORD_ROUNDS (default 3).
import { readFileSync } from 'node:fs'
import type { KeywordBoost } from '../src/engines/engine.js'
import { createPocketsphinxDecoder } from '../src/engines/pocketsphinx/pocketsphinx-decoder.js'
import { transcribeWithDecoder } from '../src/engines/pocketsphinx/pocketsphinx-transcribe.js'

const LIBRIVOX = '/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav'
const ROUNDS = Number(process.env.BENCH_KEYWORD_ROUNDS ?? 3)

const SETS: ReadonlyArray<{ name: string; keywords: KeywordBoost[] }> = [
  { name: 'none', keywords: [] },
  {
    name: 'in place',
    keywords: ['siobhan:5', 'jenkins', 'nvidia:2', 'kafka', 'machine learning'].map(parse),
  },
  {
    // The two in-place sets take turns: from the second round on, each first switch replaces the other.
    name: 'in place, another set',
    keywords: ['jenkins:3', 'kafka:3', 'london'].map(parse),
  },
  {
    name: 'separate search',
    keywords: ['kubernetes:10', 'grafana:5', 'siobhan:2', 'redis:5', 'terraform', 'ansible jobs'].map(parse),
  },
]

function parse(value: string): KeywordBoost {
  const [phrase = '', boost = '1'] = value.split(':')
  return { phrase, boost: Number(boost) }
}

/** A canonical 44-byte-header WAV, 16 kHz mono s16 (pocketsphinx-testdata's LibriVox clips). */
function wavPcm(path: string): Int16Array {
  const body = readFileSync(path).subarray(44)
  const pcm = new Int16Array(body.length >> 1)
  new Uint8Array(pcm.buffer).set(body.subarray(0, pcm.length * 2))
  return pcm
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0
const rssMb = () => process.memoryUsage().rss / 1e6

async function main(): Promise<void> {
  const pcm = wavPcm(LIBRIVOX)
  const seconds = pcm.length / 16_000
  const decoder = await createPocketsphinxDecoder()
  const options = { endpointingMs: 10 as const, maxUtteranceMs: 12_000, sliceSamples: 1600 }
  const rows = new Map(
    SETS.map((s) => [s.name, { build: [] as number[], cached: [] as number[], cpu: [] as number[] }]),
  )
  const rssStart = rssMb()
  for (let round = 0; round < ROUNDS; round++) {
    for (const set of SETS) {
      const row = rows.get(set.name)
      if (!row) continue
      let at = performance.now()
      await decoder.startStream(set.keywords)
      row.build.push(performance.now() - at)
      at = performance.now()
      await decoder.startStream(set.keywords)
      row.cached.push(performance.now() - at)
      const cpu = process.cpuUsage()
      await transcribeWithDecoder(decoder, pcm, { ...options, keywords: set.keywords })
      const used = process.cpuUsage(cpu)
      row.cpu.push((used.user + used.system) / 1e6 / seconds)
    }
  }
  const base = median(rows.get('none')?.cpu ?? [])
  console.log(`keyword boosting, one decoder, ${seconds.toFixed(1)} s of read speech, ${ROUNDS} rounds`)
  console.log(
    '| keywords | first switch (build) | first switch, later rounds (median) | again (cached, median) | ' +
      'CPU s per audio s (median) | vs none |',
  )
  console.log('|---|---|---|---|---|---|')
  for (const [name, row] of rows) {
    const cpu = median(row.cpu)
    console.log(
      `| ${name} | ${(row.build[0] ?? 0).toFixed(0)} ms | ${median(row.build.slice(1)).toFixed(1)} ms | ` +
        `${median(row.cached).toFixed(1)} ms | ` +
        `${cpu.toFixed(3)} | ${(cpu / base).toFixed(2)}x |`,
    )
  }
  console.log(`resident memory gained by the decoder's keyword models: ${(rssMb() - rssStart).toFixed(0)} MB`)
  await decoder.close()
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
