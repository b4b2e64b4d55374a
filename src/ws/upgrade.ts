import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { type WebSocket, WebSocketServer } from 'ws'
import {
  type AccessGate,
  type AccessRequest,
  maxSessionMs,
  OPEN_GATE,
  SESSION_LIMIT_CLOSE,
} from '../access/index.js'
import { type AuditLog, auditContext } from '../audit/index.js'
import type { Authenticator, Principal, Scheme } from '../auth/index.js'
import { parseAuthorization } from '../auth/index.js'
import { ApiError, isApiError } from '../errors.js'
import { documentSocketRoutes, type SocketRouteDoc } from '../http/openapi/socket-docs.js'
import type { ProxyTrust } from '../http/trusted-proxies.js'
import { requestScope } from '../last-resort.js'
import { endUserOf, requireScope } from '../projects/index.js'
import type { LiveStreams, StreamGuard } from '../revocation/index.js'
import { checkHandshake, offeredProtocols } from './handshake.js'
import { refuseUpgrade } from './upgrade-refusal.js'

export type { SocketRouteDoc }

/** What a socket route is told about an upgrade that passed the handshake, path, credential and scope checks. */
export interface UpgradeContext {
  req: IncomingMessage
  url: URL
  /** The query: one string per name, or every value of a repeated name. */
  query: Record<string, string | string[]>
  principal: Principal
  /** The upgrade as the access checks saw it (address, origin, user agent). */
  access: AccessRequest
  requestId: string
  log: FastifyBaseLogger
}

/**
 * What a socket route claimed for one upgrade (a decoder, a process, a usage record). Exactly one of two
 * things happens to it: `attach(ws)` hands it the upgraded socket, whose close must then release everything;
 * or `release()` is called because no socket came (the client left, the handshake was refused, shutdown).
 */
export interface SocketLease {
  attach(ws: WebSocket): void
  /** Releases everything without a socket; safe to call more than once, and after `attach`. */
  release(): Promise<void>
  /** Settles (never rejects) once everything the lease claimed is released, whichever way it ended. */
  readonly released: Promise<void>
  /**
   * Ends an attached stream because the server shuts down: what it has is finished and sent first (a live
   * transcription's final results), then the socket closes with `close`. Without it the socket is closed
   * with `close` at once.
   */
  shutdown?(close: { code: number; reason: string }): Promise<void>
}

/**
 * One WebSocket route. `prepare` claims what the socket needs, as late as possible: it runs only after the
 * handshake, the credential and the scope passed, so a refused request claims nothing. It throws `ApiError`
 * to refuse the upgrade (a Deepgram-shaped HTTP answer); when it throws it must have released what it took.
 */
export interface SocketRoute {
  /** The exact path, e.g. `/v1/listen`. */
  path: string
  /** The scope the credential needs, e.g. `usage:write`. */
  scope: string
  prepare(ctx: UpgradeContext): Promise<SocketLease>
  /** What `GET /openapi.json` says about the route (docs/openapi.md); every served route has one. */
  doc?: SocketRouteDoc
}

export interface SocketRoutesOptions {
  authenticator: Authenticator
  routes: readonly SocketRoute[]
  /** Largest single WebSocket message, bytes. Default 4 MiB. */
  maxPayload?: number
  /** How long shutdown waits for open sockets to release what they hold, ms. Default 10 s. */
  shutdownGraceMs?: number
  /** Closes an open socket whose credential is revoked or expires (docs/revocation.md). */
  guard?: StreamGuard
  /** The access checks, the same gate the HTTP routes run (binding, limits, suspicious activity). */
  gate?: AccessGate
  /** Where the streams a revocation closed are recorded (`stream.revoked`, docs/audit.md). */
  audit?: AuditLog
  /** Proxies whose `X-Forwarded-For` names the client, the HTTP routes' rule (docs/limits.md); default none. */
  trustProxy?: ProxyTrust
  /** Where open sockets are listed for the streams API (docs/live-streams.md). */
  streams?: LiveStreams
  /** A refusal for every new upgrade (the server drains, docs/deploy.md), or undefined to admit it. */
  refuseNew?: () => ApiError | undefined
  /** Told how each upgrade was answered: 101, or the refusal's status (`unmatched`: no such route). */
  onUpgrade?: (route: string, status: number) => void
}

