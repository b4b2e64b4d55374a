import { hash, randomBytes, timingSafeEqual } from 'node:crypto'
import { crc32 } from 'node:zlib'

/**
 * Key secrets look like `emk_` + 48 hex digits (192 random bits) + 8 hex digits of CRC-32 over the rest.
 * - The prefix lets secret scanners find leaked keys; the checksum lets them (and us) reject typos offline.
 * - Only RFC 7230 token characters, so a secret can travel as a WebSocket subprotocol
 *   (docs/deepgram-compat.md §0 #3).
 */
export const KEY_PREFIX = 'emk_'
const RANDOM_BYTES = 24
const KEY_PATTERN = /^emk_([0-9a-f]{48})([0-9a-f]{8})$/

function checksum(body: string): string {
  return crc32(body).toString(16).padStart(8, '0')
}

/** A new secret. It is shown once; only its hash is kept. */
export function generateKeySecret(): string {
  const body = KEY_PREFIX + randomBytes(RANDOM_BYTES).toString('hex')
  return body + checksum(body)
}

/** True when `secret` has the shape and checksum of an Earmark key (it may still be unknown or revoked). */
export function isWellFormedKey(secret: string): boolean {
  const m = KEY_PATTERN.exec(secret)
  return m !== null && checksum(KEY_PREFIX + m[1]) === m[2]
}

/** SHA-256 of the secret, hex. Keys carry 192 random bits, so a fast unsalted hash is enough. */
export function hashKeySecret(secret: string): string {
  return hash('sha256', secret, 'hex')
}

/** Constant-time comparison of two hex hashes. */
export function hashesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex')
  const y = Buffer.from(b, 'hex')
  return x.length === y.length && timingSafeEqual(x, y)
}
