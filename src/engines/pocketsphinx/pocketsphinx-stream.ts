import type { EngineStream, StreamSink } from '../engine.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'
import { createSegmenter, type SegmenterOptions } from './pocketsphinx-segmenter.js'

export interface PocketsphinxStreamOptions extends SegmenterOptions {
  /** Audio is decoded in slices of at most this many samples (the VAD is read after each). */
  sliceSamples: number
}

type Item = { kind: 'audio'; pcm: Int16Array } | { kind: 'finalize'; done: Deferred } | { kind: 'close' }

interface Deferred {
  promise: Promise<void>
  resolve(): void
  reject(err: Error): void
}

function deferred(): Deferred {
  let resolve = () => {}
  let reject: (err: Error) => void = () => {}
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}

/**
 * Opens a live stream on a decoder the caller has acquired; `release` gets the decoder back after close
 * (`broken` when a native call failed). Audio, finalize and close are handled strictly in push order by one
 * worker, so the sink sees events in audio order and never concurrently.
 */
export async function openPocketsphinxStream(
  decoder: PocketsphinxDecoder,
  options: PocketsphinxStreamOptions,
  sink: StreamSink,
  release: (broken: boolean) => void,
): Promise<EngineStream> {
  const { sampleRate } = decoder.settings
  let failure: Error | undefined

  const reportError = (err: unknown) => {
    try {
      sink.onError(err instanceof Error ? err : new Error(String(err)))
    } catch {
      // A sink that throws from onError has nowhere left to report to.
    }
  }
  /** A throwing sink is the caller's bug: report it, keep decoding. */
  const guard =
    <A extends unknown[]>(fn: (...args: A) => void) =>
    (...args: A) => {
      try {
        fn(...args)
      } catch (err) {
        reportError(err)
      }
    }
  const segmenter = createSegmenter(decoder, options, {
    onInterim: guard((h) => sink.onInterim(h)),
    onFinal: guard((h) => sink.onFinal(h)),
    onSpeechStarted: guard((t) => sink.onSpeechStarted(t)),
  })
  try {
    await segmenter.begin()
  } catch (err) {
    release(true)
    throw err
  }

  const items: Item[] = []
  let pushedSamples = 0
  let queuedSamples = 0
  let inFlightSamples = 0
  let working = false
  let closing: Promise<void> | undefined
  const closed = deferred()

  /**
   * Whether a slice can be decoded now: a whole one is queued, or a Finalize or close follows the audio
   * (which then goes as a shorter slice). Slices therefore fall on a fixed grid of the stream's audio
   * (a new grid after each Finalize), however the client chunks it and however fast the decoder keeps up:
   * the VAD is read and utterances are cut at the same samples every time, so the same audio and messages
   * give the same transcript. The cost: up to one slice (100 ms) of added latency for small chunks.
   */
  const sliceReady = (): boolean => {
    let samples = 0
    for (const item of items) {
      if (item.kind !== 'audio') return true
      samples += item.pcm.length
      if (samples >= options.sliceSamples) return true
    }
    return false
  }

  /** Up to sliceSamples from the audio items at the head of the queue. */
  const takeSlice = (): Int16Array => {
    const parts: Int16Array[] = []
    let need = options.sliceSamples
    while (need > 0) {
      const head = items[0]
      if (head?.kind !== 'audio') break
      if (head.pcm.length <= need) {
        parts.push(head.pcm)
        need -= head.pcm.length
        items.shift()
      } else {
        parts.push(head.pcm.subarray(0, need))
        head.pcm = head.pcm.subarray(need)
        need = 0
      }
    }
    if (parts.length === 1 && parts[0]) return parts[0]
    const slice = new Int16Array(options.sliceSamples - need)
    let offset = 0
    for (const part of parts) {
      slice.set(part, offset)
      offset += part.length
    }
    return slice
  }

  const fail = (err: unknown) => {
    failure ??= err instanceof Error ? err : new Error(String(err))
    reportError(failure)
  }

  /** Last final (if speech is pending), then the decoder goes back to the pool. Never throws. */
  const finish = async () => {
    if (!failure) {
      try {
        await segmenter.flush()
      } catch (err) {
        fail(err)
      }
    }
    release(failure !== undefined)
    closed.resolve()
  }

  const work = async () => {
    if (working) return
    working = true
    for (let item = items[0]; item; item = items[0]) {
      if (item.kind === 'close') {
        items.shift()
        await finish()
        break
      }
      if (failure) {
        // After a native failure nothing more is decoded; queued work is dropped.
        items.shift()
        if (item.kind === 'finalize') item.done.reject(failure)
        else queuedSamples -= item.pcm.length
        continue
      }
      try {
        if (item.kind === 'audio') {
          if (!sliceReady()) break
          const slice = takeSlice()
          queuedSamples -= slice.length
          inFlightSamples = slice.length
          await segmenter.feed(slice)
        } else {
          items.shift()
          await segmenter.finalize()
          item.done.resolve()
        }
      } catch (err) {
        fail(err)
        if (item.kind === 'finalize' && failure) item.done.reject(failure)
      } finally {
        inFlightSamples = 0
      }
    }
    working = false
  }

  return {
    push(pcm) {
      if (closing || failure || pcm.length === 0) return
      // Copied: the caller's buffer may be a view into a pooled socket buffer.
      items.push({ kind: 'audio', pcm: pcm.slice() })
      pushedSamples += pcm.length
      queuedSamples += pcm.length
      void work()
    },
    finalize() {
      if (failure) return Promise.reject(failure)
      if (closing) return Promise.reject(new Error('The stream is closed.'))
      const done = deferred()
      items.push({ kind: 'finalize', done })
      void work()
      return done.promise
    },
    get audioSeconds() {
      return pushedSamples / sampleRate
    },
    get backlogMs() {
      return ((queuedSamples + inFlightSamples) / sampleRate) * 1000
    },
    close() {
      if (!closing) {
        closing = closed.promise
        items.push({ kind: 'close' })
        void work()
      }
      return closing
    },
  }
}
