import type { Clock } from '../auth/index.js'

/** One open live stream (`/v1/listen` or `/v1/speak` socket), as the streams API shows it. */
export interface LiveStream {
  requestId: string
  projectId: string
  /** The key that opened it, or for a grant token its parent key. */
  keyId: string
  endUser: string | null
  /** The grant token that opened it (null: the key presented itself). */
  jti: string | null
  /** When that grant token expires, epoch ms (null for a key). */
  grantExpiresAt: number | null
  route: string
  /** Epoch ms. */
  startedAt: number
  ip: string
}

/**
 * The live streams this process holds, by request id (docs/live-streams.md). The socket server adds each
 * stream when it is upgraded and removes it when it closes; the streams API reads it. Per process: with
 * several nodes each lists its own streams, while a revocation reaches every node's (docs/revocation.md).
 */
export interface LiveStreams {
  /** Adds an open stream, started now; returns its removal. */
  add(stream: Omit<LiveStream, 'startedAt'>): () => void
  /** A project's open streams, oldest first. */
  list(projectId: string): LiveStream[]
  get(projectId: string, requestId: string): LiveStream | undefined
  /** Open streams of one grant token. */
  countByJti(projectId: string, jti: string): number
}

export function createLiveStreams({ clock }: { clock: Clock }): LiveStreams {
  const byId = new Map<string, LiveStream>()
  return {
    add(opened) {
      const stream: LiveStream = { ...opened, startedAt: clock.now() }
      byId.set(stream.requestId, stream)
      return () => {
        if (byId.get(stream.requestId) === stream) byId.delete(stream.requestId)
      }
    },
    list: (projectId) => [...byId.values()].filter((s) => s.projectId === projectId),
    get(projectId, requestId) {
      const s = byId.get(requestId)
      return s?.projectId === projectId ? s : undefined
    },
    countByJti: (projectId, jti) =>
      [...byId.values()].filter((s) => s.projectId === projectId && s.jti === jti).length,
  }
}
