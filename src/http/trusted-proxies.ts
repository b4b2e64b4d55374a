import type { IncomingMessage } from 'node:http'
import { createAddressList } from '../limits/index.js'

/**
 * Which peers may tell Earmark who the client is (`EARMARK_TRUST_PROXY`, docs/limits.md "Behind a reverse
 * proxy"). One rule for HTTP requests (handed to Fastify as its `trustProxy` function) and WebSocket
 * upgrades (`clientAddress`), so rate limits, `allowed_ips` and suspicious activity see the same address on
 * both transports.
 */
export interface ProxyTrust {
  /** True when `address` is a listed proxy, so the `X-Forwarded-For` entry it added is believed. */
  trusts(address: string, hop: number): boolean
  /**
   * The client's address: the connection's peer, or, while that peer is a trusted proxy, the entry it
   * added to `X-Forwarded-For`, walking from the right until an address that is not a trusted proxy (or the
   * list's left end). Entries a client wrote itself sit left of its own address and are never reached.
   */
  clientAddress(req: IncomingMessage): string
}

/** Compiles the trusted proxies (addresses and CIDR ranges); throws naming an entry that is neither. */
export function createProxyTrust(entries: readonly string[]): ProxyTrust {
  const proxies = createAddressList(entries)
  const trusts = (address: string, _hop: number) => proxies.has(address)
  return {
    trusts,
    clientAddress(req) {
      const peer = req.socket.remoteAddress ?? ''
      if (!trusts(peer, 0)) return peer
      const header = req.headers['x-forwarded-for']
      const forwarded = Array.isArray(header) ? header.join(',') : header
      if (!forwarded) return peer
      // The same walk as Fastify's `request.ip` with a trust function (proxy-addr), so both agree.
      const hops = forwarded.split(',')
      let address = peer
      for (let i = hops.length - 1, hop = 0; i >= 0; i--, hop++) {
        if (hop > 0 && !trusts(address, hop)) break
        address = (hops[i] ?? '').trim()
      }
      return address
    },
  }
}
