export { type FetchAudioOptions, fetchAudio } from './fetch-audio.js'
export { type ListenOptions, parseListenOptions } from './listen-options.js'
export {
  metadataMessage,
  prerecordedResponse,
  punctuatedWords,
  type ResultsContext,
  resultsMessage,
} from './results.js'
