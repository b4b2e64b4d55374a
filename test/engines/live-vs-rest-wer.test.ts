// Live is as good as one-shot (issue 11, item 4): on the held-apart set (test/fixtures/wer-set.ts), which no
// other test tunes on, the live socket paced in real time must come within one point of word error rate of
// POST /v1/listen on the same audio, through the real server and real PocketSphinx. A subset keeps the run
// near a minute on a quiet machine: two voices (kal at 8 kHz, so both transports resample) and real read speech; the
// benchmark (BENCH_ONLY=speech:wer) runs the whole set.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { buildWerSet, type WerItem } from '../fixtures/wer-set.js'
import { percent } from '../helpers/listen-e2e.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { measureWer, type WerRun, type WerTarget } from '../helpers/wer-eval.js'

let server: LiveServer
let target: WerTarget
let items: WerItem[]

before(async () => {
  ;[server, items] = await Promise.all([
    startLiveServer(),
    buildWerSet({
      voices: ['slt', 'kal'],
      sentences: 7,
      recordings: ['librivox-0880', 'librivox-0930', 'cards-005'],
    }),
  ])
  target = { url: server.url, wsUrl: server.wsUrl, key: server.ownerKey }
})

after(async () => {
  await server?.close()
})

function report(run: WerRun): string {
  return `${run.transport}: ${percent(run.wer)} (${run.errors} errors in ${run.words} words, ${(run.wallMs / 1000).toFixed(0)} s)`
}

test('live speech paced in real time comes within one point of the word error rate of the same audio over REST', {
  timeout: 600_000,
}, async () => {
  // Two at a time: the server's capacity (a third live stream would be refused).
  const rest = await measureWer(target, items, 'rest', 2)
  const live = await measureWer(target, items, 'live-paced', 2)
  process.stdout.write(`# held-apart WER (${items.length} items)\n# ${report(rest)}\n# ${report(live)}\n`)
  for (const [i, item] of items.entries()) {
    const a = rest.items[i]
    const b = live.items[i]
    if (a && b && a.transcript !== b.transcript) {
      process.stdout.write(`# ${item.id} differs\n#   rest: ${a.transcript}\n#   live: ${b.transcript}\n`)
    }
  }
  assert.equal(rest.words, live.words)
  assert.ok(rest.words > 100, `the subset has ${rest.words} reference words`)
  assert.ok(
    live.wer <= rest.wer + 0.01,
    `live ${percent(live.wer)} is more than one point worse than REST ${percent(rest.wer)}`,
  )
  // A sanity bound above what the engine measures on this subset (26.0 % with the speech CMN baseline, 34.1 %
  // before it: 8 kHz kal is hard for it; docs/benchmarks.md, "Word error rate"): a broken resampler or a lost
  // utterance (about 6 points) shows up here even when both sides share it.
  assert.ok(rest.wer < 0.3, `REST WER ${percent(rest.wer)}`)
})
