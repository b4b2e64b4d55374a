export {
  AUDIO_DECODE_ERRORS,
  AudioDecodeError,
  type AudioDecodeErrorCode,
  isAudioDecodeError,
} from './audio-decode-error.js'
export { type AudioDecoder, createAudioDecoder } from './audio-decoder.js'
export { knownDuration } from './audio-duration.js'
export {
  AUTODETECT,
  type AudioDecoderOptions,
  type AudioFormat,
  CONTAINER_ENCODINGS,
  type ContainerEncoding,
  DEFAULT_MAX_PENDING_BYTES,
  PCM_SAMPLE_RATE,
  parseAudioOptions,
  RAW_ENCODINGS,
  type RawEncoding,
} from './audio-format.js'
export { type DecodeAllOptions, decodeAll, decodeStream } from './decode-all.js'
export type { DecoderState } from './decoder-events.js'
export { concatPcm } from './pcm.js'
export {
  type SpooledUpload,
  type SpoolOptions,
  spoolUpload,
  sweepSpoolDir,
  tooLarge,
} from './upload-spool.js'
export { MAX_WAV_HEADER_BYTES, type PcmLayout, parseWavHeader, type WavHeader } from './wav-header.js'
