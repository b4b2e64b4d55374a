import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'

/**
 * Seals secrets Earmark must use again later (a project's upstream key, docs/gateway.md "Per project"), so
 * the store holds only ciphertext: AES-256-GCM under a server key kept outside the store. A database dump
 * or backup alone reveals no upstream key.
 */
export interface SecretBox {
  /** `v1.<base64url(iv | tag | ciphertext)>`; a new random IV each time. */
  seal(plaintext: string): string
  /** The plaintext, or throws when the text was not sealed under this key (tampered, or another key). */
  open(sealed: string): string
}

const VERSION = 'v1.'
const IV_BYTES = 12
const TAG_BYTES = 16

/** A box over a 32-byte key. */
export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== 32) throw new RangeError('The secrets key must be 32 bytes.')
  return {
    seal(plaintext) {
      const iv = randomBytes(IV_BYTES)
      const cipher = createCipheriv('aes-256-gcm', key, iv)
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
      return VERSION + Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
    },
    open(sealed) {
      if (!sealed.startsWith(VERSION)) throw new RangeError('Not a sealed secret.')
      const raw = Buffer.from(sealed.slice(VERSION.length), 'base64url')
      if (raw.length < IV_BYTES + TAG_BYTES) throw new RangeError('Not a sealed secret.')
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES))
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES))
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
        'utf8',
      )
    },
  }
}

/**
 * The server's secrets key: `EARMARK_SECRETS_KEY` (32 bytes, base64) when set, which every node of a cluster
 * must share; else the file `path` (created 0600 with a random key on first use), for one node.
 */
export function loadSecretsKey(fromEnv: string | undefined, path: string): Buffer {
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = Buffer.from(fromEnv, 'base64')
    if (key.length !== 32) throw new RangeError('EARMARK_SECRETS_KEY must be 32 bytes, base64-encoded.')
    return key
  }
  try {
    const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64')
    if (key.length !== 32) throw new RangeError(`${path} does not hold a 32-byte base64 key.`)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = randomBytes(32)
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  // `wx`: two processes starting at once cannot both write one; the loser reads the winner's.
  try {
    writeFileSync(path, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' })
    chmodSync(path, 0o600)
    return key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    return loadSecretsKey(undefined, path)
  }
}
