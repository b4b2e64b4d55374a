export {
  type CapacityShare,
  type CapacityShareLimits,
  type CapacityShareOptions,
  createCapacityShare,
  defaultShare,
  type ShareHolder,
  type ShareSubject,
  shareRefusal,
  shareSubject,
} from './capacity-share.js'
export { type FetchAudioOptions, fetchAudio } from './fetch-audio.js'
export { checkListenConstraints, DEFAULT_LISTEN_MODEL } from './listen-constraints.js'
export { isListenModel, LISTEN_MODELS } from './listen-models.js'
export { detectionLanguage, type ListenOptions, parseListenOptions } from './listen-options.js'
export { listenQueryDoc } from './listen-query-doc.js'
export {
  type AdmitHooks,
  createListenUseCase,
  type ListenClaim,
  type ListenObserver,
  type ListenPlan,
  type ListenRequest,
  type ListenTransport,
  type ListenUseCase,
  type ListenUseCaseOptions,
  planListen,
  toListenApiError,
} from './listen-use-case.js'
export { createProjectEngines, type ProjectEngines, type ProjectEnginesOptions } from './project-engines.js'
export {
  metadataMessage,
  prerecordedResponse,
  punctuatedWords,
  type ResultOptions,
  type ResultsContext,
  resultsMessage,
} from './results.js'
export { audioTooLong, type Recording, transcribeRecording } from './transcribe-recording.js'
