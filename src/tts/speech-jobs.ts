import { ApiError } from '../errors.js'

/** Limits of `createSpeechJobs`. */
export interface SpeechJobsOptions {
  /** Syntheses (each a voice engine, then an ffmpeg process) running at once. */
  concurrency: number
  /** Requests that may wait for a free slot; one more is refused at once. */
  maxQueue: number
  /** How long a request waits for a slot before it is refused, ms. */
  waitMs: number
}

/** A bounded pool of synthesis slots with a bounded, first-come-first-served wait queue. */
export interface SpeechJobs {
  /**
   * Runs `job` in a slot, waiting for one if all are taken; the slot is released when `job` settles.
   * @throws ApiError `TOO_MANY_REQUESTS` when the queue is full or the wait ran out.
   */
  run<T>(job: () => Promise<T>): Promise<T>
  /** Jobs running now. */
  readonly active: number
  /** Requests waiting now. */
  readonly queued: number
}

interface Waiter {
  admit(): void
  timer: NodeJS.Timeout
}

/** Bounds `/v1/speak`: without it every request starts its own flite and ffmpeg processes at once. */
export function createSpeechJobs(options: SpeechJobsOptions): SpeechJobs {
  const { concurrency, maxQueue, waitMs } = options
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new RangeError('concurrency must be ≥ 1')
  if (!(Number.isInteger(maxQueue) && maxQueue >= 0)) throw new RangeError('maxQueue must be ≥ 0')
  let active = 0
  const waiting: Waiter[] = []
  const busy = () => new ApiError('TOO_MANY_REQUESTS', 'Too many speech requests. Please try again later')

  const release = () => {
    const next = waiting.shift()
    if (next) {
      clearTimeout(next.timer)
      next.admit() // the slot passes straight on: `active` is unchanged
    } else {
      active--
    }
  }

  const slot = (): Promise<void> => {
    if (active < concurrency) {
      active++
      return Promise.resolve()
    }
    if (waiting.length >= maxQueue || waitMs <= 0) return Promise.reject(busy())
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        admit: resolve,
        timer: setTimeout(() => {
          waiting.splice(waiting.indexOf(waiter), 1)
          reject(busy())
        }, waitMs),
      }
      waiting.push(waiter)
    })
  }

  return {
    async run(job) {
      await slot()
      try {
        return await job()
      } finally {
        release()
      }
    },
    get active() {
      return active
    },
    get queued() {
      return waiting.length
    },
  }
}
