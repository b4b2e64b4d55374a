import { credentialBinding } from '../access/index.js'
import type { Principal } from '../auth/index.js'
import { ApiError } from '../errors.js'
import type { ListenOptions } from './listen-options.js'

/**
 * The model a `/v1/listen` request that names none is held to by `listen.allowed_models`: `base`, Deepgram's
 * default family (docs/credential-options.md). Every model name is served by Earmark's one engine, so the
 * choice matters only to the constraint.
 */
export const DEFAULT_LISTEN_MODEL = 'base'

/**
 * Refuses, 403 `FORBIDDEN`, listen options outside the credential's `listen` constraints
 * (docs/credential-options.md): whatever the client asks, over REST and WebSocket alike, before anything is
 * claimed. Omitted options are checked as their defaults (`model` as {@link DEFAULT_LISTEN_MODEL},
 * `language` as `en`), so leaving one out cannot slip past a constraint.
 */
export function checkListenConstraints(principal: Principal, options: ListenOptions): void {
  const c = credentialBinding(principal)?.listen
  if (!c) return
  if (c.allowedModels) {
    // Safe to quote: parseListenOptions let only a model Earmark serves through. A language is not quoted.
    const model = (options.model ?? DEFAULT_LISTEN_MODEL).toLowerCase()
    if (!c.allowedModels.includes(model)) {
      throw new ApiError(
        'FORBIDDEN',
        `This credential may not use \`model\` \`${model}\`${options.model === null ? ' (the default)' : ''}; allowed: ${c.allowedModels.join(', ')}.`,
      )
    }
  }
  if (c.allowedLanguages) {
    const language = options.language.toLowerCase()
    if (!c.allowedLanguages.includes(language)) {
      throw new ApiError(
        'FORBIDDEN',
        `This credential may not use that \`language\`; allowed: ${c.allowedLanguages.join(', ')}.`,
      )
    }
  }
  if (c.maxSampleRate !== undefined && options.sampleRate !== null && options.sampleRate > c.maxSampleRate) {
    throw new ApiError(
      'FORBIDDEN',
      `This credential may not declare a \`sample_rate\` above ${c.maxSampleRate} Hz.`,
    )
  }
  if (c.interimResults === false && options.interimResults) {
    throw new ApiError('FORBIDDEN', 'This credential may not ask for `interim_results`.')
  }
}
