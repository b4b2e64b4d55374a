// The engine alone, in this process: the baseline the live socket is compared with. Same engine factory,
// same warm-up speech and the same 100 ms chunks as the socket clients.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { createEngine, type Engine, type EngineStream, type StreamSink } from '../src/engines/index.js'
import { WARMUP_SPEECH, warmupSpeech } from '../src/engines/pocketsphinx/warmup-speech.js'
import { chunksOf } from './speech-audio.js'

/** What src/main.ts warms every decoder up with (Debian's pocketsphinx-testdata). */
export { WARMUP_SPEECH, warmupSpeech }

/** A one-decoder PocketSphinx engine, built like the server's (createEngine with the same warm-up). */
export function createBaselineEngine(): Promise<Engine> {
  const warmup = warmupSpeech()
  return createEngine('pocketsphinx', { capacity: 1, ...(warmup ? { warmup } : {}) })
}

interface Collected {
  finals: string[]
  /** Resolves with the time the next final arrives. */
  nextFinal(): Promise<number>
}

async function open(engine: Engine, interimResults: boolean): Promise<{ stream: EngineStream } & Collected> {
  const finals: string[] = []
  let waiting: ((at: number) => void) | undefined
  let failure: Error | undefined
  const sink: StreamSink = {
    onInterim: () => {},
    onFinal: (h) => {
      const at = performance.now()
      finals.push(h.transcript)
      waiting?.(at)
      waiting = undefined
    },
    onSpeechStarted: () => {},
    onError: (err) => {
      failure = err
    },
  }
  // The options the live socket asks for (src/ws/listen-session.ts), with endpointing at Deepgram's default.
  const stream = await engine.openStream({ language: 'en', interimResults, endpointingMs: 10 }, sink)
  return {
    stream,
    finals,
    nextFinal: () => {
      if (failure) return Promise.reject(failure)
      return new Promise((resolve) => {
        waiting = resolve
      })
    },
  }
}

/**
 * Pushes `pcm` into a new engine stream in 100 ms chunks as fast as it goes and closes it: wall time from
 * the first push to the close, ms, and the transcript (finals joined).
 */
export async function engineAsFastAsPossible(
  engine: Engine,
  pcm: Int16Array,
  interimResults: boolean,
): Promise<{ wallMs: number; cpuMs: number; transcript: string }> {
  const { stream, finals } = await open(engine, interimResults)
  const cpu = process.cpuUsage()
  const started = performance.now()
  for (const chunk of chunksOf(pcm)) stream.push(chunk)
  await stream.close()
  const wallMs = performance.now() - started
  const used = process.cpuUsage(cpu)
  return { wallMs, cpuMs: (used.user + used.system) / 1000, transcript: finals.join(' ').trim() }
}

/**
 * Finalize on the engine alone: for each chunk index in `finalizeAfter`, pushes the audio before that chunk
 * and waits until the engine has decoded it all (no backlog, as on a socket paced in real time), then times
 * pushing that chunk plus finalize() until the final is delivered. The rest of the audio follows, then close.
 */
export async function engineFinalizeTimes(
  engine: Engine,
  pcm: Int16Array,
  finalizeAfter: readonly number[],
): Promise<number[]> {
  const { stream, nextFinal } = await open(engine, true)
  const chunks = chunksOf(pcm)
  const times: number[] = []
  const marks = new Set(finalizeAfter)
  try {
    for (const [k, chunk] of chunks.entries()) {
      if (!marks.has(k)) {
        stream.push(chunk)
        continue
      }
      // As on a paced socket: what came before is decoded, this chunk and the Finalize arrive together.
      while (stream.backlogMs > 0) await sleep(2)
      // Finals from endpoints in the audio decoded so far were delivered already; the next one is ours.
      const started = performance.now()
      const delivered = nextFinal()
      stream.push(chunk)
      await stream.finalize()
      times.push((await delivered) - started)
    }
  } finally {
    await stream.close()
  }
  return times
}