/** The socket side of the app: which paths it serves, and how many upgrades and sockets are live. */
export interface SocketServer {
  readonly paths: readonly string[]
  /** Upgrades being handled plus sockets whose lease is not yet released. */
  readonly active: number
  /**
   * Closes the open socket of `requestId` with 1011 `NET-0000` (a server fault in its work, caught by the
   * process's last resort); its close releases what its lease holds. False when no such socket is open.
   */
  fault(requestId: string): boolean
  /** Sockets open now on `path`. */
  openOn(path: string): number
  /** Resolves once no upgrade is being handled and every lease let go of what it held. */
  idle(): Promise<void>
  /**
   * Ends every open socket for a shutdown: each stream finishes what it has (see `SocketLease.shutdown`) and
   * closes with `close`. Resolves once their leases are released, or after the shutdown grace.
   */
  shutdown(close: { code: number; reason: string }): Promise<void>
}

/**
 * Credentials of an upgrade: the `Authorization` header, else the subprotocol pair `token, <key>` /
 * `bearer, <jwt>` (docs/deepgram-compat.md §0 #1-2, §1.1). Returns the subprotocol to echo, never the secret.
 */
export function upgradeCredentials(
  req: IncomingMessage,
): { scheme: Scheme; secret: string; protocol: string | undefined } | undefined {
  const offered = offeredProtocols(req.headers['sec-websocket-protocol']) ?? []
  const first = offered[0]?.toLowerCase()
  const fromHeader = parseAuthorization(req.headers.authorization)
  if (fromHeader) {
    // A client that also offers protocols must get one back; echo the scheme name only.
    const protocol = first === 'token' || first === 'bearer' ? offered[0] : undefined
    return { ...fromHeader, protocol }
  }
  if ((first === 'token' || first === 'bearer') && offered[1]) {
    return { scheme: first, secret: offered[1], protocol: offered[0] }
  }
  return undefined
}

function firstHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value
}

function queryOf(url: URL): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {}
  for (const key of new Set(url.searchParams.keys())) {
    const all = url.searchParams.getAll(key)
    query[key] = all.length === 1 ? (all[0] ?? '') : all
  }
  return query
}

/** How a lease records a client that left between the claim and the 101 (RFC 6455's "abnormal closure"). */
export const UPGRADE_GONE = { code: 1006, reason: 'client gone before the upgrade completed' } as const

/** The client is gone (reset, or half-closed) or the socket was destroyed: nothing should be claimed for it. */
function gone(socket: Duplex): boolean {
  return socket.destroyed || !socket.readable || !socket.writable
}

/** A refusal in place of the 101, in Deepgram's shape (see `refuseUpgrade`). */
function refuse(socket: Duplex, err: ApiError, requestId: string, extra: Record<string, string> = {}): void {
  refuseUpgrade(
    socket,
    { status: err.status, err_code: err.code, err_msg: err.message, request_id: requestId },
    extra,
  )
}

/** Why the server closed a socket from outside its session (a revocation, a fault): what its usage says. */
const serverCloses = new WeakMap<WebSocket, string>()

/** The reason the server gave when it closed `ws` from outside its session, if it did. */
export function serverCloseReason(ws: WebSocket): string | undefined {
  return serverCloses.get(ws)
}

/** Closes a socket from the server's side; a client that never answers the close frame is cut. */
function closeSocket(ws: WebSocket, code: number, reason: string): void {
  serverCloses.set(ws, reason)
  ws.close(code, reason)
  setTimeout(() => ws.terminate(), 1000).unref()
}

/**
 * Serves WebSocket upgrades on the app's HTTP server for `routes`. One path for every route: check the
 * handshake → find the route → authenticate → check the scope → `prepare` (claims) → 101 → `attach`.
 * Whatever happens between the claim and the 101 (the client leaves, `ws` refuses, the server shuts down),
 * the lease is released; after the 101 the socket owns it.
 */
