import type { DecoderBackend } from './decoder-backend.js'
import type { DecoderEvents } from './decoder-events.js'
import { createPcmAssembler } from './pcm.js'

/** s16le already at the output rate, mono: only whole samples are re-cut, nothing is spawned. */
export function createPassthroughDecoder(events: DecoderEvents): DecoderBackend {
  const assembler = createPcmAssembler()
  return {
    write(bytes) {
      events.pcm(assembler.push(bytes))
      return true
    },
    waitForDrain: () => Promise.resolve(),
    // A trailing half sample is dropped: it cannot be a sample.
    end: () => events.end(),
    kill: () => Promise.resolve(),
    pendingBytes: 0,
    pid: undefined,
  }
}
