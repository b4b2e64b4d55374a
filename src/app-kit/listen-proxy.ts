import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import { checkHandshake } from '../ws/handshake.js'
import { closeReasonText, pipeFrames, sendableCloseCode } from '../ws/relay-pipe.js'
import { refuseUpgrade } from '../ws/upgrade-refusal.js'
import { type Credentials, END_USER_TAG_PREFIX, fromUpstream } from './credentials.js'
import { AppKitError, headerText, toAppKitError } from './errors.js'
import { type UpstreamClient, UpstreamRefusal } from './upstream-client.js'

/** Live figures of the proxy (tests and monitoring). */
export interface ProxyStats {
  /** Proxied streams from the browser's upgrade request until both sockets are closed. */
  readonly openProxies: number
  /** Bytes queued for sending, both directions of every stream (ws `bufferedAmount`). */
  readonly bufferedBytes: number
}

/** What the proxy needs: its route, the credential operations, the upstream and its limits. */
export interface ListenProxyOptions {
  /** The full path of the route, e.g. `/earmark/listen`. */
  path: string
  credentials: Credentials
  upstream: UpstreamClient
  /** The server-held key, for the fallback `Token` upstream auth; never sent to the browser. */
  apiKey: string
  /** Lifetime of the per-stream grant; it only has to outlive the upstream handshake. */
  grantTtlSeconds: number
  /** Per direction: above this many bytes queued for one side, the other side is not read. */
  maxBufferedBytes: number
  /** After one side closed, how long the other gets to finish its close handshake before it is cut, ms. */
  closeGraceMs?: number
  /** How long the upstream WebSocket handshake may take, ms. */
  handshakeTimeoutMs?: number
}

/** The pattern-3 WebSocket proxy: browser ⇄ app server ⇄ Deepgram-compatible `/v1/listen`. */
export interface ListenProxy {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean
  readonly stats: ProxyStats
  close(): Promise<void>
}

interface Session {
  browser: WebSocket | undefined
  upstream: WebSocket | undefined
  /** Ends the stream from the server's side (shutdown). */
  shutdown(): void
  done: Promise<void>
}

const MAX_ERROR_BODY = 16 * 1024

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      if (text.length < MAX_ERROR_BODY) text += chunk
    })
    res.on('end', () => resolve(text))
    res.on('error', () => resolve(text))
    res.on('aborted', () => resolve(text))
  })
}

/** A refused upstream handshake, rewritten for the browser (see `fromUpstream` for the status rules). */
function handshakeError(status: number, text: string, scrub: (s: string) => string): AppKitError {
  let body: Record<string, unknown> = {}
  try {
    const parsed = JSON.parse(text) as unknown
    if (typeof parsed === 'object' && parsed !== null) body = parsed as Record<string, unknown>
  } catch {
    // not JSON: status only
  }
  const errCode = typeof body.err_code === 'string' ? scrub(body.err_code) : undefined
  const errMsg = typeof body.err_msg === 'string' ? scrub(body.err_msg) : undefined
  if (status === 401 || status === 403 || status < 400 || status > 599) {
    // About the server-held key, or not an HTTP error at all: not the browser's fault.
    return new AppKitError(
      'UPSTREAM_ERROR',
      `The speech server refused the stream (${status}${errCode ? ` ${errCode}` : ''}).`,
    )
  }
  return new AppKitError('UPSTREAM_ERROR', errMsg ?? `The speech server refused the stream (${status}).`, {
    status,
    errCode: errCode ?? 'UPSTREAM_ERROR',
  })
}

