import { openAsBlob } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiError } from '../errors.js'
import { fromErrorBody } from './exit-codes.js'

/** A running Earmark (or Deepgram-compatible) server, as the CLI talks to it. */
export interface ServerClient {
  /** `GET path?query` answered with JSON; an error answer throws the ApiError it carries. */
  get(path: string, query?: Record<string, string>): Promise<unknown>
  /** Checks the credential (`GET /v1/auth/token`): throws the server's refusal (`INVALID_AUTH`, exit 3). */
  verify(): Promise<void>
  /** `POST /v1/listen?query` with the file as the body; retried on 429 and 503 as `retries` allows. */
  listen(file: string, query: URLSearchParams, signal?: AbortSignal): Promise<unknown>
}

export interface ServerClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:8080`. */
  url: string
  /** An API key, or a grant token (JWT): sent as `Token` or `Bearer`. Never printed. */
  key: string
  /** How many times a request refused with 429 or 503 is sent again. */
  retries: number
  /** Longest wait between tries, ms, whatever `Retry-After` says. */
  maxRetryWaitMs?: number
  /** Told of each wait, for the progress display. */
  onRetry?: (file: string, waitMs: number, err: ApiError) => void
}

const JWT = /^[\w-]+\.[\w-]+\.[\w-]+$/

/** The wait a 429 or 503 asks for (`Retry-After` in seconds, or an HTTP date), else a second. */
function retryAfterMs(header: string | null, now = Date.now()): number {
  if (header === null) return 1000
  const seconds = Number(header)
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000
  const at = Date.parse(header)
  return Number.isFinite(at) ? Math.max(0, at - now) : 1000
}

/**
 * A client for the server's REST API. The URL's user and password (if any) are dropped and the key goes in
 * the `Authorization` header only, so neither reaches an error message (docs/cli.md, "Secrets").
 */
export function createServerClient(o: ServerClientOptions): ServerClient {
  let base: URL
  try {
    base = new URL(o.url)
  } catch {
    throw new ApiError('INVALID_FIELD', 'Invalid field `--url`: must be an http:// or https:// URL.')
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new ApiError('INVALID_FIELD', 'Invalid field `--url`: must be an http:// or https:// URL.')
  }
  base.username = ''
  base.password = ''
  const origin = base.origin
  const authorization = `${JWT.test(o.key) ? 'Bearer' : 'Token'} ${o.key}`
  const maxWait = o.maxRetryWaitMs ?? 60_000

  const target = (path: string, query?: URLSearchParams | Record<string, string>) => {
    const url = new URL(path.replace(/^\//, ''), base.href.endsWith('/') ? base.href : `${base.href}/`)
    url.search = new URLSearchParams(query).toString()
    return url
  }

  /** One request; a network failure becomes 503 naming the origin and the cause's code only. */
  async function send(url: URL, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, { ...init, headers: { authorization, ...init.headers } })
    } catch (err) {
      if (init.signal?.aborted) throw init.signal.reason
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      throw new ApiError(
        'SERVICE_UNAVAILABLE',
        `Could not reach ${origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}.`,
      )
    }
  }

  async function answer(res: Response): Promise<unknown> {
    const text = await res.text()
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    if (!res.ok) throw fromErrorBody(res.status, body)
    if (body === undefined) {
      throw new ApiError('INTERNAL_ERROR', `The server at ${origin} answered ${res.status} without JSON.`)
    }
    return body
  }

  const verify = async () => {
    await answer(await send(target('/v1/auth/token'), { method: 'GET' }))
  }

  return {
    async get(path, query) {
      return answer(await send(target(path, query), { method: 'GET' }))
    },

    verify,

    async listen(file, query, signal) {
      const url = target('/v1/listen', query)
      for (let attempt = 0; ; attempt++) {
        // A Blob over the file: streamed from disk, with its Content-Length, and read again on a retry.
        const body = await openAsBlob(file)
        let res: Response
        try {
          res = await send(url, {
            method: 'POST',
            body,
            headers: { 'content-type': 'application/octet-stream' },
            ...(signal ? { signal } : {}),
          })
        } catch (err) {
          // A server that refuses an upload (its credential, say) answers before reading the body and closes:
          // the upload then fails mid-write (EPIPE, ECONNRESET). Asked directly, the server says why.
          if (err instanceof ApiError && /EPIPE|ECONNRESET/.test(err.message)) await verify()
          throw err
        }
        if ((res.status === 429 || res.status === 503) && attempt < o.retries) {
          const wait = Math.min(maxWait, retryAfterMs(res.headers.get('retry-after')))
          const refusal = await answer(res).catch((err: ApiError) => err)
          o.onRetry?.(file, wait, refusal as ApiError)
          await sleep(wait, undefined, signal ? { signal } : undefined)
          continue
        }
        return answer(res)
      }
    },
  }
}
