// The engine seam only: engines' own internals (PocketSphinx's decoder, its capacity probe) are reached
// by main.ts and tests through their own folders.
export type {
  Admission,
  CapacityMeasurement,
  Engine,
  EngineCapacity,
  EngineFormatting,
  EngineStats,
  EngineStream,
  FinalHypothesis,
  Hypothesis,
  RelayEngine,
  RelayRequest,
  RelayResponse,
  RelayStream,
  RelayStreamRequest,
  SpeechEngine,
  StreamOptions,
  StreamSink,
  Transcription,
  Word,
} from './engine.js'
export { EngineBusyError, EngineOptionError, isRelayEngine, RelayError } from './engine.js'
export {
  ENGINE_NAMES,
  type EngineEntry,
  type EngineName,
  isEngineName,
  parseEngineList,
} from './engine-names.js'
export {
  createEngine,
  createEngineRegistry,
  type EngineOptionsByName,
  type EngineRegistry,
  type RegisteredEngine,
} from './registry.js'