/** Creates the proxy. It owns a `noServer` WebSocketServer for the browser side. */
export function createListenProxy(o: ListenProxyOptions): ListenProxy {
  const closeGraceMs = o.closeGraceMs ?? 10_000
  const handshakeTimeoutMs = o.handshakeTimeoutMs ?? 10_000
  const max = o.maxBufferedBytes
  const sessions = new Set<Session>()
  const upstreamIds = new WeakMap<IncomingMessage, string>()
  let closing = false
  // Grants that do not carry end_user, or a key that may not grant: use `Token` plus a tag from then on.
  let grantsUnusable = false

  const wss = new WebSocketServer({
    noServer: true,
    // One frame never exceeds the buffering bound, so memory stays within 2 × max (+ one socket read).
    maxPayload: max,
    perMessageDeflate: false,
    // The browser's own subprotocols (if any) are its business: echo the first so the handshake completes.
    handleProtocols: (protocols) => protocols.values().next().value ?? false,
  })
  // The upstream's request id, so the browser can quote it (it names the usage record).
  wss.on('headers', (headers, req) => {
    const id = upstreamIds.get(req)
    if (id) headers.push(`dg-request-id: ${headerText(id)}`)
  })

  const scrubber = (secrets: string[]) => (text: string) =>
    secrets.reduce(
      (s, secret) => (secret && s.includes(secret) ? s.split(secret).join('[redacted]') : s),
      text,
    )

  /** How the stream authenticates upstream: a per-stream grant for this end user, else the key plus a tag. */
  const upstreamAuth = async (endUser: string): Promise<{ authorization: string; tag?: string }> => {
    if (!grantsUnusable) {
      try {
        const grant = await o.credentials.grantFor(endUser, o.grantTtlSeconds)
        if (grant.carriesEndUser) return { authorization: `Bearer ${grant.token}` }
        grantsUnusable = true // not Earmark: the grant would not say who the end user is
      } catch (err) {
        const refused = err instanceof UpstreamRefusal && err.status >= 400 && err.status < 500
        if (!refused || err.status === 429) throw fromUpstream(err)
        grantsUnusable = true // e.g. the server key lacks the member role
      }
    }
    return { authorization: `Token ${o.apiKey}`, tag: `${END_USER_TAG_PREFIX}${endUser}` }
  }

  /** The browser's query, minus any `tag=end_user:…` it tried to set; plus the kit's own when asked. */
  const upstreamQuery = (url: URL, tag: string | undefined): URLSearchParams => {
    const query = new URLSearchParams()
    for (const [name, value] of url.searchParams) {
      if (name === 'tag' && value.toLowerCase().startsWith(END_USER_TAG_PREFIX)) continue
      query.append(name, value)
    }
    if (tag) query.append('tag', tag)
    return query
  }

  const run = async (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => {
    const requestId = randomUUID()
    let resolveDone = () => {}
    const session: Session = {
      browser: undefined,
      upstream: undefined,
      shutdown: () => socket.destroy(),
      done: new Promise<void>((resolve) => {
        resolveDone = resolve
      }),
    }
    sessions.add(session)
    let finished = false
    const graceTimers: NodeJS.Timeout[] = []
    const finish = () => {
      if (finished) return
      finished = true
      for (const t of graceTimers) clearTimeout(t)
      sessions.delete(session)
      resolveDone()
    }
    let secrets = [o.apiKey]
    const scrub = (text: string) => scrubber(secrets)(text)

    // The browser may leave while the upstream is still being opened.
    let browserGone = false
    const onEarlyClose = () => {
      browserGone = true
      session.upstream?.terminate()
    }
    socket.on('close', onEarlyClose)

    let upstream: WebSocket
    /** The upstream's id of a refused handshake: the browser quotes it, the upstream's logs know it. */
    let upstreamRequestId: string | undefined
    try {
      const endUser = await o.credentials.identify(req)
      if (browserGone) return finish()
      const auth = await upstreamAuth(endUser)
      secrets = [o.apiKey, auth.authorization.slice(auth.authorization.indexOf(' ') + 1)]
      if (browserGone) return finish()
      upstream = new WebSocket(o.upstream.listenUrl(upstreamQuery(url, auth.tag)), {
        headers: { authorization: auth.authorization },
        perMessageDeflate: false,
        maxPayload: max,
        handshakeTimeout: handshakeTimeoutMs,
      })
      session.upstream = upstream
      await new Promise<void>((resolve, reject) => {
        upstream.once('upgrade', (res) => {
          const id = res.headers['dg-request-id']
          if (typeof id === 'string') upstreamIds.set(req, id)
        })
        upstream.once('open', () => {
          // Hold the upstream's first frames (they may share a TCP read with the 101) until the relay is set.
          upstream.pause()
          resolve()
        })
        upstream.once('unexpected-response', (_request, res) => {
          const id = res.headers['dg-request-id']
          if (typeof id === 'string') upstreamRequestId = scrub(id)
          void readBody(res).then((text) => {
            reject(handshakeError(res.statusCode ?? 502, text, scrub))
            upstream.terminate()
          })
        })
        upstream.on('error', () => {
          reject(new AppKitError('UPSTREAM_ERROR', 'The speech server could not be reached.'))
        })
        upstream.once('close', () =>
          reject(new AppKitError('UPSTREAM_ERROR', 'The speech server closed the connection.')),
        )
      })
    } catch (err) {
      socket.off('close', onEarlyClose)
      const e = toAppKitError(err)
      refuseUpgrade(socket, {
        status: e.status,
        err_code: e.code,
        err_msg: scrub(e.message),
        request_id: upstreamRequestId ?? requestId,
      })
      session.upstream?.terminate()
      return finish()
    }
    socket.off('close', onEarlyClose)
    if (browserGone || socket.destroyed || closing) {
      upstream.terminate()
      const e = new AppKitError('SERVICE_UNAVAILABLE')
      refuseUpgrade(socket, { status: e.status, err_code: e.code, err_msg: e.message, request_id: requestId })
      return finish()
    }
    wss.handleUpgrade(req, socket, head, (browser) => {
      session.browser = browser
      relay(browser, upstream)
    })
    if (!session.browser) {
      // ws refused the browser's handshake itself (it answered 400): nothing to relay.
      upstream.terminate()
      return finish()
    }

    function relay(browser: WebSocket, up: WebSocket) {
      let upstreamError: string | undefined
      const settle = () => {
        if (browser.readyState === WebSocket.CLOSED && up.readyState === WebSocket.CLOSED) finish()
      }
      /** Closes `ws` (if open), letting it read the peer's close frame, cut after the grace period. */
      const closeSide = (ws: WebSocket, code?: number, reason = '') => {
        if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return
        if (ws.bufferedAmount > max) {
          // A peer this far behind has stopped reading: it would not read a close frame either.
          ws.terminate()
          return
        }
        ws.resume()
        if (code === undefined) ws.close()
        else ws.close(code, closeReasonText(reason))
        const t = setTimeout(() => ws.terminate(), closeGraceMs)
        t.unref()
        graceTimers.push(t)
      }
      session.shutdown = () => {
        closeSide(browser, 1001, 'server shutting down')
        closeSide(up, 1001, 'proxy shutting down')
      }

      pipeFrames(browser, up, { maxBuffered: max })
      pipeFrames(up, browser, { maxBuffered: max })
      up.resume()

      up.on('error', (err: Error & { code?: string }) => {
        upstreamError = err.code ?? 'error'
      })
      browser.on('error', () => {
        // 'close' follows and closes the upstream
      })
      up.on('close', (code, reasonBuf) => {
        const reason = scrub(reasonBuf.toString('utf8'))
        if (upstreamError !== undefined || code === 1006) {
          // The upstream died (reset, killed, lost): say so, never leave the browser with a silent 1006.
          closeSide(browser, 1011, upstreamError ? `upstream error (${upstreamError})` : 'upstream closed')
        } else if (code === 1005) {
          closeSide(browser)
        } else if (sendableCloseCode(code)) {
          closeSide(browser, code, reason)
        } else {
          closeSide(browser, 1011, `upstream closed (${code})`)
        }
        settle()
      })
      browser.on('close', (code, reasonBuf) => {
        const reason = reasonBuf.toString('utf8')
        if (code === 1005) closeSide(up)
        else if (sendableCloseCode(code)) closeSide(up, code, reason)
        else closeSide(up, 1001, 'client went away')
        settle()
      })
    }
  }

  return {
    handleUpgrade(req, socket, head) {
      const url = new URL(req.url ?? '/', 'http://localhost')
      if (url.pathname !== o.path) return false
      socket.on('error', () => socket.destroy())
      // Checked as the server checks its own upgrades, before anything is minted or opened upstream (ws
      // would refuse it later anyway).
      const refusal = checkHandshake(req)
      if (refusal) {
        const e = refusal.error
        const body = { err_code: e.code, err_msg: e.message, request_id: randomUUID() }
        refuseUpgrade(socket, { status: e.status, ...body }, refusal.headers)
        return true
      }
      if (closing) {
        const e = new AppKitError('SERVICE_UNAVAILABLE')
        refuseUpgrade(socket, {
          status: e.status,
          err_code: e.code,
          err_msg: e.message,
          request_id: randomUUID(),
        })
        return true
      }
      void run(req, socket, head, url).catch(() => socket.destroy())
      return true
    },
    stats: {
      get openProxies() {
        return sessions.size
      },
      get bufferedBytes() {
        let total = 0
        for (const s of sessions)
          total += (s.browser?.bufferedAmount ?? 0) + (s.upstream?.bufferedAmount ?? 0)
        return total
      },
    },
    async close() {
      closing = true
      const all = [...sessions]
      for (const s of all) s.shutdown()
      await Promise.all(all.map((s) => s.done))
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}
