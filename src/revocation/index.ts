export { createGrantDenylist, type GrantDenylist, type GrantDenylistOptions } from './grant-denylist.js'
export { createLiveStreams, type LiveStream, type LiveStreams } from './live-streams.js'
export {
  createRevocationBus,
  type RevocationBus,
  type RevocationBusOptions,
  type RevocationEvent,
  type RevocationListener,
} from './revocation-bus.js'
export {
  createStreamGuard,
  REVOCATION_CLOSE,
  type RevocationClose,
  type StreamGuard,
  type StreamGuardOptions,
} from './stream-guard.js'
