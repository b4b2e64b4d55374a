// Word error rate of the held-apart set (test/fixtures/wer-set.ts) through a real server, over both
// transports: `POST /v1/listen` with a WAV, and the live socket with linear16 in 100 ms chunks, paced in real
// time or as fast as the server takes them. Shared by bench/speech-wer.ts and test/engines/live-vs-rest-wer.test.ts.
import type { WerItem } from '../fixtures/wer-set.js'
import { pcmBytes, postListen, prerecordedTranscript, streamFrames, wav } from './listen-e2e.js'
import { wordErrors } from './speech.js'

/** How the audio reaches the server. */
export type WerTransport = 'rest' | 'live-paced' | 'live-fast'

export const WER_TRANSPORTS: readonly WerTransport[] = ['rest', 'live-paced', 'live-fast']

/** Where to send it: a server's base URLs and a key with `usage:write`. */
export interface WerTarget {
  url: string
  wsUrl: string
  key: string
}

export interface WerItemResult {
  id: string
  transcript: string
  errors: number
  words: number
}

export interface WerRun {
  transport: WerTransport
  errors: number
  words: number
  /** errors / words */
  wer: number
  items: WerItemResult[]
  /** Wall time of the whole run, ms. */
  wallMs: number
}

/** One item through one transport: the transcript (every final, joined). */
export async function transcribeItem(
  target: WerTarget,
  item: WerItem,
  transport: WerTransport,
): Promise<string> {
  const authorization = `Token ${target.key}`
  if (transport === 'rest') {
    const res = await postListen(target.url, authorization, wav(item.pcm, item.sampleRate))
    if (res.status !== 200)
      throw new Error(`POST /v1/listen (${item.id}): ${res.status} ${JSON.stringify(res.body)}`)
    return prerecordedTranscript(res.body)
  }
  const step = item.sampleRate / 10
  const frames: Uint8Array[] = []
  for (let at = 0; at < item.pcm.length; at += step) frames.push(pcmBytes(item.pcm.subarray(at, at + step)))
  const outcome = await streamFrames(
    target.wsUrl,
    { headers: { authorization } },
    `encoding=linear16&sample_rate=${item.sampleRate}&interim_results=true`,
    frames,
    transport === 'live-paced' ? 100 : 0,
  )
  if (outcome.close?.code !== 1000) {
    throw new Error(`live ${item.id}: closed ${outcome.close?.code} ${outcome.close?.reason ?? ''}`)
  }
  return outcome.transcript
}

/**
 * Every item through `transport`, `concurrency` at a time (keep it within the server's capacity: a live
 * stream beyond it is refused). WER is pooled: all errors over all reference words.
 */
export async function measureWer(
  target: WerTarget,
  items: readonly WerItem[],
  transport: WerTransport,
  concurrency = 1,
): Promise<WerRun> {
  const started = performance.now()
  const results: WerItemResult[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) {
      const item = items[i]
      if (!item) continue
      const transcript = await transcribeItem(target, item, transport)
      results[i] = { id: item.id, transcript, ...wordErrors(item.reference, transcript) }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker))
  const errors = results.reduce((n, r) => n + r.errors, 0)
  const words = results.reduce((n, r) => n + r.words, 0)
  return {
    transport,
    errors,
    words,
    wer: words === 0 ? 0 : errors / words,
    items: results,
    wallMs: performance.now() - started,
  }
}
