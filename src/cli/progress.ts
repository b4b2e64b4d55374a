import { MultiBar, Presets, type SingleBar } from 'cli-progress'

/** How one file of `earmark transcribe` ended. */
export interface FileOutcome {
  input: string
  /** `ok`, or `failed` with `error`. */
  status: 'ok' | 'failed'
  /** Seconds of audio the transcript covers (0 when it failed). */
  audioSeconds: number
  /** Seconds from the start of its request to its files written. */
  elapsedSeconds: number
  /** The files written. */
  outputs: string[]
  error?: { code: string; message: string }
}

/** What `earmark transcribe` shows while it works. */
export interface Progress {
  start(total: number): void
  /** A file was refused for now (429, 503) and is tried again after `waitMs`. */
  retry(input: string, waitMs: number, reason: string): void
  done(outcome: FileOutcome): void
  stop(): void
}

const seconds = (s: number) => `${s.toFixed(1)} s`

/** The one line a finished file gets: status, name, audio length, time taken, files written or the error. */
export function outcomeLine(o: FileOutcome): string {
  if (o.status === 'ok') {
    return `ok\t${o.input}\t${seconds(o.audioSeconds)} audio\t${seconds(o.elapsedSeconds)}\t${o.outputs.join(' ')}`
  }
  return `failed\t${o.input}\t${o.error?.code ?? 'INTERNAL_ERROR'}: ${o.error?.message ?? ''}`
}

/** The line of a file refused for now: when it is tried again, and why. */
function retryLine(input: string, waitMs: number, reason: string): string {
  return `retry\t${input}\tin ${seconds(waitMs / 1000)}\t${reason}`
}

/** Plain lines, one per finished file (and one per retry), for a pipe or a log file. */
export function createLineProgress(write: (text: string) => void): Progress {
  return {
    start: () => {},
    retry: (input, waitMs, reason) => write(`${retryLine(input, waitMs, reason)}\n`),
    done: (o) => write(`${outcomeLine(o)}\n`),
    stop: () => {},
  }
}

/**
 * A progress bar on a terminal (`cli-progress`): files done of all, audio transcribed, failures, time left;
 * each finished file's line is printed above it, so nothing is lost when the bar is cleared.
 */
export function createBarProgress(stream: NodeJS.WriteStream): Progress {
  const bars = new MultiBar(
    {
      stream,
      format: ' {bar} {value}/{total} files | {audio} audio | {failed} failed | {eta_formatted} left',
      hideCursor: true,
      clearOnComplete: false,
      etaBuffer: 20,
    },
    Presets.shades_classic,
  )
  let bar: SingleBar | undefined
  let audio = 0
  let failed = 0
  return {
    start(total) {
      bar = bars.create(total, 0, { audio: seconds(0), failed: 0 })
    },
    retry(input, waitMs, reason) {
      bars.log(`${retryLine(input, waitMs, reason)}\n`)
    },
    done(o) {
      audio += o.audioSeconds
      if (o.status === 'failed') failed++
      bars.log(`${outcomeLine(o)}\n`)
      bar?.increment(1, { audio: seconds(audio), failed })
    },
    stop() {
      // A line logged since the last redraw is written by the next one only: redraw once before stopping.
      bars.update()
      bars.stop()
    },
  }
}
