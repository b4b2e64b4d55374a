import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import Fastify from 'fastify'
import { loadConfig } from '../../src/config/index.js'
import { createProxyTrust } from '../../src/http/index.js'

// Who the client is behind a reverse proxy (docs/limits.md, "Behind a reverse proxy"): one rule, given to
// Fastify for HTTP and used by the WebSocket upgrade, so both transports see the same address.

interface Case {
  name: string
  trusted: string[]
  peer: string
  forwardedFor?: string
  client: string
}

const CASES: Case[] = [
  {
    name: 'no proxy trusted: the peer, header ignored',
    trusted: [],
    peer: '10.0.0.5',
    forwardedFor: '1.2.3.4',
    client: '10.0.0.5',
  },
  {
    name: 'an untrusted peer: its header is ignored',
    trusted: ['127.0.0.1'],
    peer: '10.0.0.5',
    forwardedFor: '1.2.3.4',
    client: '10.0.0.5',
  },
  {
    name: 'a trusted peer without the header: the peer',
    trusted: ['127.0.0.1'],
    peer: '127.0.0.1',
    client: '127.0.0.1',
  },
  {
    name: 'a trusted peer: the entry it added',
    trusted: ['127.0.0.1'],
    peer: '127.0.0.1',
    forwardedFor: '203.0.113.7',
    client: '203.0.113.7',
  },
  {
    name: 'a forged entry left of the real address is never reached',
    trusted: ['127.0.0.1'],
    peer: '127.0.0.1',
    forwardedFor: '198.51.100.1, 203.0.113.7',
    client: '203.0.113.7',
  },
  {
    name: 'a chain of trusted proxies is walked through',
    trusted: ['127.0.0.1', '10.0.0.0/8'],
    peer: '127.0.0.1',
    forwardedFor: '198.51.100.1, 203.0.113.7, 10.1.2.3',
    client: '203.0.113.7',
  },
  {
    name: 'every hop trusted: the leftmost entry',
    trusted: ['127.0.0.0/8'],
    peer: '127.0.0.1',
    forwardedFor: '127.0.0.9,127.0.0.8',
    client: '127.0.0.9',
  },
  {
    name: 'an IPv4-mapped peer matches an IPv4 range',
    trusted: ['127.0.0.1'],
    peer: '::ffff:127.0.0.1',
    forwardedFor: '2001:db8::1',
    client: '2001:db8::1',
  },
  {
    name: 'IPv6 proxies',
    trusted: ['::1', 'fd00::/8'],
    peer: '::1',
    forwardedFor: '192.0.2.1, fd12::3',
    client: '192.0.2.1',
  },
]

function fakeRequest(peer: string, forwardedFor: string | undefined): IncomingMessage {
  return {
    socket: { remoteAddress: peer },
    headers: forwardedFor === undefined ? {} : { 'x-forwarded-for': forwardedFor },
  } as unknown as IncomingMessage
}

describe('EARMARK_TRUST_PROXY: the client address behind a reverse proxy', () => {
  for (const c of CASES) {
    it(`${c.name}, the same for an upgrade and for Fastify's request.ip`, async () => {
      const trust = createProxyTrust(c.trusted)
      assert.equal(trust.clientAddress(fakeRequest(c.peer, c.forwardedFor)), c.client, 'upgrade')
      const app = Fastify(c.trusted.length > 0 ? { trustProxy: trust.trusts } : {})
      app.get('/', async (request) => ({ ip: request.ip }))
      try {
        const res = await app.inject({
          method: 'GET',
          url: '/',
          remoteAddress: c.peer,
          headers: c.forwardedFor === undefined ? {} : { 'x-forwarded-for': c.forwardedFor },
        })
        assert.equal(res.json<{ ip: string }>().ip, c.client, 'HTTP')
      } finally {
        await app.close()
      }
    })
  }

  it('reads the list from the environment, empty by default, and refuses an entry that is not an address or range', () => {
    assert.deepEqual(loadConfig({}).trustProxy, [])
    assert.deepEqual(loadConfig({ EARMARK_TRUST_PROXY: ' 127.0.0.1, 10.0.0.0/8 ,::1' }).trustProxy, [
      '127.0.0.1',
      '10.0.0.0/8',
      '::1',
    ])
    for (const bad of ['nginx', '10.0.0.0/33', '127.0.0.1/8/1', 'loopback']) {
      assert.throws(() => loadConfig({ EARMARK_TRUST_PROXY: bad }), /EARMARK_TRUST_PROXY/, bad)
    }
  })
})
