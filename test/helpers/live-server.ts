import type { AddressInfo } from 'node:net'
import WebSocket from 'ws'
import type { Clock } from '../../src/auth/index.js'
import { loadConfig } from '../../src/config/index.js'
import { NO_LIMITS_ENV } from '../../src/limits/index.js'
import { createEarmark, type Earmark } from '../../src/main.js'
import { removeDir, tempDataDir } from './server-process.js'
import { recordSecrets, recordSecretsOf, testLogDestination } from './test-logs.js'

export interface LiveServer {
  earmark: Earmark
  /** `http://127.0.0.1:PORT` */
  url: string
  /** `ws://127.0.0.1:PORT` */
  wsUrl: string
  ownerKey: string
  projectId: string
  close(): Promise<void>
}

/**
 * Earmark from its real composition root (real SQLite file, real PocketSphinx), listening on a free port;
 * `clock` (default the system's) is what it meters and expires by.
 */
export async function startLiveServer(env: Record<string, string> = {}, clock?: Clock): Promise<LiveServer> {
  const dir = tempDataDir()
  const ownerKey = `emk_live_test_${Math.random().toString(16).slice(2)}_owner`
  // Collected for the log-scan test (test/helpers/test-logs.ts); silent otherwise.
  const logTo = testLogDestination('live')
  recordSecrets(ownerKey)
  const config = loadConfig({
    EARMARK_DATA_DIR: dir,
    EARMARK_BOOTSTRAP_KEY: ownerKey,
    EARMARK_LOG_LEVEL: logTo ? 'debug' : 'silent',
    EARMARK_CAPACITY: '2',
    // Most suites fill the slots with the one owner key; test/ws/idle-capacity.test.ts turns the caps on.
    EARMARK_MAX_STREAMS_PER_CREDENTIAL: '0',
    EARMARK_MAX_STREAMS_PER_KEY: '0',
    EARMARK_MAX_STREAMS_PER_END_USER: '0',
    // Rate and failed-authentication limits too; test/limits/ turns them on (docs/limits.md).
    ...NO_LIMITS_ENV,
    ...env,
  })
  const earmark = await createEarmark(config, clock, logTo)
  recordSecretsOf(earmark.app)
  await earmark.app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = earmark.app.server.address() as AddressInfo
  const projectId = earmark.bootstrap?.project.id ?? ''
  return {
    earmark,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    ownerKey,
    projectId,
    close: async () => {
      await earmark.close()
      removeDir(dir)
    },
  }
}

/** What a client saw of one live stream. */
export interface StreamLog {
  /** Set when the upgrade was refused. */
  status?: number
  body?: { err_code?: string; err_msg?: string; request_id?: string }
  headers?: Record<string, string | string[] | undefined>
  protocol?: string
  messages: Record<string, unknown>[]
  close?: { code: number; reason: string }
}

/** Opens a socket and resolves once it is open (or refused). */
export function openSocket(
  url: string,
  /** `localAddress`: the loopback address to connect from (test/multi-node/nginx-two-nodes.test.ts). */
  options: { protocols?: string[]; headers?: Record<string, string>; localAddress?: string } = {},
): Promise<{ ws: WebSocket; log: StreamLog; closed: Promise<StreamLog> }> {
  const log: StreamLog = { messages: [] }
  const ws = new WebSocket(url, options.protocols ?? [], {
    headers: options.headers,
    ...(options.localAddress ? { localAddress: options.localAddress } : {}),
  })
  const closed = new Promise<StreamLog>((resolve) => {
    ws.on('close', (code, reason) => {
      log.close = { code, reason: reason.toString() }
      resolve(log)
    })
    ws.on('error', () => {
      if (log.status !== undefined) resolve(log)
    })
  })
  ws.on('message', (data) => log.messages.push(JSON.parse(String(data)) as Record<string, unknown>))
  return new Promise((resolve) => {
    ws.on('upgrade', (res) => {
      log.headers = res.headers
    })
    ws.on('open', () => {
      log.protocol = ws.protocol
      resolve({ ws, log, closed })
    })
    ws.on('unexpected-response', (_req, res) => {
      log.status = res.statusCode
      log.headers = res.headers
      let text = ''
      res.on('data', (d: Buffer) => {
        text += d.toString()
      })
      res.on('end', () => {
        log.body = JSON.parse(text) as StreamLog['body']
        ws.terminate()
        resolve({ ws, log, closed: Promise.resolve(log) })
      })
    })
  })
}

/**
 * Opens a live stream kept busy with 100 ms of silence every 100 ms (so no idle timeout ends it), for tests
 * of what closes it: `closedAt` is when it closed; `stop()` ends the silence and cuts the socket.
 */
export async function openHeldStream(
  url: string,
  options: Parameters<typeof openSocket>[1] = {},
): Promise<{ ws: WebSocket; log: StreamLog; closedAt: Promise<number>; stop(): void }> {
  const { ws, log } = await openSocket(url, options)
  const closedAt = new Promise<number>((resolve) => ws.once('close', () => resolve(Date.now())))
  const silence = setInterval(() => {
    if (ws.readyState === ws.OPEN) ws.send(Buffer.alloc(3200))
  }, 100)
  return {
    ws,
    log,
    closedAt,
    stop() {
      clearInterval(silence)
      ws.terminate()
    },
  }
}

/** Sends PCM in `ms` chunks, optionally paced in real time. */
export async function sendPcm(ws: WebSocket, pcm: Int16Array, ms = 100, paced = false): Promise<void> {
  const step = (16000 * ms) / 1000
  for (let i = 0; i < pcm.length; i += step) {
    const part = pcm.subarray(i, i + step)
    ws.send(Buffer.from(part.buffer, part.byteOffset, part.byteLength))
    if (paced) await new Promise((r) => setTimeout(r, ms))
  }
}

export function finals(log: StreamLog): string {
  return log.messages
    .filter((m) => m.type === 'Results' && m.is_final === true)
    .map((m) =>
      ((m.channel as { alternatives: { transcript: string }[] }).alternatives[0]?.transcript ?? '').trim(),
    )
    .filter((t) => t.length > 0)
    .join(' ')
}
