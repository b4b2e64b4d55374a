import assert from 'node:assert/strict'
import { after, before } from 'node:test'
import type { Clock } from '../../src/auth/index.js'
import type { AuditEvent, AuditFilter } from '../../src/store/index.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import { recordSecrets } from '../helpers/test-logs.js'

export const DAY_MS = 24 * 3600 * 1000

/** The owner's calls the quota tests make on a live server: plain HTTP with the owner key. */
export interface QuotaApi {
  /** Any route, as the owner; the status and the parsed body. */
  call(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; body: Record<string, unknown> }>
  /** `POST /v1/projects/:id/keys` with `quotas` (a member key); asserts 200. */
  createKey(quotas: unknown, comment?: string): Promise<{ key: string; id: string }>
  /** `PATCH /v1/projects/:id/settings` with a `quotas` section; asserts 200 and returns the section shown. */
  setProjectQuotas(quotas: unknown): Promise<unknown>
  /** The project's audit events matching `filter`, once the audit trail is flushed. */
  auditEvents(filter: AuditFilter): Promise<AuditEvent[]>
  /** The audio seconds a key's usage records add up to, as the store sums them. */
  spentSeconds(keyId: string): Promise<number>
}

/** One quota suite's server: a live Earmark started before its tests (on `clock` if given), closed after. */
export interface QuotaSuite {
  /** The owner's calls, good once the suite's `before` ran. */
  api: QuotaApi
  /** The server; throws before the suite's `before` ran. */
  server(): LiveServer
}

/** Registers the suite's `before` and `after`: call it first in a `describe`, then add the suite's own. */
export function quotaSuite(env: Record<string, string> = {}, clock?: Clock): QuotaSuite {
  let srv: LiveServer | undefined
  before(async () => {
    srv = await startLiveServer(env, clock)
  })
  after(() => srv?.close())
  const server = () => {
    if (!srv) throw new Error('the quota suite has not started its server yet')
    return srv
  }
  return { api: quotaApi(server), server }
}

function quotaApi(server: () => LiveServer): QuotaApi {
  const call: QuotaApi['call'] = async (method, path, body) => {
    const srv = server()
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }
  return {
    call,
    async createKey(quotas, comment = 'quota test') {
      const res = await call('POST', `/v1/projects/${server().projectId}/keys`, {
        comment,
        scopes: ['member'],
        quotas,
      })
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const key = String(res.body.key)
      recordSecrets(key)
      return { key, id: String(res.body.api_key_id) }
    },
    async setProjectQuotas(quotas) {
      const res = await call('PATCH', `/v1/projects/${server().projectId}/settings`, { quotas })
      assert.equal(res.status, 200, JSON.stringify(res.body))
      return res.body.quotas
    },
    async auditEvents(filter) {
      const { earmark, projectId } = server()
      await earmark.services.audit?.flush()
      return earmark.services.store.listAuditEvents(projectId, filter)
    },
    spentSeconds(keyId) {
      const { earmark, projectId } = server()
      return earmark.services.store.sumAudioSeconds(projectId, { keyId, start: 0 })
    },
  }
}
