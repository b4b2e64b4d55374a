/** What the benchmark server (`auth-server.ts`) tells the runner over IPC once both servers listen. */
export interface ReadyMessage {
  type: 'ready'
  /** Earmark, built by `createEarmark` (e.g. `http://127.0.0.1:41234`). */
  earmarkUrl: string
  /** The bare Fastify baseline in the same process, on its own port. */
  bareUrl: string
  /** The bootstrap owner key's secret (`Token` auth). */
  apiKey: string
  apiKeyId: string
  projectId: string
  /** What the Earmark config was built from, minus the secret. */
  config: { logLevel: string; accessLog: boolean }
}

/** What the speech benchmark server (`speech-server.ts`) tells the runner once its servers listen. */
export interface SpeechReadyMessage {
  type: 'speech-ready'
  /** Earmark (HTTP), e.g. `http://127.0.0.1:41234`. */
  earmarkUrl: string
  /** The same server for WebSocket clients, e.g. `ws://127.0.0.1:41234`. */
  earmarkWsUrl: string
  /** A bare `ws` WebSocketServer in the same process (accepts any upgrade, echoes messages): the baseline. */
  bareWsUrl: string
  /** The bootstrap owner key's secret. */
  apiKey: string
  /** What the Earmark config was built from, minus the secret. */
  config: { logLevel: string; accessLog: boolean; capacity: number; uvThreadpoolSize: string }
}

/** What the memory benchmark server (`memory-server.ts`) tells the runner once Earmark listens. */
export interface MemoryReadyMessage {
  type: 'memory-ready'
  earmarkUrl: string
  apiKey: string
  /** Where Earmark spools uploads (the runner checks it is empty afterwards). */
  uploadDir: string
  /** What the Earmark config was built from, minus the secret. */
  config: {
    capacity: number
    maxUploadBytes: number
    maxAudioSeconds: number
    listenQueue: number
    listenMaxUploads: number
  }
}

/** What one node of the multi-node benchmark (`multinode-server.ts`) tells the runner once it listens. */
export interface NodeReadyMessage {
  type: 'node-ready'
  /** This node, e.g. `http://127.0.0.1:41234`. */
  earmarkUrl: string
  /** `sqlite`, or `postgres+redis` when EARMARK_DATABASE_URL and EARMARK_REDIS_URL are set. */
  backend: 'sqlite' | 'postgres+redis'
}

/** What the runner tells the server: close both servers, remove the data directory, exit. */
export interface StopMessage {
  type: 'stop'
}

/** The runner asks for the server process's CPU time so far; the server answers with a `CpuMessage`. */
export interface CpuRequestMessage {
  type: 'cpu?'
  id: number
}

/** `process.cpuUsage()` of the server process, microseconds. */
export interface CpuMessage {
  type: 'cpu'
  id: number
  userUs: number
  systemUs: number
}

function hasType(value: unknown, type: string): boolean {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === type
}

export function isReadyMessage(value: unknown): value is ReadyMessage {
  return hasType(value, 'ready')
}

export function isSpeechReadyMessage(value: unknown): value is SpeechReadyMessage {
  return hasType(value, 'speech-ready')
}

export function isMemoryReadyMessage(value: unknown): value is MemoryReadyMessage {
  return hasType(value, 'memory-ready')
}

export function isNodeReadyMessage(value: unknown): value is NodeReadyMessage {
  return hasType(value, 'node-ready')
}

export function isStopMessage(value: unknown): value is StopMessage {
  return hasType(value, 'stop')
}

export function isCpuRequestMessage(value: unknown): value is CpuRequestMessage {
  return hasType(value, 'cpu?')
}

export function isCpuMessage(value: unknown): value is CpuMessage {
  return hasType(value, 'cpu')
}

/**
 * The child side of the protocol: answers CPU requests, and on a stop message (or when the runner goes
 * away) runs `close` once and exits normally, so `--cpu-prof` gets to write its profile.
 */
export function serveRunner(send: (message: unknown) => unknown, close: () => Promise<unknown>): void {
  let stopping = false
  const stop = async () => {
    if (stopping) return
    stopping = true
    await close()
    process.exit(0)
  }
  process.on('message', (message) => {
    if (isStopMessage(message)) void stop()
    if (isCpuRequestMessage(message)) {
      const { user, system } = process.cpuUsage()
      const reply: CpuMessage = { type: 'cpu', id: message.id, userUs: user, systemUs: system }
      send(reply)
    }
  })
  process.on('disconnect', () => void stop())
}
