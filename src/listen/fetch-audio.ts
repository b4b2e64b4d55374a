import { ApiError } from '../errors.js'

export interface FetchAudioOptions {
  /** Hosts (`name` or `name:port`, lower case) the server may fetch from; empty: none. */
  allowedHosts: readonly string[]
  maxBytes: number
  /** The whole fetch (every redirect hop, the headers and the whole body) must be done within this, ms. */
  timeoutMs: number
  /** Longest wait for the answer's headers or for the next body bytes, ms. Default 10 000. */
  idleTimeoutMs?: number
}

const MAX_REDIRECTS = 3

/** Why a fetch was stopped: one of our deadlines, or the caller's signal (its reason is rethrown as is). */
class Deadline extends Error {}

/**
 * Fetches `{"url"}` audio for pre-recorded requests, only from allowed hosts (default none), so the server
 * cannot be used to reach internal addresses. Redirects are followed by hand and re-checked each hop.
 * An upstream that is slow to answer, or drips its body, is cut off at `timeoutMs` in all or after
 * `idleTimeoutMs` without a byte: every failure of the remote side is a 400 REMOTE_CONTENT_ERROR
 * (docs/deepgram-compat.md §5 documents that code for content Deepgram could not fetch), never a 500.
 * Aborting `signal` (the client went away) stops the fetch and rethrows the signal's reason.
 */
export async function* fetchAudio(
  rawUrl: unknown,
  o: FetchAudioOptions,
  signal?: AbortSignal,
): AsyncGenerator<Buffer> {
  if (typeof rawUrl !== 'string')
    throw new ApiError('INVALID_FIELD', 'Invalid field `url`: must be a string.')
  let url: URL
  try {
    url = new URL(rawUrl)
  } catch {
    throw new ApiError('INVALID_FIELD', 'Invalid field `url`: not a URL.')
  }
  const idleMs = o.idleTimeoutMs ?? 10_000
  const stop = new AbortController()
  const onAbort = () => stop.abort(signal?.reason)
  signal?.addEventListener('abort', onAbort, { once: true })
  const total = setTimeout(
    () => stop.abort(new Deadline(`The URL did not send its audio within ${seconds(o.timeoutMs)}.`)),
    o.timeoutMs,
  )
  let idle: NodeJS.Timeout | undefined
  const expectBytes = () => {
    clearTimeout(idle)
    idle = setTimeout(() => stop.abort(new Deadline(`The URL sent nothing for ${seconds(idleMs)}.`)), idleMs)
  }
  /** What a failed step means for the client. */
  const failure = (fallback: string): unknown => {
    const reason: unknown = stop.signal.reason
    if (stop.signal.aborted && !(reason instanceof Deadline)) return reason
    return new ApiError('REMOTE_CONTENT_ERROR', reason instanceof Deadline ? reason.message : fallback)
  }
  try {
    signal?.throwIfAborted()
    for (let hop = 0; ; hop++) {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new ApiError('REMOTE_CONTENT_ERROR', 'Only http and https URLs can be fetched.')
      }
      const host = url.host.toLowerCase()
      if (!o.allowedHosts.includes(host) && !o.allowedHosts.includes(url.hostname.toLowerCase())) {
        throw new ApiError(
          'REMOTE_CONTENT_ERROR',
          'This server does not fetch from that host (see EARMARK_FETCH_ALLOWED_HOSTS).',
        )
      }
      let res: Response
      expectBytes()
      try {
        res = await fetch(url, { redirect: 'manual', signal: stop.signal })
      } catch {
        throw failure('The URL could not be fetched.')
      }
      if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
        await res.body?.cancel().catch(() => undefined)
        if (hop >= MAX_REDIRECTS) throw new ApiError('REMOTE_CONTENT_ERROR', 'Too many redirects.')
        url = new URL(res.headers.get('location') ?? '', url)
        continue
      }
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => undefined)
        throw new ApiError('REMOTE_CONTENT_ERROR', `The URL answered ${res.status}.`)
      }
      let bytes = 0
      const reader = res.body.getReader()
      try {
        for (;;) {
          expectBytes()
          let next: Awaited<ReturnType<typeof reader.read>>
          try {
            next = await reader.read()
          } catch {
            throw failure('The URL stopped sending its audio.')
          }
          clearTimeout(idle)
          if (next.done) break
          bytes += next.value.length
          if (bytes > o.maxBytes) throw new ApiError('PAYLOAD_TOO_LARGE')
          yield Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length)
        }
      } finally {
        // Stops the download when the consumer gives up early (or a limit was passed).
        await reader.cancel().catch(() => undefined)
      }
      return
    }
  } finally {
    clearTimeout(total)
    clearTimeout(idle)
    signal?.removeEventListener('abort', onAbort)
    stop.abort()
  }
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`
}
