import { type ChildProcessByStdio, spawn } from 'node:child_process'
import type { Readable, Writable } from 'node:stream'
import { AudioDecodeError } from './audio-decode-error.js'
import type { ContainerEncoding } from './audio-format.js'
import { type Demuxer, demuxerForHint, sniffContainer } from './container-sniff.js'
import type { DecoderBackend } from './decoder-backend.js'
import type { DecoderEvents } from './decoder-events.js'
import { createPcmAssembler } from './pcm.js'
import type { PcmLayout } from './wav-header.js'

/** Input this small that yields no PCM is "nothing was sent" rather than "not audio". */
const TINY_INPUT_BYTES = 4096
const STDERR_TAIL = 2048

type FfmpegProcess = ChildProcessByStdio<Writable, Readable, Readable>

/**
 * Stream analysis cut to the minimum. `-analyzeduration 1` (one microsecond), not 0: ffmpeg reads 0 as
 * "the default", five seconds, which held raw PCM back by 1-2 s. `-fflags nobuffer` is deliberately left
 * out: it throws away the packets read while probing, which lost the first 20-40 ms of WebM/Ogg/FLAC and
 * up to a second of WAV/MP3 (measured on ffmpeg 5.1).
 */
const LOW_LATENCY = ['-probesize', '32', '-analyzeduration', '1', '-flags', 'low_delay']

/** ffmpeg input options for headerless PCM. */
export function rawInputArgs(layout: PcmLayout): string[] {
  return [
    ...LOW_LATENCY,
    '-f',
    layout.demuxer,
    '-ar',
    String(layout.sampleRate),
    '-ac',
    String(layout.channels),
  ]
}

/**
 * How much of an unrecognised stream ffmpeg may read to name its format. Its default is 1 MiB, and on a
 * stream that stays open it waits for all of it: random bytes then held a live stream until the idle
 * timeout instead of failing. Every format ffmpeg knows and Earmark does not sniff (ADTS AAC, AIFF, CAF,
 * MPEG-TS, ASF, AU, W64, AC-3, MP2, WavPack) was still recognised from 2 KiB fed slowly (ffmpeg 5.1).
 */
export const FORMAT_PROBE_BYTES = 2048

/**
 * ffmpeg input options for a container. The demuxer is named when the first bytes say which (or the
 * client's `encoding` implies one), which spares ffmpeg its 2 KiB format probe; otherwise the probe is
 * bounded to `FORMAT_PROBE_BYTES`, so unrecognisable bytes fail as soon as that much arrived.
 */
export function containerInputArgs(head: Uint8Array, hint: ContainerEncoding | null): string[] {
  const demuxer: Demuxer | null = sniffContainer(head) ?? demuxerForHint(hint)
  return [...LOW_LATENCY, ...(demuxer ? ['-f', demuxer] : ['-formatprobesize', String(FORMAT_PROBE_BYTES)])]
}

/** The whole command line after the binary: stdin to mono s16le at `sampleRate` on stdout. */
export function ffmpegArgs(input: readonly string[], sampleRate: number): string[] {
  return [
    '-hide_banner',
    '-nostdin',
    '-loglevel',
    'error',
    ...input,
    '-i',
    'pipe:0',
    '-map',
    '0:a:0',
    '-ac',
    '1',
    '-ar',
    String(sampleRate),
    '-f',
    's16le',
    '-flush_packets',
    '1',
    'pipe:1',
  ]
}

/**
 * A short, fixed reason for a failure. ffmpeg's stderr can quote the input (tags, names), so it is only
 * matched against known phrases, never passed on.
 */
export function ffmpegFailureReason(stderr: string): string | undefined {
  const reasons: Array<[RegExp, string]> = [
    [/matches no streams|does not contain any stream/i, 'no audio track'],
    [/EBML header parsing failed|no 'data' tag|invalid (wav|riff) header/i, 'corrupt header'],
    [/ended prematurely|end of file|truncated/i, 'truncated data'],
    [/could not find codec parameters|unspecified sample rate|unknown codec/i, 'unknown audio format'],
    [/Invalid data found when processing input/i, 'unrecognised or corrupt data'],
    [/error while decoding|invalid frame|decoding error/i, 'corrupt audio frames'],
  ]
  for (const [pattern, reason] of reasons) if (pattern.test(stderr)) return reason
  return undefined
}

