export { MAX_SPEED, MIN_SPEED, parseSpeakQuery, type SpeakQuery } from './speak-query.js'
export { speakQueryDoc } from './speak-query-doc.js'
export { createSpeaker, type Speaker, type SpeakLimits } from './speaker.js'
export {
  DEFAULT_SPEECH_ENCODING,
  resolveSpeechFormat,
  SPEECH_CONTAINERS,
  SPEECH_ENCODINGS,
  type SpeechContainer,
  type SpeechEncoding,
  type SpeechFormat,
  type SpeechFormatRequest,
} from './speech-format.js'
export { createSpeechJobs, type SpeechJobs, type SpeechJobsOptions } from './speech-jobs.js'
export {
  encoderArgs,
  type Speech,
  type SpeechTools,
  type SynthesizeOptions,
  synthesize,
} from './synthesize.js'
export {
  DEFAULT_SPEAK_MODEL,
  getVoice,
  isSpeakModel,
  MALE_AURA_NAMES,
  resolveVoice,
  VOICE_IDS,
  type Voice,
  type VoiceEngine,
  type VoiceId,
} from './tts-voices.js'
export { WAVE_FORMAT, type WavHeaderSpec, wavHeader } from './wav-writer.js'
