import type { FastifySchema, FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify'
import { ERRORS } from '../../errors.js'

/** A JSON Schema (2020-12, as OpenAPI 3.1 reads it), loosely typed: it is data for the document only. */
export type JsonSchema = Record<string, unknown>

/**
 * What a route says about itself for `GET /openapi.json` (docs/openapi.md): Fastify's schema parts plus
 * OpenAPI's operation fields. `x-earmark: true` marks an operation Deepgram's API does not have; on a
 * property of `querystring` or `body` it marks a field Deepgram does not have (docs/deepgram-compat.md).
 */
export interface RouteDoc extends FastifySchema {
  summary: string
  description?: string
  tags: string[]
  /** Who may call it: `TOKEN` (API keys), `TOKEN_OR_BEARER` (keys or grant tokens) or `PUBLIC`. */
  security: readonly Readonly<Record<string, readonly string[]>>[]
  params?: JsonSchema
  querystring?: JsonSchema
  body?: JsonSchema
  /** Status → schema; an error status → `errorResponse(...)`. */
  response: Record<string, unknown>
  /** Content types of the body, when it is not JSON. */
  consumes?: string[]
  /** Content types of a 200 that is not JSON. */
  produces?: string[]
  'x-earmark'?: true
}

/** API keys: `Authorization: Token <key>` (docs/deepgram-compat.md §1.1). */
export const TOKEN = [{ Token: [] }] as const
/** API keys or grant tokens (`Authorization: Bearer <jwt>`). */
export const TOKEN_OR_BEARER = [{ Token: [] }, { Bearer: [] }] as const
/** No credential. */
export const PUBLIC = [] as const

/**
 * The schema stays documentation: Fastify would otherwise compile `querystring`/`body` into validators (with
 * errors that are not Deepgram-shaped, and type coercion) and `response` into serializers that drop every
 * field the schema does not name. These compilers keep today's behaviour exactly: input passes untouched to
 * the route, which checks it itself, and output is `JSON.stringify`, what Fastify does for a route without
 * a response schema.
 */
const keepInput: FastifySchemaCompiler<unknown> = () => () => true
const stringify: FastifySerializerCompiler<unknown> = () => (data) => JSON.stringify(data)

/**
 * Route options that attach `doc` to a route for the OpenAPI document without changing what the route
 * does: spread them into the route's options (`{ onRequest: management, ...documented({...}) }`).
 */
export function documented(doc: RouteDoc): {
  schema: RouteDoc
  validatorCompiler: FastifySchemaCompiler<unknown>
  serializerCompiler: FastifySerializerCompiler<unknown>
} {
  return { schema: doc, validatorCompiler: keepInput, serializerCompiler: stringify }
}

/** The id of the Deepgram error body among the document's components. */
export const ERROR_SCHEMA_ID = 'DeepgramError'

/** `{err_code, err_msg, request_id}` (docs/deepgram-compat.md §5), as registered with `app.addSchema`. */
export const ERROR_SCHEMA = {
  $id: ERROR_SCHEMA_ID,
  type: 'object',
  description:
    "Deepgram's error body; the request id is also in the `dg-request-id` and `x-request-id` headers.",
  required: ['err_code', 'err_msg', 'request_id'],
  properties: {
    err_code: { type: 'string', description: 'A stable code from the ERRORS table (src/errors.ts).' },
    err_msg: { type: 'string', description: 'A human-readable message; may quote the input.' },
    request_id: { type: 'string', format: 'uuid' },
  },
} as const

/** The error answers a route may give, each described by the codes of the ERRORS table with that status. */
export function errorResponses(...statuses: number[]): Record<string, JsonSchema> {
  const out: Record<string, JsonSchema> = {}
  for (const status of statuses) {
    const codes = Object.entries(ERRORS)
      .filter(([, e]) => e.status === status)
      .map(([code, e]) => `\`${code}\` (${e.message})`)
    if (codes.length === 0) throw new Error(`no error code has status ${status}`)
    out[String(status)] = { description: `\`err_code\`: ${codes.join('; ')}`, $ref: `${ERROR_SCHEMA_ID}#` }
  }
  return out
}

/** `{"message": "…"}`, Deepgram's answer where there is nothing else to say (docs/deepgram-compat.md §0 #7). */
export const MESSAGE_RESPONSE = {
  type: 'object',
  required: ['message'],
  properties: { message: { type: 'string' } },
} as const

/** Path parameters from their names. */
export function pathParams(...names: string[]): JsonSchema {
  const descriptions: Record<string, string> = {
    project_id: "The project's id (`GET /v1/projects`).",
    key_id: "The API key's id (`api_key_id`).",
    member_id: "The member's id (`member_id`).",
    request_id: "The request's id (`request_id`, the `dg-request-id` header of its answer).",
    kid: "The signing key's id (`kid`).",
    jti: "The grant token's id (`jti`).",
  }
  return {
    type: 'object',
    required: names,
    properties: Object.fromEntries(
      names.map((n) => [n, { type: 'string', description: descriptions[n] ?? n }]),
    ),
  }
}

/** Marks a property schema as an Earmark extension (`x-earmark: true`): Deepgram's API has no such field. */
export function earmark<T extends JsonSchema>(schema: T): T & { 'x-earmark': true } {
  return { ...schema, 'x-earmark': true }
}

/** What any management route may answer besides its success (bad input, credentials, scope, limits, store). */
export const MANAGEMENT_ERRORS = [400, 401, 403, 404, 429, 503] as const

/** A JSON body is read: too large, or not JSON. */
export const BODY_ERRORS = [413, 415] as const
