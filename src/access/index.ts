export {
  type AccessGate,
  type AccessKind,
  type AccessRequest,
  type AccessStage,
  createAccessGate,
  OPEN_GATE,
} from './access-gate.js'
