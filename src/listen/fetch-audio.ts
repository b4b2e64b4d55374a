import { ApiError } from '../errors.js'

export interface FetchAudioOptions {
  /** Hosts (`name` or `name:port`, lower case) the server may fetch from; empty: none. */
  allowedHosts: readonly string[]
  maxBytes: number
  timeoutMs: number
}

const MAX_REDIRECTS = 3

/**
 * Fetches `{"url"}` audio for pre-recorded requests, only from allowed hosts (default none), so the server
 * cannot be used to reach internal addresses. Redirects are followed by hand and re-checked each hop.
 */
export async function* fetchAudio(rawUrl: unknown, o: FetchAudioOptions): AsyncGenerator<Buffer> {
  if (typeof rawUrl !== 'string')
    throw new ApiError('INVALID_FIELD', 'Invalid field `url`: must be a string.')
  let url: URL
  try {
    url = new URL(rawUrl)
  } catch {
    throw new ApiError('INVALID_FIELD', 'Invalid field `url`: not a URL.')
  }
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
    try {
      res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(o.timeoutMs) })
    } catch {
      throw new ApiError('REMOTE_CONTENT_ERROR', 'The URL could not be fetched.')
    }
    if (res.status >= 300 && res.status < 400 && res.headers.get('location')) {
      await res.body?.cancel()
      if (hop >= MAX_REDIRECTS) throw new ApiError('REMOTE_CONTENT_ERROR', 'Too many redirects.')
      url = new URL(res.headers.get('location') ?? '', url)
      continue
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel()
      throw new ApiError('REMOTE_CONTENT_ERROR', `The URL answered ${res.status}.`)
    }
    let total = 0
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.length
      if (total > o.maxBytes) throw new ApiError('PAYLOAD_TOO_LARGE')
      yield Buffer.from(chunk)
    }
    return
  }
}
