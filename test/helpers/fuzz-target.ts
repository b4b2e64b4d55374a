import type { AddressInfo } from 'node:net'
import { addMember } from '../../src/projects/index.js'
import { type LiveServer, startLiveServer } from './live-server.js'
import { rawRequest } from './raw-http.js'

/** A running Earmark to fuzz, with credentials and real ids to aim at. */
export interface FuzzServer {
  srv: LiveServer
  port: number
  /** A grant token (1 h) minted from the owner key over HTTP. */
  grant: string
  /** A throwaway key a fuzz case may delete (re-made before a case when it is gone). */
  victimKeyId: string
  /** A member (not the owner) whose role a case may change. */
  subjectMemberId: string
  /** A usage record id that exists. */
  requestId: string
}

/**
 * One real Earmark (real SQLite file, real PocketSphinx, loopback) shared by the cases of a property, with
 * the checks every case ends with. A case that leaves the server broken (a leaked slot, a process-level
 * error, no answer) marks it dirty, and the next case gets a fresh server: shrinking then replays each
 * candidate on a clean server, so the counterexample it reports is really minimal.
 */
export interface FuzzTarget {
  /** The server for the next case: restarted if the last one left it broken. */
  ready(): Promise<FuzzServer>
  /**
   * What is wrong after a case: speech slots not back to zero within `deadlineMs` (8 s), an uncaught exception or
   * unhandled rejection anywhere in the process, or the server no longer answering `/healthz` and an
   * authenticated request. Empty when all is well; otherwise the server is marked dirty.
   */
  settle(deadlineMs?: number): Promise<string[]>
  markDirty(): void
  /** Restarts so far (each one followed a broken case). */
  readonly restarts: number
  close(): Promise<void>
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function start(env: Record<string, string>): Promise<FuzzServer> {
  const srv = await startLiveServer(env)
  const port = (srv.earmark.app.server.address() as AddressInfo).port
  const owner = { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' }
  const g = await fetch(`${srv.url}/v1/auth/grant`, {
    method: 'POST',
    headers: owner,
    body: JSON.stringify({ ttl_seconds: 3600 }),
  })
  const grant = ((await g.json()) as { access_token: string }).access_token
  const { services } = srv.earmark
  const subject = await addMember(services, {
    projectId: srv.projectId,
    email: 'subject@fuzz.example',
    role: 'member',
  })
  // A real metered request, so `/requests/:request_id` has an id to find.
  const listen = await fetch(`${srv.url}/v1/listen?encoding=linear16&sample_rate=16000`, {
    method: 'POST',
    headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/octet-stream' },
    body: new Uint8Array(3200),
  })
  const requestId = listen.headers.get('dg-request-id') ?? ''
  await listen.arrayBuffer()
  return { srv, port, grant, victimKeyId: '', subjectMemberId: subject.id, requestId }
}

async function ensureVictim(s: FuzzServer): Promise<void> {
  if (s.victimKeyId) {
    const res = await rawRequest(s.port, {
      method: 'GET',
      target: `/v1/projects/${s.srv.projectId}/keys/${s.victimKeyId}`,
      headers: [['Authorization', `Token ${s.srv.ownerKey}`]],
    })
    if (res.status === 200) return
  }
  const res = await fetch(`${s.srv.url}/v1/projects/${s.srv.projectId}/keys`, {
    method: 'POST',
    headers: { authorization: `Token ${s.srv.ownerKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ comment: 'fuzz victim', scopes: ['usage:write'] }),
  })
  s.victimKeyId = ((await res.json()) as { api_key_id: string }).api_key_id
}

/** Closes a server that may be wedged: gives up after a while rather than hang the suite. */
async function stop(s: FuzzServer): Promise<void> {
  const closed = s.srv.close().then(
    () => true,
    () => true,
  )
  if (!(await Promise.race([closed, new Promise<boolean>((r) => setTimeout(r, 5000, false).unref())]))) {
    s.srv.earmark.app.server.closeAllConnections()
  }
}

/** Every open target's error sink; the test runner's own listeners, held aside while any target is open. */
const sinks = new Set<(err: unknown) => void>()
let held:
  | { uncaught: NodeJS.UncaughtExceptionListener[]; unhandled: NodeJS.UnhandledRejectionListener[] }
  | undefined
const dispatch = (err: unknown) => {
  for (const sink of sinks) sink(err)
}

/**
 * The process must never see an error nobody handled. The test runner's own listeners would fail the test at
 * once and end the property mid-run; held aside while a target is open, such an error fails the case that
 * caused it instead, and fast-check shrinks it like any other failure.
 */
function watchProcess(sink: (err: unknown) => void): void {
  if (sinks.size === 0) {
    held = {
      uncaught: process.listeners('uncaughtException'),
      unhandled: process.listeners('unhandledRejection'),
    }
    process.removeAllListeners('uncaughtException').on('uncaughtException', dispatch)
    process.removeAllListeners('unhandledRejection').on('unhandledRejection', dispatch)
  }
  sinks.add(sink)
}

function unwatchProcess(sink: (err: unknown) => void): void {
  sinks.delete(sink)
  if (sinks.size > 0 || !held) return
  process.off('uncaughtException', dispatch).off('unhandledRejection', dispatch)
  for (const l of held.uncaught) process.on('uncaughtException', l)
  for (const l of held.unhandled) process.on('unhandledRejection', l)
  held = undefined
  // A server that leaked a slot or a socket may keep the event loop alive after the last close: end the file
  // rather than hang the run (the leak has already failed a case).
  setTimeout(() => {
    if (sinks.size > 0) return
    console.error(
      `fuzz target: still alive 10 s after close (${process.getActiveResourcesInfo().join(', ')}); exiting`,
    )
    process.exit(1)
  }, 10_000).unref()
}

export function createFuzzTarget(env: Record<string, string> = {}): FuzzTarget {
  let current: FuzzServer | undefined
  let dirty = false
  let restarts = 0
  const processErrors: string[] = []
  const onError = (err: unknown) => {
    // The first frame in our own source says where to look.
    const where = err instanceof Error ? /\(([^)]*\/src\/[^)]*)\)/.exec(err.stack ?? '')?.[1] : undefined
    processErrors.push(
      err instanceof Error ? `${err.name}: ${err.message}${where ? ` at ${where}` : ''}` : String(err),
    )
  }
  watchProcess(onError)

  return {
    get restarts() {
      return restarts
    },
    async ready() {
      if (current && dirty) {
        await stop(current)
        current = undefined
        restarts++
      }
      dirty = false
      current ??= await start(env)
      await ensureVictim(current)
      processErrors.length = 0
      return current
    },
    markDirty() {
      dirty = true
    },
    async settle(deadlineMs = 8000) {
      const s = current
      if (!s) return ['no server']
      const problems: string[] = []
      const until = Date.now() + deadlineMs
      while (s.srv.earmark.engine.inUse() > 0 && Date.now() < until) await sleep(20)
      const inUse = s.srv.earmark.engine.inUse()
      if (inUse > 0) problems.push(`engine.inUse() is ${inUse}, not 0, ${deadlineMs} ms after the case`)
      // Rejections are reported after the microtask queue drains: give them a turn of the loop.
      await new Promise((r) => setImmediate(r))
      await new Promise((r) => setImmediate(r))
      for (const e of processErrors.splice(0)) problems.push(`process-level error: ${e}`)
      const health = await rawRequest(s.port, { method: 'GET', target: '/healthz', timeoutMs: 5000 })
      if (health.status !== 200) problems.push(`GET /healthz answered ${health.status || 'nothing'}`)
      const auth = await rawRequest(s.port, {
        method: 'GET',
        target: `/v1/projects/${s.srv.projectId}`,
        headers: [['Authorization', `Token ${s.srv.ownerKey}`]],
        timeoutMs: 5000,
      })
      if (auth.status !== 200) {
        problems.push(`an authenticated GET /v1/projects/:id answered ${auth.status || 'nothing'}`)
      }
      if (problems.length > 0) dirty = true
      return problems
    },
    async close() {
      if (current) await stop(current)
      current = undefined
      unwatchProcess(onError)
    },
  }
}
