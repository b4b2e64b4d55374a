import { earmark, type JsonSchema } from './route-doc.js'

/**
 * Schemas of the resources several routes answer or take. Deepgram's fields first; Earmark's extensions
 * carry `x-earmark: true` (docs/deepgram-compat.md names Deepgram's).
 */

const stringList = (description: string): JsonSchema => ({
  type: 'array',
  items: { type: 'string' },
  description,
})
const count = (description: string): JsonSchema => ({ type: 'integer', minimum: 0, description })

/** `listen` constraints of a key or a grant (docs/credential-options.md). */
const LISTEN_CONSTRAINTS: JsonSchema = earmark({
  type: 'object',
  description: 'What a stream opened with this credential may ask for (docs/credential-options.md).',
  properties: {
    allowed_models: stringList('Models the credential may use.'),
    allowed_languages: stringList('Languages the credential may use.'),
    max_sample_rate: { type: 'integer', minimum: 1, description: 'Highest `sample_rate`.' },
    interim_results: { type: 'boolean', description: 'Whether interim results may be asked for.' },
  },
})

/** The binding options keys and grants share (docs/credential-options.md). */
export const BINDING_OPTIONS: Record<string, JsonSchema> = {
  allowed_origins: earmark(stringList('Origins (`https://app.example`) a request must come from.')),
  allowed_ips: earmark(stringList('Addresses and CIDR ranges a request must come from.')),
  max_session_duration_seconds: earmark({
    type: 'integer',
    minimum: 1,
    description: 'How long a live stream opened with the credential may last.',
  }),
  listen: LISTEN_CONSTRAINTS,
}

/** A key's own limits (docs/limits.md, "Per key"). */
export const KEY_LIMITS: JsonSchema = earmark({
  type: 'object',
  description: "The key's own limits (docs/limits.md); `null` removes one.",
  properties: {
    requests_per_minute: count('Requests per minute, its grant tokens included.'),
    grants_per_minute: count('`POST /v1/auth/grant` per minute.'),
    concurrent_streams: count('Live streams plus pre-recorded requests at once.'),
  },
})

/** A key's audio quotas (docs/quotas.md). */
export const KEY_QUOTAS: JsonSchema = earmark({
  type: 'object',
  description: 'Audio quotas of the key (docs/quotas.md).',
  properties: {
    audio_seconds_per_day: count('All audio of the key per UTC day.'),
    audio_seconds_per_month: count('All audio of the key per UTC month.'),
    end_user_audio_seconds_per_day: count('The audio of one end user per UTC day.'),
    end_user_audio_seconds_per_month: count('The audio of one end user per UTC month.'),
  },
})

/** An API key as listed (never its secret). */
export const API_KEY: JsonSchema = {
  type: 'object',
  required: ['api_key_id', 'comment', 'scopes', 'tags', 'created'],
  properties: {
    api_key_id: { type: 'string' },
    comment: { type: 'string' },
    scopes: stringList('Roles and scopes as granted (docs/roles-and-scopes.md).'),
    tags: stringList('Free tags; `end_user:<id>` names an end user (docs/speech.md, "Metering").'),
    created: { type: 'string', format: 'date-time' },
    expiration_date: {
      type: 'string',
      format: 'date-time',
      description: 'Absent when the key never expires.',
    },
    ...BINDING_OPTIONS,
    limits: KEY_LIMITS,
    quotas: KEY_QUOTAS,
    disabled_at: earmark({ type: 'string', format: 'date-time', description: 'Only on a disabled key.' }),
    disabled_reason: earmark({ type: 'string', description: 'Only on a disabled key.' }),
  },
}

/** The member a key belongs to, as keys are listed. */
export const KEY_MEMBER: JsonSchema = {
  type: 'object',
  properties: { member_id: { type: 'string' }, email: { type: 'string' } },
}

/** The filters `/requests` and `/usage` share (docs/deepgram-compat.md §4). */
export const USAGE_FILTERS: Record<string, JsonSchema> = {
  start: { type: 'string', description: 'From this date (`YYYY-MM-DD`, optionally with a time).' },
  end: { type: 'string', description: 'Up to this date.' },
  accessor: { type: 'string', description: 'Only requests made with this API key (`api_key_id`).' },
  endpoint: { type: 'string', enum: ['listen', 'speak'] },
  method: { type: 'string', enum: ['sync', 'streaming'] },
  status: { type: 'string', enum: ['succeeded', 'failed'] },
  end_user: earmark({
    type: 'string',
    description: 'Only requests of this end user (docs/speech.md, "Metering").',
  }),
}

/** Paging of lists. */
export function paging(defaultLimit: number): Record<string, JsonSchema> {
  return {
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: defaultLimit },
    page: { type: 'integer', minimum: 0, default: 0, description: 'From 0.' },
  }
}

/** One metered request (docs/deepgram-compat.md §4). */
export const USAGE_REQUEST: JsonSchema = {
  type: 'object',
  properties: {
    request_id: { type: 'string' },
    project_uuid: { type: 'string' },
    created: { type: 'string', format: 'date-time' },
    path: { type: 'string' },
    api_key_id: { type: 'string' },
    response: {
      type: 'object',
      description: '`details` (duration, characters, model, tags), `code`, `completed`.',
    },
    code: { type: 'integer' },
    deployment: { type: 'string' },
    callback: {},
  },
}
