import assert from 'node:assert/strict'
import type { LiveServer } from '../helpers/live-server.js'
import { recordSecrets } from '../helpers/test-logs.js'

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
}

export function quotaApi(srv: LiveServer): QuotaApi {
  const owner = { authorization: `Token ${srv.ownerKey}`, 'content-type': 'application/json' }
  const call: QuotaApi['call'] = async (method, path, body) => {
    const res = await fetch(`${srv.url}${path}`, {
      method,
      headers: owner,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }
  return {
    call,
    async createKey(quotas, comment = 'quota test') {
      const res = await call('POST', `/v1/projects/${srv.projectId}/keys`, {
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
      const res = await call('PATCH', `/v1/projects/${srv.projectId}/settings`, { quotas })
      assert.equal(res.status, 200, JSON.stringify(res.body))
      return res.body.quotas
    },
  }
}