export interface FfmpegDecoderOptions {
  /** ffmpeg's arguments, from `ffmpegArgs`. */
  args: string[]
  ffmpegPath: string
  maxPendingBytes: number
  events: DecoderEvents
  /** Bytes the client sent so far, header included (for the "nothing decoded" rule). */
  inputBytes: () => number
}

/** One ffmpeg process for one stream, fed through stdin, read from stdout, SIGKILLed when stopped. */
export function createFfmpegDecoder(options: FfmpegDecoderOptions): DecoderBackend {
  const { events, maxPendingBytes } = options
  const assembler = createPcmAssembler()
  const proc: FfmpegProcess = spawn(options.ffmpegPath, options.args, { stdio: ['pipe', 'pipe', 'pipe'] })
  let exited = false
  let bytesOut = 0
  let stderrTail = ''
  const exitWaiters: Array<() => void> = []
  const drainWaiters: Array<() => void> = []

  const releaseDrainWaiters = () => {
    for (const w of drainWaiters.splice(0)) w()
  }
  const markExited = () => {
    if (exited) return
    exited = true
    releaseDrainWaiters()
    for (const w of exitWaiters.splice(0)) w()
  }
  const stop = () => {
    releaseDrainWaiters()
    if (exited) return
    proc.stdin.destroy()
    proc.kill('SIGKILL')
  }
  const fail = (err: AudioDecodeError) => {
    events.fail(err)
    stop()
  }

  proc.on('error', () => {
    // Spawning failed (no binary, no permission): a server fault, not the client's.
    if (proc.pid === undefined) markExited()
    fail(new AudioDecodeError('DECODER_UNAVAILABLE'))
  })
  // EPIPE when ffmpeg gave up on the input early; its exit status tells the story.
  proc.stdin.on('error', () => {})
  proc.stdin.on('drain', releaseDrainWaiters)
  proc.stdout.on('data', (bytes: Buffer) => {
    bytesOut += bytes.length
    events.pcm(assembler.push(bytes))
  })
  proc.stderr.on('data', (bytes: Buffer) => {
    stderrTail = (stderrTail + bytes.toString('latin1')).slice(-STDERR_TAIL)
  })
  proc.on('exit', markExited)
  proc.on('close', (code) => {
    markExited()
    if (events.settled) return
    if (code !== 0) {
      events.fail(new AudioDecodeError('UNDECODABLE', ffmpegFailureReason(stderrTail)))
    } else if (bytesOut === 0 && options.inputBytes() > TINY_INPUT_BYTES) {
      events.fail(new AudioDecodeError('UNDECODABLE', 'no audio found'))
    } else {
      events.end()
    }
  })

  return {
    write(bytes) {
      if (exited || proc.stdin.destroyed) return true
      proc.stdin.write(bytes)
      if (proc.stdin.writableLength > maxPendingBytes) {
        fail(new AudioDecodeError('BACKLOG_FULL', `more than ${maxPendingBytes} bytes pending`))
        return true
      }
      return !proc.stdin.writableNeedDrain
    },
    waitForDrain() {
      if (exited || events.settled || !proc.stdin.writableNeedDrain) return Promise.resolve()
      return new Promise((resolve) => drainWaiters.push(resolve))
    },
    end() {
      if (!exited) proc.stdin.end()
    },
    kill() {
      stop()
      if (exited) return Promise.resolve()
      return new Promise((resolve) => exitWaiters.push(resolve))
    },
    get pendingBytes() {
      return exited ? 0 : proc.stdin.writableLength
    },
    get pid() {
      return exited ? undefined : proc.pid
    },
  }
}
