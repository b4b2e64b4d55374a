export { CLOSE, type CloseKind } from './close-codes.js'
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './listen-session.js'
export { attachListenSocket, type ListenSocketOptions, upgradeCredentials } from './listen-socket.js'
