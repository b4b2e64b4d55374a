import type { AudioDecodeError } from './audio-decode-error.js'

/** Where a decoder is in its life; `ended`, `failed` and `killed` are final. */
export type DecoderState = 'open' | 'ending' | 'ended' | 'failed' | 'killed'

/**
 * The listener half every decoder shares. State changes at once; listeners run on a microtask, so they are
 * never called from inside `write()`, `end()` or `kill()`, and always in order: PCM chunks, then one of
 * end or error. Nothing is delivered once the decoder is killed.
 */
export class DecoderEvents {
  state: DecoderState = 'open'
  private readonly pcmListeners: Array<(pcm: Int16Array) => void> = []
  private readonly endListeners: Array<() => void> = []
  private readonly errorListeners: Array<(err: AudioDecodeError) => void> = []
  private error: AudioDecodeError | null = null

  get settled(): boolean {
    return this.state === 'ended' || this.state === 'failed' || this.state === 'killed'
  }

  onPcm(listener: (pcm: Int16Array) => void): void {
    this.pcmListeners.push(listener)
  }

  onEnd(listener: () => void): void {
    this.endListeners.push(listener)
    if (this.state === 'ended') queueMicrotask(listener)
  }

  onError(listener: (err: AudioDecodeError) => void): void {
    this.errorListeners.push(listener)
    const err = this.error
    if (this.state === 'failed' && err) queueMicrotask(() => listener(err))
  }

  pcm(samples: Int16Array): void {
    if (samples.length === 0 || this.state === 'failed' || this.state === 'killed') return
    queueMicrotask(() => {
      if (this.state === 'killed') return
      for (const l of this.pcmListeners) l(samples)
    })
  }

  end(): void {
    if (this.settled) return
    this.state = 'ended'
    queueMicrotask(() => {
      for (const l of this.endListeners) l()
    })
  }

  fail(err: AudioDecodeError): void {
    if (this.settled) return
    this.state = 'failed'
    this.error = err
    queueMicrotask(() => {
      for (const l of this.errorListeners) l(err)
    })
  }

  /** Returns false when the decoder had already settled (nothing to stop). */
  kill(): boolean {
    if (this.settled) return false
    this.state = 'killed'
    return true
  }
}
