export { CLOSE, type CloseKind } from './close-codes.js'
export { checkHandshake, type HandshakeRefusal, WEBSOCKET_VERSION } from './handshake.js'
export { DEFAULT_SESSION_LIMITS, type SessionLimits } from './listen-session.js'
export {
  createListenRoute,
  LIVE_MAX_BYTES_BEFORE_AUDIO,
  LIVE_UNRECOGNISED_TIMEOUT_MS,
  type ListenSocketOptions,
} from './listen-socket.js'
export { DEFAULT_SPEAK_LIMITS, SPEAK_CLOSE, type SpeakSessionLimits } from './speak-session.js'
export { createSpeakRoute, type SpeakSocketOptions } from './speak-socket.js'
export {
  attachSocketRoutes,
  type SocketLease,
  type SocketRoute,
  type SocketRouteDoc,
  type SocketRoutesOptions,
  type SocketServer,
  type UpgradeContext,
  upgradeCredentials,
} from './upgrade.js'
