/**
 * Deepgram's speech-to-text model families (docs/deepgram-compat.md §6, §7.1) and the use-case suffixes they
 * come with. Earmark transcribes every one of them with its own engine; the names are accepted so that clients
 * written for Deepgram (the SDKs' examples, the v5 `ListenV1Model` list) work unchanged.
 */
const FAMILIES = ['nova-3', 'nova-2', 'nova', 'enhanced', 'base'] as const
const USE_CASES = [
  'general',
  'meeting',
  'phonecall',
  'finance',
  'conversationalai',
  'voicemail',
  'video',
  'medical',
  'drivethru',
  'automotive',
  'atc',
] as const
const WHISPER_SIZES = ['tiny', 'base', 'small', 'medium', 'large'] as const
/** Earmark's own engine, by the name its results report (`POCKETSPHINX_MODEL.name`) and its short name. */
const ENGINE_MODELS = ['pocketsphinx-en-us', 'pocketsphinx'] as const

function buildNames(): ReadonlySet<string> {
  const names = new Set<string>([...ENGINE_MODELS, ...USE_CASES, 'whisper'])
  for (const family of FAMILIES) {
    names.add(family)
    for (const use of USE_CASES) names.add(`${family}-${use}`)
  }
  for (const size of WHISPER_SIZES) names.add(`whisper-${size}`)
  return names
}

/** Every `model` value `/v1/listen` accepts, lower case. */
export const LISTEN_MODELS: ReadonlySet<string> = buildNames()

/** True when `/v1/listen` serves `model` (compared case-insensitively). */
export function isListenModel(model: string): boolean {
  return model.length <= 64 && LISTEN_MODELS.has(model.toLowerCase())
}
