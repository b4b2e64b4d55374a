export {
  type AccessGate,
  type AccessKind,
  type AccessRequest,
  type AccessStage,
  createAccessGate,
  OPEN_GATE,
} from './access-gate.js'
export {
  checkBinding,
  createBindingStage,
  createRedeemStage,
  credentialBinding,
  ipAllowed,
  maxSessionMs,
  type RedeemStageOptions,
  SESSION_LIMIT_CLOSE,
} from './binding-stage.js'
export {
  createMemoryJtiLedger,
  type JtiLedger,
  type MemoryJtiLedger,
  type MemoryJtiLedgerOptions,
} from './jti-ledger.js'
