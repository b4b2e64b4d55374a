import type { FastifyInstance } from 'fastify'

/** A JSON Schema for the document only. */
type JsonSchema = Record<string, unknown>

/**
 * A socket route's description for the OpenAPI document: a GET operation answered 101, its query as
 * parameters, and its messages and close codes in the `x-earmark-websocket` extension (docs/openapi.md).
 */
export interface SocketRouteDoc {
  summary: string
  description: string
  tags: string[]
  /** The query options, a JSON Schema object whose properties become parameters. */
  querystring: JsonSchema
  /** What the client sends: JSON text messages by `type`, and `binary` for binary frames. */
  clientMessages: Record<string, { description: string; schema?: JsonSchema }>
  /** What the server sends, the same way. */
  serverMessages: Record<string, { description: string; schema?: JsonSchema }>
  /** Close codes and reasons the server ends a stream with; `earmark: true` where Deepgram has none. */
  closeCodes: { code: number; reason: string; meaning: string; earmark?: true }[]
  /** Set when Deepgram has no such socket. */
  'x-earmark'?: true
}

/** What the OpenAPI document needs of a socket route (`SocketRoute` in src/ws/upgrade.ts). */
export interface DocumentedSocketRoute {
  path: string
  /** The scope the credential needs. */
  scope: string
  doc?: SocketRouteDoc
}

/**
 * The socket routes each app serves. They are not Fastify routes (the upgrade is handled on the HTTP server's
 * `upgrade` event), so the document learns of them here: `attachSocketRoutes` records its routes, and the
 * document adds them as GET operations when it is first built.
 */
const socketRoutes = new WeakMap<FastifyInstance, DocumentedSocketRoute[]>()

/** Records the socket routes `app` serves, for its OpenAPI document. */
export function documentSocketRoutes(app: FastifyInstance, routes: readonly DocumentedSocketRoute[]): void {
  socketRoutes.set(app, [...(socketRoutes.get(app) ?? []), ...routes])
}

/** The socket routes recorded for `app`. */
export function socketRoutesOf(app: FastifyInstance): readonly DocumentedSocketRoute[] {
  return socketRoutes.get(app) ?? []
}
