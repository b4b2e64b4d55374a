/** WebSocket close codes and reasons of the live API (docs/deepgram-compat.md §7.4). */
export const CLOSE = {
  NORMAL: { code: 1000, reason: '' },
  /** The payload cannot be decoded as audio. */
  BAD_AUDIO: { code: 1008, reason: 'DATA-0000' },
  /** Internal error (also: no text frame could be produced). */
  INTERNAL: { code: 1011, reason: 'NET-0000' },
  /** No audio within the timeout. */
  NO_AUDIO: { code: 1011, reason: 'NET-0001' },
  /** An audio quota of the credential ran out (Earmark extension, docs/quotas.md). */
  QUOTA: { code: 1008, reason: 'QUOTA-0001' },
  /**
   * The server shuts down (Earmark extension, docs/deploy.md "Graceful shutdown"): sent after the stream's
   * final results and Metadata, when it outlived the drain deadline. RFC 6455's 1001 "going away"; clients
   * reconnect, to another node behind a balancer.
   */
  SHUTDOWN: { code: 1001, reason: 'SHUTDOWN-0001' },
} as const

export type CloseKind = keyof typeof CLOSE
