export type {
  Admission,
  Engine,
  EngineStream,
  FinalHypothesis,
  Hypothesis,
  StreamOptions,
  StreamSink,
  Transcription,
  Word,
} from './engine.js'
export { EngineBusyError, EngineOptionError } from './engine.js'
export {
  capacityForRealTimeFactor,
  measureRealTimeFactor,
} from './pocketsphinx/measure-real-time-factor.js'
export { POCKETSPHINX_PACKAGES, PocketsphinxUnavailableError } from './pocketsphinx/pocketsphinx-binding.js'
export {
  createPocketsphinxDecoder,
  DEFAULT_MODEL_DIR,
  type PocketsphinxDecoder,
  type PocketsphinxDecoderOptions,
} from './pocketsphinx/pocketsphinx-decoder.js'
export {
  createPocketsphinxEngine,
  POCKETSPHINX_MODEL,
  type PocketsphinxEngineOptions,
} from './pocketsphinx/pocketsphinx-engine.js'
export { createEngine, ENGINE_NAMES, type EngineName, type EngineOptionsByName } from './registry.js'
