import { createHash } from 'node:crypto'
import { ApiError } from '../errors.js'

/** The program that renders a voice. */
export type VoiceEngine = 'flite' | 'espeak-ng'

/** A voice Earmark can speak with. */
export interface Voice {
  /** Earmark's model name, e.g. `flite-slt`. */
  id: VoiceId
  engine: VoiceEngine
  /** The engine's own voice name (`flite -voice`, `espeak-ng -v`). */
  name: string
  /** Stable per voice, for the `dg-model-uuid` header. */
  uuid: string
  description: string
}

/**
 * Earmark's own model names. flite is the primary engine: its CMU ARCTIC voices are natural enough for
 * the embedded recogniser (~7 % WER), espeak-ng's are not (70-90 %), but it is fast and small.
 */
export const VOICE_IDS = ['flite-slt', 'flite-rms', 'flite-awb', 'flite-kal', 'espeak-en'] as const
export type VoiceId = (typeof VOICE_IDS)[number]

const VOICE_TABLE: Record<VoiceId, Omit<Voice, 'id' | 'uuid'>> = {
  'flite-slt': { engine: 'flite', name: 'slt', description: 'US English, female (CMU ARCTIC slt), 16 kHz' },
  'flite-rms': { engine: 'flite', name: 'rms', description: 'US English, male (CMU ARCTIC rms), 16 kHz' },
  'flite-awb': {
    engine: 'flite',
    name: 'awb',
    description: 'Scottish English, male (CMU ARCTIC awb), 16 kHz',
  },
  'flite-kal': { engine: 'flite', name: 'kal', description: 'US English, male diphone voice, 8 kHz' },
  'espeak-en': {
    engine: 'espeak-ng',
    name: 'en-us',
    description: 'US English, eSpeak NG formant voice, 22 kHz',
  },
}

/** The model used when the request names none: Deepgram's v4 SDK default, `aura-2-thalia-en`. */
export const DEFAULT_SPEAK_MODEL = 'aura-2-thalia-en'

/**
 * Deepgram's Aura voices (the v5 SDK's `SpeakV1Model` list, docs/deepgram-compat.md §8.1), by generation and
 * language. A name outside this catalogue is refused as Deepgram refuses it (400, `MODEL_NOT_FOUND`).
 */
const AURA_VOICES: Readonly<Record<'aura' | 'aura-2', Readonly<Record<string, string>>>> = {
  aura: { en: 'angus arcas asteria athena helios hera luna orion orpheus perseus stella zeus' },
  'aura-2': {
    en:
      'amalthea andromeda apollo arcas aries asteria athena atlas aurora callista cora cordelia delia draco ' +
      'electra harmonia helena hera hermes hyperion iris janus juno jupiter luna mars minerva neptune ' +
      'odysseus ophelia orion orpheus pandora phoebe pluto saturn selene thalia theia vesta zeus',
    es:
      'agustina alvaro antonia aquila carina celeste diana estrella gloria javier luciano nestor olivia ' +
      'selena silvia sirio valerio',
    de: 'aurelia elara fabian julius kara lara viktoria',
    nl: 'beatrix cornelia daphne hestia lars leda rhea roman sander',
    fr: 'agathe hector',
    it: 'cesare cinzia demetra dionisio elio flavio livia maia melia perseo',
    ja: 'ama ebisu fujin izanami uzume',
  },
}

/** Every Aura model name, e.g. `aura-asteria-en`, `aura-2-thalia-en`, mapped to its speaker's name. */
const AURA_MODELS: ReadonlyMap<string, string> = new Map(
  Object.entries(AURA_VOICES).flatMap(([generation, languages]) =>
    Object.entries(languages).flatMap(([language, speakers]) =>
      speakers.split(' ').map((speaker) => [`${generation}-${speaker}-${language}`, speaker] as const),
    ),
  ),
)

/**
 * Aura speakers with a male voice. Every Aura model maps onto a flite voice: these to `flite-rms`, the
 * others to `flite-slt`. Both speak English only, whatever the model's language.
 */
export const MALE_AURA_NAMES: ReadonlySet<string> = new Set([
  // Aura 1
  'orion',
  'arcas',
  'perseus',
  'angus',
  'orpheus',
  'helios',
  'zeus',
  // Aura 2, English
  'apollo',
  'aries',
  'atlas',
  'draco',
  'hermes',
  'hyperion',
  'janus',
  'jupiter',
  'mars',
  'neptune',
  'odysseus',
  'pluto',
  'saturn',
  // Aura 2, Spanish
  'alvaro',
  'aquila',
  'javier',
  'luciano',
  'nestor',
  'sirio',
  'valerio',
  // Aura 2, German, Dutch, French, Italian, Japanese
  'fabian',
  'julius',
  'lars',
  'roman',
  'sander',
  'hector',
  'cesare',
  'dionisio',
  'elio',
  'flavio',
  'perseo',
  'ebisu',
  'fujin',
])

function voiceUuid(id: VoiceId): string {
  // A name-based UUID (version 5 layout) so the header is stable across restarts and servers.
  const h = createHash('sha1').update(`earmark-tts:${id}`).digest()
  h[6] = ((h[6] ?? 0) & 0x0f) | 0x50
  h[8] = ((h[8] ?? 0) & 0x3f) | 0x80
  const hex = h.subarray(0, 16).toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function getVoice(id: VoiceId): Voice {
  return { id, uuid: voiceUuid(id), ...VOICE_TABLE[id] }
}

function isVoiceId(value: string): value is VoiceId {
  return (VOICE_IDS as readonly string[]).includes(value)
}

/**
 * The voice for a `model` query value: an Earmark voice id, or a Deepgram Aura model (see `AURA_VOICES`
 * and `MALE_AURA_NAMES`). Absent means `DEFAULT_SPEAK_MODEL`.
 * @throws ApiError `MODEL_NOT_FOUND` for anything else.
 */
export function resolveVoice(model: string | undefined): Voice {
  const name = (model ?? DEFAULT_SPEAK_MODEL).trim().toLowerCase()
  if (isVoiceId(name)) return getVoice(name)
  const speaker = AURA_MODELS.get(name)
  if (speaker !== undefined) return getVoice(MALE_AURA_NAMES.has(speaker) ? 'flite-rms' : 'flite-slt')
  throw new ApiError('MODEL_NOT_FOUND')
}

/** True when `/v1/speak` has a voice for `model`. */
export function isSpeakModel(model: string): boolean {
  const name = model.trim().toLowerCase()
  return isVoiceId(name) || AURA_MODELS.has(name)
}
