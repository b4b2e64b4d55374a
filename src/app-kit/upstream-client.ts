import { AppKitError } from './errors.js'

/** What the speech server answered when it said no (status and its Deepgram error fields, if any). */
export class UpstreamRefusal extends Error {
  readonly status: number
  readonly errCode: string | undefined
  readonly errMsg: string | undefined
  readonly requestId: string | undefined

  constructor(status: number, body: unknown) {
    super(`upstream answered ${status}`)
    this.name = 'UpstreamRefusal'
    this.status = status
    const b = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {}
    this.errCode = typeof b.err_code === 'string' ? b.err_code : undefined
    this.errMsg = typeof b.err_msg === 'string' ? b.err_msg : undefined
    this.requestId = typeof b.request_id === 'string' ? b.request_id : undefined
  }
}

/** A key as created upstream (docs/deepgram-compat.md §3): the secret exists only in this answer. */
export interface UpstreamCreatedKey {
  key: string
  api_key_id: string
  expiration_date?: string | null
  tags?: string[]
}

/** The parts of a key the kit reads back. */
export interface UpstreamKey {
  api_key_id: string
  tags: string[]
}

/** A grant (docs/deepgram-compat.md §2). */
export interface UpstreamGrant {
  access_token: string
  expires_in: number
}

/** The speech server's REST API, as the app kit uses it, with the server-held key. */
export interface UpstreamClient {
  projectId(): Promise<string>
  createKey(body: Record<string, unknown>): Promise<UpstreamCreatedKey>
  /** The key, or undefined when the upstream does not know it (404). */
  getKey(keyId: string): Promise<UpstreamKey | undefined>
  deleteKey(keyId: string): Promise<{ message: string }>
  grant(body: Record<string, unknown>): Promise<UpstreamGrant>
  /** `ws(s)://…/v1/listen?<query>` on the upstream. */
  listenUrl(query: URLSearchParams): URL
}

const TIMEOUT_MS = 10_000

/** Joins the upstream base path and an API path (`http://h/dg` + `/v1/x` → `http://h/dg/v1/x`). */
function endpoint(base: URL, path: string): URL {
  const url = new URL(base.href)
  url.pathname = `${base.pathname.replace(/\/+$/, '')}${path}`
  url.search = ''
  url.hash = ''
  return url
}

/** REST client over `fetch` (Node 20's undici). Every failure is an UpstreamRefusal or a 502 AppKitError. */
export function createUpstreamClient(o: { url: URL; apiKey: string; projectId?: string }): UpstreamClient {
  const httpBase = new URL(o.url.href)
  if (httpBase.protocol === 'ws:') httpBase.protocol = 'http:'
  if (httpBase.protocol === 'wss:') httpBase.protocol = 'https:'
  let project: Promise<string> | undefined = o.projectId ? Promise.resolve(o.projectId) : undefined

  const call = async <T>(method: string, path: string, body?: Record<string, unknown>): Promise<T> => {
    let res: Response
    try {
      res = await fetch(endpoint(httpBase, path), {
        method,
        headers: {
          authorization: `Token ${o.apiKey}`,
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(TIMEOUT_MS),
      })
    } catch {
      throw new AppKitError('UPSTREAM_ERROR', 'The speech server could not be reached.')
    }
    const text = await res.text().catch(() => '')
    let json: unknown
    try {
      json = text === '' ? {} : JSON.parse(text)
    } catch {
      json = undefined
    }
    if (!res.ok) throw new UpstreamRefusal(res.status, json)
    if (typeof json !== 'object' || json === null) {
      throw new AppKitError('UPSTREAM_ERROR', 'The speech server sent an unreadable answer.')
    }
    return json as T
  }

  const findProject = async (): Promise<string> => {
    const { projects } = await call<{ projects?: { project_id?: unknown }[] }>('GET', '/v1/projects')
    const id = projects?.[0]?.project_id
    if (typeof id !== 'string') {
      throw new AppKitError('UPSTREAM_ERROR', 'The server key sees no project on the speech server.')
    }
    return id
  }

  const projectId = () => {
    if (!project) {
      const p = findProject()
      project = p
      p.catch(() => {
        if (project === p) project = undefined // try again on the next request
      })
    }
    return project
  }

  return {
    projectId,
    async createKey(body) {
      const pid = await projectId()
      const created = await call<UpstreamCreatedKey>(
        'POST',
        `/v1/projects/${encodeURIComponent(pid)}/keys`,
        body,
      )
      if (typeof created.key !== 'string' || typeof created.api_key_id !== 'string') {
        throw new AppKitError('UPSTREAM_ERROR', 'The speech server sent an unreadable key.')
      }
      return created
    },
    async getKey(keyId) {
      const pid = await projectId()
      let found: Record<string, unknown>
      try {
        found = await call('GET', `/v1/projects/${encodeURIComponent(pid)}/keys/${encodeURIComponent(keyId)}`)
      } catch (err) {
        if (err instanceof UpstreamRefusal && err.status === 404) return undefined
        throw err
      }
      // Both shapes in the wild (docs/deepgram-compat.md §3, the get-key shapes).
      const flat = found.api_key as Record<string, unknown> | undefined
      const item = (found.item as { member?: { api_key?: Record<string, unknown> } } | undefined)?.member
        ?.api_key
      const apiKey = flat ?? item
      if (!apiKey || typeof apiKey.api_key_id !== 'string') return undefined
      const tags = Array.isArray(apiKey.tags) ? apiKey.tags.filter((t) => typeof t === 'string') : []
      return { api_key_id: apiKey.api_key_id, tags }
    },
    async deleteKey(keyId) {
      const pid = await projectId()
      const res = await call<{ message?: unknown }>(
        'DELETE',
        `/v1/projects/${encodeURIComponent(pid)}/keys/${encodeURIComponent(keyId)}`,
      )
      return { message: typeof res.message === 'string' ? res.message : 'Successfully deleted the API key!' }
    },
    async grant(body) {
      const g = await call<UpstreamGrant>('POST', '/v1/auth/grant', body)
      if (typeof g.access_token !== 'string') {
        throw new AppKitError('UPSTREAM_ERROR', 'The speech server sent an unreadable grant.')
      }
      return g
    },
    listenUrl(query) {
      const url = endpoint(o.url, '/v1/listen')
      if (url.protocol === 'http:') url.protocol = 'ws:'
      if (url.protocol === 'https:') url.protocol = 'wss:'
      url.search = query.toString()
      return url
    },
  }
}
