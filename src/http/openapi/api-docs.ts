import { createRequire } from 'node:module'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { documented, ERROR_SCHEMA, ERROR_SCHEMA_ID, errorResponses, PUBLIC } from './route-doc.js'
import { type DocumentedSocketRoute, socketRoutesOf } from './socket-docs.js'

/** Where the document and the page that renders it are served. */
export const OPENAPI_PATH = '/openapi.json'
export const DOCS_PREFIX = '/docs'

const { version } = createRequire(import.meta.url)('../../../package.json') as { version: string }

type Json = Record<string, unknown>
type Operation = Json & { parameters?: Json[]; description?: string; 'x-earmark'?: boolean }

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'] as const

const EXTENSION_NOTE = "**Earmark extension**: Deepgram's API has no such operation."

/**
 * Swagger UI's own page may load only what this server serves: no CDN, no validator badge, no inline code
 * but the styles Swagger UI sets on its elements.
 */
const DOCS_CSP =
  "default-src 'self'; base-uri 'self'; connect-src 'self'; font-src 'self' data:; " +
  "frame-ancestors 'self'; img-src 'self' data:; object-src 'none'; script-src 'self'; " +
  "script-src-attr 'none'; style-src 'self' 'unsafe-inline'"

/**
 * `x-earmark` on a query property is lifted onto its parameter, where OpenAPI readers look for it; an
 * extension operation gets a note in its description, which Swagger UI shows.
 */
function markExtensions(op: Operation): void {
  for (const p of op.parameters ?? []) {
    const schema = p.schema as Json | undefined
    if (schema?.['x-earmark'] === true) {
      p['x-earmark'] = true
      delete schema['x-earmark']
      p.description = p.description ? `${p.description} (Earmark extension)` : 'Earmark extension.'
    }
  }
  if (op['x-earmark'] === true) {
    op.description = op.description ? `${EXTENSION_NOTE}\n\n${op.description}` : EXTENSION_NOTE
  }
}

/** A socket route as a GET operation answered 101, its protocol in `x-earmark-websocket`. */
function socketOperation(route: DocumentedSocketRoute): Operation {
  const doc = route.doc
  if (!doc) {
    // Listed without a description so that the guard test (test/http/openapi.test.ts) names it.
    return { summary: '', responses: { 101: { description: 'Switching Protocols' } } }
  }
  const query = (doc.querystring.properties ?? {}) as Record<string, Json>
  const parameters = Object.entries(query).map(([name, schema]) => {
    const { description, ...rest } = schema
    return {
      name,
      in: 'query',
      required: false,
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    }
  })
  const op: Operation = {
    summary: doc.summary,
    description: doc.description,
    tags: doc.tags,
    security: [{ Token: [] }, { Bearer: [] }],
    parameters,
    responses: {
      101: {
        description:
          'Switching Protocols: the socket is open. The answer selects the subprotocol the client offered ' +
          'first (`token` or `bearer`), never the secret, and carries `dg-request-id`.',
        headers: {
          'dg-request-id': { schema: { type: 'string', format: 'uuid' } },
          'sec-websocket-protocol': { schema: { type: 'string', enum: ['token', 'bearer'] } },
        },
      },
      ...responsesFromErrors(errorResponses(400, 401, 403, 426, 429, 503)),
    },
    'x-earmark-websocket': {
      scope: route.scope,
      authentication:
        'The `Authorization` header (`Token <key>` or `Bearer <jwt>`), or, where a client cannot set headers ' +
        '(browsers), the subprotocols `token, <key>` or `bearer, <jwt>` (docs/deepgram-compat.md §0, §1.1). ' +
        'A refused upgrade is a plain HTTP answer with the Deepgram error body, never a 101.',
      clientMessages: doc.clientMessages,
      serverMessages: doc.serverMessages,
      closeCodes: doc.closeCodes,
    },
  }
  if (doc['x-earmark']) op['x-earmark'] = true
  return op
}

/** Error responses in the document's own form (a `$ref` to the component, as Swagger builds them). */
function responsesFromErrors(errors: Record<string, Json>): Record<string, Json> {
  return Object.fromEntries(
    Object.entries(errors).map(([status, e]) => [
      status,
      {
        description: e.description,
        content: { 'application/json': { schema: { $ref: `#/components/schemas/${ERROR_SCHEMA_ID}` } } },
      },
    ]),
  )
}

/**
 * Serves the OpenAPI 3.1 document of every route registered after this call at `GET /openapi.json`, and
 * Swagger UI rendering it at `/docs`, its files from node_modules (docs/openapi.md). Routes describe
 * themselves with `documented(...)`; socket routes through `attachSocketRoutes`. Call it before the routes
 * are registered: the document sees only those added later.
 */
export async function registerApiDocs(app: FastifyInstance): Promise<void> {
  app.addSchema(ERROR_SCHEMA)
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Earmark',
        version,
        description:
          "Earmark speaks Deepgram's v1 API (docs/deepgram-compat.md). Operations, parameters and fields " +
          "that Deepgram's API does not have are marked `x-earmark: true`. The live sockets are GET " +
          'operations answered 101; their messages are in `x-earmark-websocket`.',
      },
      components: {
        securitySchemes: {
          Token: {
            type: 'apiKey',
            in: 'header',
            name: 'Authorization',
            description: 'An API key: `Authorization: Token <key>` (type `Token emk_…` into the field).',
          },
          Bearer: {
            type: 'http',
            scheme: 'bearer',
            bearerFormat: 'JWT',
            description: 'A grant token from `POST /v1/auth/grant`: `Authorization: Bearer <jwt>`.',
          },
        },
      },
    },
    // Shared schemas are named by their `$id` among the components (`DeepgramError`), not `def-0`.
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
    transformObject: (documents) => {
      if (!('openapiObject' in documents)) return documents.swaggerObject
      const { openapiObject } = documents
      const doc = openapiObject as Json & { paths: Record<string, Record<string, Operation>> }
      for (const route of socketRoutesOf(app)) {
        doc.paths[route.path] = { ...doc.paths[route.path], get: socketOperation(route) }
      }
      for (const item of Object.values(doc.paths)) {
        for (const method of HTTP_METHODS) {
          const op = item[method]
          if (op) markExtensions(op)
        }
      }
      return openapiObject
    },
  })
  app.get(
    OPENAPI_PATH,
    documented({
      summary: 'This API as an OpenAPI 3.1 document',
      description: "Generated from the routes' own schemas when first asked for. Rendered at `/docs`.",
      tags: ['meta'],
      security: PUBLIC,
      response: { 200: { description: 'The OpenAPI document.', type: 'object' } },
      'x-earmark': true,
    }),
    (_req, reply) => reply.send(app.swagger()),
  )
  await app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    staticCSP: DOCS_CSP,
    theme: { title: 'Earmark API' },
    // Shows the `x-earmark` marks; never keeps a typed credential in the browser's storage.
    uiConfig: { showExtensions: true, showCommonExtensions: true, persistAuthorization: false },
  })
}
