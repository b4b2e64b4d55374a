import { EngineBusyError } from '../engine.js'
import type { PocketsphinxDecoder } from './pocketsphinx-decoder.js'

/** A fixed set of warm decoders, lent out one per stream or one-shot decode. */
export interface DecoderPool {
  readonly size: number
  /** Decoders lent out now. */
  inUse(): number
  /** A free decoder, or undefined at once when none is free. */
  tryAcquire(): PocketsphinxDecoder | undefined
  /**
   * Waits up to `waitMs` for a free decoder (first come, first served), else rejects with EngineBusyError;
   * at once when `maxWaiters` already wait. Aborting `signal` leaves the queue and rejects with its reason.
   */
  acquire(waitMs: number, options?: AcquireOptions): Promise<PocketsphinxDecoder>
  /** Callers waiting in `acquire` now. */
  waiting(): number
  /**
   * Gives a decoder back. A `broken` one, or one that reports itself `exhausted`, is freed and replaced by
   * a fresh one in the background.
   */
  release(decoder: PocketsphinxDecoder, options?: { broken?: boolean }): void
  /** Rejects waiters, frees idle decoders now and lent ones when they come back. */
  close(): Promise<void>
}

export interface DecoderPoolOptions {
  size: number
  create: () => Promise<PocketsphinxDecoder>
  /** Told about a replacement that failed to load (the pool then runs one decoder short). */
  onReplaceError?: (err: unknown) => void
}

export interface AcquireOptions {
  maxWaiters?: number
  signal?: AbortSignal
}

interface Waiter {
  resolve(decoder: PocketsphinxDecoder): void
  reject(err: unknown): void
  timer: NodeJS.Timeout
  /** Detaches the abort listener. */
  done(): void
}

/** Loads `size` decoders in parallel (each load runs on the threadpool) and resolves when all are warm. */
export async function createDecoderPool(options: DecoderPoolOptions): Promise<DecoderPool> {
  const { size, create } = options
  const settled = await Promise.allSettled(Array.from({ length: size }, () => create()))
  const failure = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failure) {
    await Promise.allSettled(settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value.close()] : [])))
    throw failure.reason
  }
  const idle = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
  const lent = new Set<PocketsphinxDecoder>()
  const waiters: Waiter[] = []
  const pending = new Set<Promise<unknown>>()
  let closed = false

  const track = (p: Promise<unknown>) => {
    const tracked = p.catch(() => undefined).finally(() => pending.delete(tracked))
    pending.add(tracked)
  }

  const lend = (decoder: PocketsphinxDecoder) => {
    lent.add(decoder)
    return decoder
  }

  const giveBack = (decoder: PocketsphinxDecoder) => {
    if (closed) {
      track(decoder.close())
      return
    }
    const waiter = waiters.shift()
    if (waiter) {
      waiter.done()
      waiter.resolve(lend(decoder))
    } else {
      idle.push(decoder)
    }
  }

  return {
    size,
    inUse: () => lent.size,
    tryAcquire() {
      if (closed) return undefined
      const decoder = idle.shift()
      return decoder && lend(decoder)
    },
    waiting: () => waiters.length,
    acquire(waitMs, acquireOptions = {}) {
      const { signal, maxWaiters = Number.POSITIVE_INFINITY } = acquireOptions
      if (closed) return Promise.reject(new EngineBusyError('The speech engine is shutting down.'))
      if (signal?.aborted) return Promise.reject(signal.reason)
      const decoder = idle.shift()
      if (decoder) return Promise.resolve(lend(decoder))
      if (waitMs <= 0) return Promise.reject(new EngineBusyError())
      if (waiters.length >= maxWaiters) {
        return Promise.reject(new EngineBusyError('Too many requests are waiting for speech capacity.'))
      }
      return new Promise((resolve, reject) => {
        const leave = (err: unknown) => {
          const at = waiters.indexOf(waiter)
          if (at < 0) return
          waiters.splice(at, 1)
          waiter.done()
          reject(err)
        }
        const onAbort = () => leave(signal?.reason)
        const waiter: Waiter = {
          resolve,
          reject,
          timer: setTimeout(() => leave(new EngineBusyError()), waitMs),
          done: () => {
            clearTimeout(waiter.timer)
            signal?.removeEventListener('abort', onAbort)
          },
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        waiters.push(waiter)
      })
    },
    release(decoder, releaseOptions) {
      if (!lent.delete(decoder)) return
      // An exhausted decoder (its dictionary grew past the bound keyword boosting allows) is replaced too.
      if (!releaseOptions?.broken && !decoder.exhausted) {
        giveBack(decoder)
        return
      }
      track(decoder.close())
      if (closed) return
      track(
        create().then(giveBack, (err: unknown) => {
          options.onReplaceError?.(err)
        }),
      )
    },
    async close() {
      closed = true
      for (const waiter of waiters.splice(0)) {
        waiter.done()
        waiter.reject(new EngineBusyError('The speech engine is shutting down.'))
      }
      for (const decoder of idle.splice(0)) track(decoder.close())
      while (pending.size > 0) await Promise.all(pending)
    },
  }
}