export function attachSocketRoutes(app: FastifyInstance, o: SocketRoutesOptions): SocketServer {
  const routes = new Map(o.routes.map((r) => [r.path, r]))
  const gate = o.gate ?? OPEN_GATE
  if (routes.size !== o.routes.length) throw new Error('two socket routes share a path')
  documentSocketRoutes(app, o.routes)
  const log = app.log
  const chosen = new WeakMap<IncomingMessage, string | undefined>()
  const requestIds = new WeakMap<IncomingMessage, string>()
  /** Upgrades being handled, and leases not yet released: shutdown waits for both. */
  const pending = new Set<Promise<void>>()
  /** Upgraded sockets by request id, with their route and lease, until they close. */
  const open = new Map<string, { ws: WebSocket; route: string; lease: SocketLease }>()
  /** The route each upgrade asked for, once known (for `onUpgrade`). */
  const routeOf = new WeakMap<IncomingMessage, string>()
  /** Set once the app starts closing (see the preClose hook below). */
  let closing = false
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: o.maxPayload ?? 4 * 1024 * 1024,
    perMessageDeflate: false,
    handleProtocols: (_protocols, req) => chosen.get(req) ?? false,
  })

  const track = (p: Promise<void>) => {
    const settled = p.then(
      () => {},
      () => {},
    )
    pending.add(settled)
    void settled.then(() => pending.delete(settled))
  }

  /** A refusal, logged like an access-log line (no URL: a query or a path may hold a pasted secret). */
  const answer = (
    req: IncomingMessage,
    socket: Duplex,
    err: ApiError,
    requestId: string,
    headers?: Record<string, string>,
  ) => {
    o.onUpgrade?.(routeOf.get(req) ?? 'unmatched', err.status)
    log.info({ request_id: requestId, status: err.status, err_code: err.code }, 'upgrade refused')
    refuse(socket, err, requestId, { ...err.headers, ...headers })
  }

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer, requestId: string) => {
    const refusal = checkHandshake(req)
    if (refusal) {
      answer(req, socket, refusal.error, requestId, refusal.headers)
      return
    }
    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://localhost')
    } catch {
      throw new ApiError('BAD_REQUEST', 'Invalid request target.')
    }
    const route = routes.get(url.pathname)
    if (!route) throw new ApiError('NOT_FOUND')
    routeOf.set(req, route.path)
    if (closing) throw new ApiError('SERVICE_UNAVAILABLE')
    const refusedNew = o.refuseNew?.()
    if (refusedNew) throw refusedNew
    const access: AccessRequest = {
      transport: 'ws',
      kind: 'usage',
      route: route.path,
      ip: o.trustProxy ? o.trustProxy.clientAddress(req) : (req.socket.remoteAddress ?? ''),
      origin: firstHeader(req.headers.origin),
      userAgent: firstHeader(req.headers['user-agent']),
      requestId,
    }
    const credentials = upgradeCredentials(req)
    // Peeked first (memory only), so the access checks know the credential costs no store query.
    if (credentials && o.authenticator.peek(credentials.scheme, credentials.secret))
      access.credentialCached = true
    await gate.beforeAuth(access)
    let principal: Principal
    try {
      if (!credentials) throw new ApiError('INVALID_AUTH')
      principal = await o.authenticator.authenticate(credentials.scheme, credentials.secret)
    } catch (err) {
      if (isApiError(err) && err.code === 'INVALID_AUTH') gate.authFailed(access, err)
      throw err
    }
    try {
      requireScope(principal, route.scope)
      await gate.admit(principal, access)
    } catch (err) {
      if (isApiError(err)) gate.refused(principal, access, err)
      throw err
    }
    if (gone(socket)) {
      // Left while its credential was checked: nothing was claimed. Destroyed, since no one reads it.
      socket.destroy()
      return
    }
    if (closing) throw new ApiError('SERVICE_UNAVAILABLE')
    const refusedLate = o.refuseNew?.()
    if (refusedLate) throw refusedLate
    const lease = await route.prepare({ req, url, query: queryOf(url), principal, access, requestId, log })
    track(lease.released)
    if (gone(socket) || closing) {
      await lease.release()
      if (!gone(socket)) throw new ApiError('SERVICE_UNAVAILABLE')
      socket.destroy()
      return
    }
    chosen.set(req, credentials.protocol)
    let attached = false
    // ws completes a sound handshake synchronously (no verifyClient is set): when the callback has not run
    // by the time handleUpgrade returns, ws refused or dropped the socket, and the lease is released here.
    wss.handleUpgrade(req, socket, head, (ws) => {
      attached = true
      o.onUpgrade?.(route.path, 101)
      open.set(requestId, { ws, route: route.path, lease })
      const unlist = o.streams?.add({
        requestId,
        projectId: principal.projectId,
        keyId: principal.keyId,
        endUser: endUserOf(principal),
        jti: principal.grant?.jti ?? null,
        grantExpiresAt: principal.grant ? principal.grant.exp * 1000 : null,
        route: route.path,
        ip: access.ip,
      })
      const unwatch = o.guard?.watch(principal, (close) => {
        log.info({ request_id: requestId, code: close.code, reason: close.reason }, 'credential revoked')
        closeSocket(ws, close.code, close.reason)
        o.audit?.record({
          ...auditContext(principal, access),
          type: 'stream.revoked',
          keyId: principal.keyId,
          detail: {
            route: route.path,
            code: close.code,
            reason: close.reason,
            ...(principal.grant ? { jti: principal.grant.jti } : {}),
          },
        })
      })
      // A credential's `max_session_duration_seconds` ends the stream (docs/credential-options.md).
      const sessionMs = maxSessionMs(principal)
      const sessionTimer =
        sessionMs === undefined
          ? undefined
          : setTimeout(() => {
              log.info({ request_id: requestId, ...SESSION_LIMIT_CLOSE }, 'session duration reached')
              closeSocket(ws, SESSION_LIMIT_CLOSE.code, SESSION_LIMIT_CLOSE.reason)
            }, sessionMs).unref()
      ws.once('close', () => {
        open.delete(requestId)
        unlist?.()
        unwatch?.()
        clearTimeout(sessionTimer)
      })
      try {
        lease.attach(ws)
      } catch (err) {
        log.error({ err, request_id: requestId }, 'socket attach failed')
        ws.terminate()
        void lease.release()
      }
    })
    if (!attached) {
      socket.destroy()
      await lease.release()
    }
  }

  // Every 101 carries the request id, like every HTTP response.
  wss.on('headers', (headers, req) => {
    const id = requestIds.get(req)
    if (id) headers.push(`dg-request-id: ${id}`)
  })

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    const requestId = randomUUID()
    requestIds.set(req, requestId)
    const job = requestScope
      .run(requestId, () => upgrade(req, socket, head, requestId))
      .catch((err: unknown) => {
        if (isApiError(err)) return answer(req, socket, err, requestId)
        log.error({ err, request_id: requestId }, 'upgrade failed')
        answer(req, socket, new ApiError('INTERNAL_ERROR'), requestId)
      })
    track(job)
  })

  // server.close() waits for every socket, upgraded ones included, so an open stream would hold app.close()
  // until its client stops sending (forever, for a steady client): end the sockets before the server closes,
  // refuse upgrades from then on, and wait until every lease let go of what it held (engine streams, ffmpeg,
  // usage records), so the engine and the store close after them.
  const released = async () => {
    const grace = new Promise<void>((resolve) => setTimeout(resolve, o.shutdownGraceMs ?? 10_000).unref())
    const timedOut = await Promise.race([Promise.all([...pending]).then(() => false), grace.then(() => true)])
    if (timedOut) log.error({ pending: pending.size }, 'sockets still held resources at shutdown')
  }
  app.addHook('preClose', async () => {
    closing = true
    for (const client of wss.clients) client.terminate()
    await released()
  })
  app.addHook('onClose', async () => {
    for (const client of wss.clients) client.terminate()
    wss.close()
  })
  return {
    paths: [...routes.keys()],
    get active() {
      return pending.size
    },
    fault(requestId) {
      const socket = open.get(requestId)
      if (!socket) return false
      closeSocket(socket.ws, 1011, 'NET-0000')
      return true
    },
    openOn(path) {
      let n = 0
      for (const socket of open.values()) if (socket.route === path) n++
      return n
    },
    async idle() {
      while (pending.size > 0) await Promise.all([...pending])
    },
    async shutdown(close) {
      for (const { ws, lease } of open.values()) {
        if (lease.shutdown) {
          void lease.shutdown(close).catch((err: unknown) => {
            log.error({ err }, 'stream failed to end for the shutdown')
            ws.terminate()
          })
        } else {
          closeSocket(ws, close.code, close.reason)
        }
      }
      await released()
    },
  }
}
