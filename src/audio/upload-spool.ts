import { createHash, randomUUID } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { ApiError } from '../errors.js'

/** An upload written to a private temporary file. */
export interface SpooledUpload {
  readonly path: string
  readonly bytes: number
  /** SHA-256 of the bytes, hex (Deepgram's `metadata.sha256`). */
  readonly sha256: string
  /** The first bytes (at most `headBytes`), for a look at the container header without another read. */
  readonly head: Uint8Array
  /** The file's bytes in chunks, read lazily (the file is opened on the first `next()`). */
  chunks(): AsyncGenerator<Uint8Array>
  /** Deletes the file. Safe to call more than once; never throws. */
  remove(): Promise<void>
}

export interface SpoolOptions {
  /** Directory of the temporary files (created 0700 when missing). */
  dir: string
  /** More bytes than this: 413 PAYLOAD_TOO_LARGE. */
  maxBytes: number
  /** No byte for this long: 408 REQUEST_TIMEOUT. */
  idleTimeoutMs: number
  /** How many leading bytes `head` keeps. Default 64 KiB. */
  headBytes?: number
  /** Aborting stops the spooling at once; the promise rejects with the signal's reason. */
  signal?: AbortSignal
}

/** Every spool file is named so; anything else in the directory is left alone. */
const PREFIX = 'earmark-upload-'

/**
 * Writes an upload to a temporary file (mode 0600) while counting and hashing it, so a slow client holds a
 * file and a socket but no decoder, no ffmpeg process and no memory beyond one chunk: the source is read
 * one chunk at a time and the next chunk is asked for only once this one is on disk. On any failure
 * (too large, idle, aborted, the source's own error, a disk error) the file is gone before the promise
 * rejects. The caller must `remove()` a returned spool on every path.
 * @throws ApiError `PAYLOAD_TOO_LARGE` or `REQUEST_TIMEOUT`; the source's error or the signal's reason as is.
 */
export async function spoolUpload(
  source: AsyncIterable<Uint8Array>,
  options: SpoolOptions,
): Promise<SpooledUpload> {
  const { signal } = options
  signal?.throwIfAborted()
  await mkdir(options.dir, { recursive: true, mode: 0o700 })
  const path = join(options.dir, `${PREFIX}${randomUUID()}`)
  const file = await open(path, 'wx', 0o600)
  const remove = () => rm(path, { force: true }).catch(() => undefined)
  const sha = createHash('sha256')
  const headLimit = options.headBytes ?? 64 * 1024
  const head: Uint8Array[] = []
  let headBytes = 0
  let bytes = 0
  const iterator = source[Symbol.asyncIterator]()
  let finished = false
  try {
    for (;;) {
      const next = await withDeadline(iterator.next(), options.idleTimeoutMs, signal)
      if (next.done) {
        finished = true
        break
      }
      const chunk = next.value
      bytes += chunk.length
      if (bytes > options.maxBytes) throw new ApiError('PAYLOAD_TOO_LARGE', tooLarge(options.maxBytes))
      sha.update(chunk)
      if (headBytes < headLimit) {
        const take = chunk.subarray(0, headLimit - headBytes)
        head.push(Uint8Array.from(take))
        headBytes += take.length
      }
      for (let at = 0; at < chunk.length; ) {
        const { bytesWritten } = await file.write(chunk, at, chunk.length - at)
        if (bytesWritten === 0) throw new Error('The upload could not be written to disk.')
        at += bytesWritten
      }
    }
  } catch (err) {
    await remove()
    throw err
  } finally {
    if (!finished) void Promise.resolve(iterator.return?.(undefined)).catch(() => undefined)
    await file.close().catch(() => undefined)
  }
  return {
    path,
    bytes,
    sha256: sha.digest('hex'),
    head: Buffer.concat(head),
    async *chunks() {
      const stream = createReadStream(path, { highWaterMark: 64 * 1024 })
      try {
        for await (const chunk of stream) yield chunk as Buffer
      } finally {
        stream.destroy()
      }
    },
    remove,
  }
}

/** The 413 message for a byte limit (Deepgram says "Payload size exceeds limit of 2 MB."). */
export function tooLarge(maxBytes: number): string {
  const mib = maxBytes / (1024 * 1024)
  const size = mib >= 1 ? `${Number.isInteger(mib) ? mib : mib.toFixed(1)} MiB` : `${maxBytes} bytes`
  return `Payload size exceeds limit of ${size}.`
}

/**
 * Deletes spool files a previous run left behind (a crash or a kill between write and removal). Run at
 * start, before any request: every spool file then belongs to a request that no longer exists.
 */
export async function sweepSpoolDir(dir: string): Promise<number> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch {
    return 0
  }
  const stale = names.filter((n) => n.startsWith(PREFIX))
  await Promise.all(stale.map((n) => rm(join(dir, n), { force: true }).catch(() => undefined)))
  return stale.length
}

/** `step`, or a rejection after `idleMs` (REQUEST_TIMEOUT) or once `signal` aborts (its reason). */
function withDeadline<T>(step: Promise<T>, idleMs: number, signal: AbortSignal | undefined): Promise<T> {
  // The step may settle after we gave up on it; its rejection then has nowhere to go.
  step.catch(() => undefined)
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup()
      reject(new ApiError('REQUEST_TIMEOUT', `No audio bytes arrived for ${Math.round(idleMs / 1000)} s.`))
    }, idleMs)
    const onAbort = () => {
      cleanup()
      reject(signal?.reason)
    }
    const cleanup = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    step.then(
      (value) => {
        cleanup()
        resolve(value)
      },
      (err: unknown) => {
        cleanup()
        reject(err)
      },
    )
  })
}
