export { DOCS_PREFIX, OPENAPI_PATH, registerApiDocs } from './api-docs.js'
export {
  documented,
  ERROR_SCHEMA_ID,
  earmark,
  errorResponses,
  type JsonSchema,
  MESSAGE_RESPONSE,
  PUBLIC,
  pathParams,
  type RouteDoc,
  TOKEN,
  TOKEN_OR_BEARER,
} from './route-doc.js'
export {
  type DocumentedSocketRoute,
  documentSocketRoutes,
  type SocketRouteDoc,
  socketRoutesOf,
} from './socket-docs.js'
