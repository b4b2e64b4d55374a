const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

/**
 * Turns a byte stream of s16le into whole samples. A chunk may end half-way through a sample (an odd byte
 * count); that byte is carried over to the next chunk, so no sample is ever split or lost.
 */
export interface PcmAssembler {
  /** The whole samples completed by `bytes` (possibly none), copied: the caller may reuse `bytes`. */
  push(bytes: Uint8Array): Int16Array
  /** True while half a sample is waiting for its second byte. */
  readonly pending: boolean
}

export function createPcmAssembler(): PcmAssembler {
  let carry = -1
  return {
    push(bytes) {
      const total = bytes.length + (carry >= 0 ? 1 : 0)
      const usable = total - (total % 2)
      const out = new Uint8Array(usable)
      if (usable === 0) {
        if (bytes.length === 1) carry = bytes[0] ?? 0
        return new Int16Array(0)
      }
      let from = 0
      if (carry >= 0) {
        out[0] = carry
        out.set(bytes.subarray(0, usable - 1), 1)
        from = usable - 1
      } else {
        out.set(bytes.subarray(0, usable))
        from = usable
      }
      carry = from < bytes.length ? (bytes[from] ?? 0) : -1
      // The wire is little-endian; Int16Array is in host order.
      if (!HOST_IS_LITTLE_ENDIAN) swap16(out)
      return new Int16Array(out.buffer, 0, usable / 2)
    },
    get pending() {
      return carry >= 0
    },
  }
}

function swap16(bytes: Uint8Array): void {
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const a = bytes[i] ?? 0
    bytes[i] = bytes[i + 1] ?? 0
    bytes[i + 1] = a
  }
}

/** Joins PCM chunks into one array. */
export function concatPcm(parts: readonly Int16Array[]): Int16Array {
  let length = 0
  for (const p of parts) length += p.length
  const out = new Int16Array(length)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
