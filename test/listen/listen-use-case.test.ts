import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AudioDecodeError } from '../../src/audio/index.js'
import type { Principal } from '../../src/auth/index.js'
import {
  createEngineRegistry,
  type Engine,
  EngineBusyError,
  EngineOptionError,
} from '../../src/engines/index.js'
import { ApiError, isApiError } from '../../src/errors.js'
import {
  createCapacityShare,
  createListenUseCase,
  type ListenRequest,
  type ListenTransport,
} from '../../src/listen/index.js'
import type { Services } from '../../src/projects/index.js'

// The listen use case both transports call (src/listen/listen-use-case.ts): the plan, the admission order
// and the give-backs, without a server. Usage records are covered end to end by the REST and live tests.

function fakeEngine(name: string, capacity: number, inUse = 0): Engine {
  return {
    name,
    sampleRate: 16_000,
    formatting: { punctuation: false, casing: false },
    model: { name, version: '1', arch: name, uuid: `uuid-${name}` },
    capacity,
    inUse: () => inUse,
    openStream: () => Promise.reject(new Error('not used')),
    transcribe: () => Promise.reject(new Error('not used')),
    close: async () => {},
  }
}

const principal = {
  scheme: 'token',
  projectId: 'p1',
  keyId: 'k1',
  memberId: 'm1',
  memberRole: 'owner',
  scopes: new Set(['usage:write']),
  role: 'owner',
  expiresAt: null,
  keyRecord: { tags: [], options: {} },
} as unknown as Principal

function request(transport: ListenTransport, query: Record<string, string> = {}): ListenRequest {
  return { transport, principal, query, access: undefined, requestId: 'r1', path: '/v1/listen' }
}

/** A share of one slot per credential that counts what it handed out and got back. */
function countingShare() {
  const inner = createCapacityShare({ perCredential: 1, perKey: 0, perEndUser: 0 })
  const counts = { claimed: 0, returned: 0 }
  return {
    counts,
    share: {
      ...inner,
      claim(p: Principal) {
        const giveBack = inner.claim(p) as () => void
        counts.claimed++
        return () => {
          counts.returned++
          giveBack()
        }
      },
    },
  }
}

const services = {} as Services

describe('the listen use case', () => {
  const local = fakeEngine('local', 4)
  const remote = fakeEngine('remote', 4)
  const engines = createEngineRegistry([{ engine: remote, models: ['nova-*'] }, { engine: local }])

  it('chooses the engine the model is routed to, and the default for any other model or none', async () => {
    const listen = createListenUseCase({ services, engines })
    assert.equal((await listen.plan(request('live', { model: 'nova-3' }))).engine, remote)
    assert.equal((await listen.plan(request('prerecorded', { model: 'NOVA-2-meeting' }))).engine, remote)
    assert.equal((await listen.plan(request('live', { model: 'base' }))).engine, local)
    assert.equal((await listen.plan(request('prerecorded'))).engine, local)
  })

  it('refuses a callback on both transports with INVALID_FIELD before anything is claimed', async () => {
    const listen = createListenUseCase({ services, engines })
    for (const transport of ['live', 'prerecorded'] as const) {
      await assert.rejects(
        listen.plan(request(transport, { callback: 'https://example.com/hook' })),
        (err: unknown) => isApiError(err) && err.code === 'INVALID_FIELD',
      )
    }
  })

  it('refuses a live stream when its engine is full, before the share is claimed; a pre-recorded request is admitted to queue', async () => {
    const full = fakeEngine('full', 2, 2)
    const { share, counts } = countingShare()
    const listen = createListenUseCase({ services, engines: createEngineRegistry([{ engine: full }]), share })
    const live = request('live')
    await assert.rejects(listen.admit(live, await listen.plan(live)), (err: unknown) => {
      return isApiError(err) && err.code === 'TOO_MANY_REQUESTS'
    })
    assert.equal(counts.claimed, 0)
    const rest = request('prerecorded')
    const claim = await listen.admit(rest, await listen.plan(rest))
    assert.equal(counts.claimed, 1)
    claim.releaseShare()
    claim.releaseShare()
    assert.equal(counts.returned, 1, 'releaseShare gives the slot back once')
  })

  it("gives the share back when the transport's own bound refuses after the claim", async () => {
    const { share, counts } = countingShare()
    const listen = createListenUseCase({ services, engines, share })
    const rest = request('prerecorded')
    let asked = 0
    await assert.rejects(
      listen.admit(rest, await listen.plan(rest), {
        // Free before the claim, full after it (another request took the last upload slot meanwhile).
        refusal: () => (asked++ === 0 ? undefined : new ApiError('TOO_MANY_REQUESTS', 'full')),
      }),
      (err: unknown) => isApiError(err) && err.code === 'TOO_MANY_REQUESTS',
    )
    assert.equal(asked, 2)
    assert.deepEqual(counts, { claimed: 1, returned: 1 })
    // The slot is free again: the credential's one-slot share admits the next request.
    const claim = await listen.admit(rest, await listen.plan(rest))
    claim.releaseShare()
  })

  it('maps what engines and decoders throw to the errors clients get', () => {
    const listen = createListenUseCase({ services, engines })
    const code = (err: unknown) => (isApiError(err) ? err.code : 'not an ApiError')
    assert.equal(code(listen.toApiError(new EngineBusyError())), 'TOO_MANY_REQUESTS')
    const option = listen.toApiError(new EngineOptionError('language', 'English only.'))
    assert.equal(code(option), 'INVALID_FIELD')
    assert.match((option as ApiError).message, /language/)
    assert.equal(code(listen.toApiError(new AudioDecodeError('UNDECODABLE'))), 'BAD_AUDIO')
    const tooLong = () => new ApiError('PAYLOAD_TOO_LARGE', 'long')
    assert.equal(code(listen.toApiError(new AudioDecodeError('TOO_LONG'), tooLong)), 'PAYLOAD_TOO_LARGE')
    const other = new Error('something else')
    assert.equal(listen.toApiError(other), other)
  })
})
