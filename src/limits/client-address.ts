import { BlockList, isIP } from 'node:net'

/** Expands an IPv6 address (no zone) into its 8 groups; undefined when it is not one. */
function ipv6Groups(address: string): number[] | undefined {
  const halves = address.split('::')
  if (halves.length > 2) return undefined
  const part = (s: string) => (s === '' ? [] : s.split(':'))
  const head = part(halves[0] ?? '')
  const tail = part(halves[1] ?? '')
  // An embedded IPv4 tail (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) is two groups.
  const last = tail.length > 0 ? tail : head
  const v4 = last[last.length - 1]
  if (v4?.includes('.')) {
    const bytes = v4.split('.').map(Number)
    last.splice(last.length - 1, 1, (((bytes[0] ?? 0) << 8) | (bytes[1] ?? 0)).toString(16))
    last.push((((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)).toString(16))
  }
  const missing = 8 - head.length - tail.length
  if (halves.length === 1 ? missing !== 0 : missing < 0) return undefined
  const groups = [...head, ...new Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail]
  return groups.map((g) => Number.parseInt(g, 16))
}

/**
 * The identity failed authentications are counted under (docs/limits.md): an IPv4 address as it is (an
 * IPv4-mapped IPv6 address as its IPv4 form), an IPv6 address by its /64, since one client commonly holds a
 * whole /64 and could otherwise walk through it.
 */
export function clientBucket(ip: string): string {
  // The common case first, with no parsing: a dotted IPv4 address is its own bucket.
  if (!ip.includes(':')) return ip
  const address = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
  if (isIP(address) !== 6) return address
  const groups = ipv6Groups(address.split('%')[0] ?? address)
  if (!groups) return address
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`
}

/** A set of addresses and CIDR ranges, IPv4 or IPv6 (`127.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`). */
export interface AddressList {
  readonly size: number
  has(ip: string): boolean
}

/** Parses `entries`; throws naming the first entry that is not an address or a CIDR range. */
export function createAddressList(entries: readonly string[]): AddressList {
  const list = new BlockList()
  for (const entry of entries) {
    const problem = addressRangeProblem(entry)
    if (problem) throw new Error(`${JSON.stringify(entry)}: ${problem}`)
    const [address = '', prefix] = entry.split('/')
    const family = isIP(address) === 4 ? 'ipv4' : 'ipv6'
    if (prefix === undefined) list.addAddress(address, family)
    else list.addSubnet(address, Number(prefix), family)
  }
  return {
    size: entries.length,
    has(ip) {
      const address = ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
      const version = isIP(address)
      if (version === 0) return false
      return list.check(address, version === 4 ? 'ipv4' : 'ipv6')
    },
  }
}

/** Why `entry` is not an address or CIDR range, or undefined when it is one. */
export function addressRangeProblem(entry: string): string | undefined {
  const [address = '', prefix, extra] = entry.split('/')
  const version = isIP(address)
  if (version === 0 || extra !== undefined) return 'not an IPv4 or IPv6 address or CIDR range'
  if (prefix === undefined) return undefined
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (version === 4 ? 32 : 128)) {
    return 'not a valid prefix length'
  }
  return undefined
}
