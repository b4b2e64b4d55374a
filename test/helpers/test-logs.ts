import { appendFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { type DestinationStream, pino } from 'pino'

/**
 * The log-scan test's evidence (scripts/run-tests.mjs): when `EARMARK_TEST_LOG_DIR` is set, every server the
 * helpers start logs at debug into a file there, and every secret the suite handles (minted, sent back, or
 * presented as credentials) is written to a `secrets-*.txt` file beside them. `test/log-scan/` then reads
 * both. Without the variable nothing is written and servers stay silent.
 */
export const TEST_LOG_DIR: string | undefined = process.env.EARMARK_TEST_LOG_DIR || undefined

let files = 0

/** A fresh file name in the log directory for one server of this process. */
export function testLogPath(kind: string): string | undefined {
  if (!TEST_LOG_DIR) return undefined
  files += 1
  return join(TEST_LOG_DIR, `${kind}-${process.pid}-${files}.log`)
}

/** A synchronous file destination for a server's pino logger, or undefined when not collecting. */
export function testLogDestination(kind: string): DestinationStream | undefined {
  const path = testLogPath(kind)
  // Synchronous, so a test process that exits right after its last request loses no line.
  return path ? pino.destination({ dest: path, sync: true }) : undefined
}

/** Appends `line` to a log file of the collection (a child server's output). */
export function appendTestLog(path: string | undefined, line: string): void {
  if (path) appendFileSync(path, `${line}\n`)
}

const KEY = /emk_[A-Za-z0-9_]+/g
const JWT = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/g

/** Records secrets (one a line) for the scan. */
export function recordSecrets(...secrets: Array<string | undefined>): void {
  if (!TEST_LOG_DIR) return
  const found = secrets.filter((s): s is string => typeof s === 'string' && s.length >= 16)
  if (found.length > 0)
    appendFileSync(join(TEST_LOG_DIR, `secrets-${process.pid}.txt`), `${found.join('\n')}\n`)
}

/** Every key- or JWT-shaped run in `text`. */
export function secretsIn(text: string): string[] {
  return [...(text.match(KEY) ?? []), ...(text.match(JWT) ?? [])]
}

/**
 * Records every credential a request presents (Authorization, WebSocket subprotocols) and every secret an
 * answer carries (a created key, a grant token), so the scan looks for the secrets really used.
 */
export function recordSecretsOf(app: FastifyInstance): void {
  if (!TEST_LOG_DIR) return
  app.addHook('onRequest', (request, _reply, done) => {
    const { authorization, 'sec-websocket-protocol': protocols } = request.headers
    recordSecrets(...secretsIn(`${authorization ?? ''} ${protocols ?? ''} ${request.url}`))
    done()
  })
  app.addHook('onSend', (_request, _reply, payload, done) => {
    if (typeof payload === 'string') recordSecrets(...secretsIn(payload))
    done(null, payload)
  })
}
