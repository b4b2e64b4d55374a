import { createHash } from 'node:crypto'
import { invalidField } from '../errors.js'

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
 * Deepgram Aura voice names that are male (Aura 1, Aura 2 English and Spanish). Every `aura*` model maps
 * onto a flite voice: these names to `flite-rms`, every other name (the female voices, and any name Earmark
 * does not know) to `flite-slt`. The language suffix is ignored: both voices speak English only.
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
  'nestor',
  'sirio',
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
 * The voice for a `model` query value: an Earmark voice id, or any Deepgram `aura*` name (see
 * `MALE_AURA_NAMES`). Absent means `DEFAULT_SPEAK_MODEL`.
 * @throws ApiError `INVALID_FIELD` naming `model` for anything else.
 */
export function resolveVoice(model: string | undefined): Voice {
  const name = (model ?? DEFAULT_SPEAK_MODEL).trim().toLowerCase()
  if (isVoiceId(name)) return getVoice(name)
  if (/^aura(-|$)/.test(name)) {
    // aura-<name>-<lang> or aura-2-<name>-<lang>
    const parts = name.split('-').filter((p) => p !== 'aura' && !/^\d+$/.test(p))
    const speaker = parts[0] ?? ''
    return getVoice(MALE_AURA_NAMES.has(speaker) ? 'flite-rms' : 'flite-slt')
  }
  throw invalidField('model', `unknown model; use an aura-* name or one of ${VOICE_IDS.join(', ')}`)
}
