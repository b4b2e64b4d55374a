// AudioWorklet processor (its own bundle, loaded with `audioWorklet.addModule`): the microphone resampled to
// 16 kHz mono and sent to the page as 16-bit little-endian PCM, 100 ms a message. TypeScript has no
// AudioWorkletGlobalScope lib, so the few globals used here are declared below.

declare const sampleRate: number
declare class AudioWorkletProcessor {
  readonly port: MessagePort
}
declare function registerProcessor(name: string, processor: new () => AudioWorkletProcessor): void

const TARGET_RATE = 16_000
/** Samples per message: 100 ms at 16 kHz. */
const CHUNK = 1600
/** Low-pass taps (odd); cut-off below 8 kHz so nothing aliases into the 16 kHz signal. */
const TAPS = 63
const HALF = (TAPS - 1) / 2
const CUTOFF_HZ = 7_200

/** A Blackman-windowed sinc low-pass at `cutoffHz` for input at `rate`, normalised to unit gain. */
function lowPass(rate: number, cutoffHz: number): Float32Array {
  const fc = cutoffHz / rate
  const taps = new Float32Array(TAPS)
  let sum = 0
  for (let i = 0; i < TAPS; i++) {
    const n = i - HALF
    const sinc = n === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * n) / (Math.PI * n)
    const window =
      0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1))
    taps[i] = sinc * window
    sum += sinc * window
  }
  for (let i = 0; i < TAPS; i++) taps[i] = (taps[i] ?? 0) / sum
  return taps
}

class Pcm16kProcessor extends AudioWorkletProcessor {
  /** Input samples per output sample: `sampleRate` is the context's real rate (44.1 kHz was seen, not 48). */
  private readonly step = sampleRate / TARGET_RATE
  private readonly taps = lowPass(sampleRate, Math.min(CUTOFF_HZ, sampleRate / 2 - 500))
  /** Pending input; `input[0]` is input sample number `base`. */
  private input = new Float32Array(8192)
  private length = 0
  private base = 0
  /** Where the next output sample falls, in input samples. */
  private at = HALF
  private out = new DataView(new ArrayBuffer(CHUNK * 2))
  private filled = 0

  constructor() {
    super()
    this.port.onmessage = (event: MessageEvent) => {
      if (event.data === 'flush') {
        this.send()
        this.port.postMessage('flushed')
      }
    }
  }

  process(inputs: Float32Array[][]): boolean {
    const block = inputs[0]?.[0]
    if (!block) return true
    if (this.length + block.length > this.input.length) {
      const grown = new Float32Array((this.length + block.length) * 2)
      grown.set(this.input.subarray(0, this.length))
      this.input = grown
    }
    this.input.set(block, this.length)
    this.length += block.length
    // An output sample at `at` interpolates the filtered input at floor(at) and floor(at) + 1.
    while (Math.floor(this.at) + 1 + HALF < this.base + this.length) {
      const i = Math.floor(this.at)
      const frac = this.at - i
      const y = this.filtered(i) * (1 - frac) + this.filtered(i + 1) * frac
      this.push(y)
      this.at += this.step
    }
    // Drop input no output sample needs any more.
    const keepFrom = Math.floor(this.at) - HALF - this.base
    if (keepFrom > 0) {
      this.input.copyWithin(0, keepFrom, this.length)
      this.length -= keepFrom
      this.base += keepFrom
    }
    return true
  }

  private filtered(index: number): number {
    const start = index - HALF - this.base
    let y = 0
    for (let k = 0; k < TAPS; k++) y += (this.taps[k] ?? 0) * (this.input[start + k] ?? 0)
    return y
  }

  private push(sample: number): void {
    const s = Math.max(-1, Math.min(1, sample))
    // Little-endian on the wire whatever the platform (docs/deepgram-compat.md §7.1: linear16).
    this.out.setInt16(this.filled * 2, Math.round(s < 0 ? s * 32768 : s * 32767), true)
    this.filled++
    if (this.filled === CHUNK) this.send()
  }

  private send(): void {
    if (this.filled === 0) return
    const bytes = this.out.buffer.slice(0, this.filled * 2)
    this.port.postMessage(bytes, [bytes])
    this.filled = 0
  }
}

registerProcessor('pcm-16k', Pcm16kProcessor)

// A module, so the declarations above stay out of the page's global types.
export {}
