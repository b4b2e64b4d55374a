import { availableParallelism } from 'node:os'
import type { SpeechFormat } from './speech-format.js'
import { createSpeechJobs } from './speech-jobs.js'
import { type Speech, type SpeechTools, synthesize } from './synthesize.js'
import type { Voice } from './tts-voices.js'

/** Bounds on text-to-speech work, shared by `POST /v1/speak` and the live socket (defaults in parentheses). */
export interface SpeakLimits {
  /** Syntheses (a voice engine, then ffmpeg) at once (the machine's cores). */
  concurrency?: number
  /** Requests waiting for a synthesis slot; past it, 429 at once (32). */
  maxQueue?: number
  /** How long a request waits for a slot before a 429, ms (10 000). */
  waitMs?: number
  /** How long each program may run before it is killed and the request fails with 504, ms (30 000). */
  timeoutMs?: number
  /** Paths of flite, espeak-ng and ffmpeg (their names on PATH). */
  tools?: SpeechTools
}

/** Renders text through one bounded set of synthesis slots, whichever transport asked. */
export interface Speaker {
  /**
   * Waits for a slot, then renders `text`, `speed` times as fast as the voice speaks (default 1).
   * @throws ApiError `TOO_MANY_REQUESTS` when the queue is full or the wait ran out; see `synthesize`.
   */
  synthesize(text: string, voice: Voice, format: SpeechFormat, speed?: number): Promise<Speech>
  /** Syntheses running now. */
  readonly active: number
}

export function createSpeaker(limits: SpeakLimits = {}): Speaker {
  const jobs = createSpeechJobs({
    concurrency: limits.concurrency ?? availableParallelism(),
    maxQueue: limits.maxQueue ?? 32,
    waitMs: limits.waitMs ?? 10_000,
  })
  const timeoutMs = limits.timeoutMs ?? 30_000
  return {
    synthesize: (text, voice, format, speed = 1) =>
      jobs.run(() =>
        synthesize(text, {
          voice,
          speed,
          encoding: format.encoding,
          container: format.container,
          sampleRate: format.sampleRate,
          bitRate: format.bitRate ?? undefined,
          timeoutMs,
          ...(limits.tools ? { tools: limits.tools } : {}),
        }),
      ),
    get active() {
      return jobs.active
    },
  }
}
