export { DOCS_PREFIX, OPENAPI_PATH, registerApiDocs } from './api-docs.js'
export {
  API_KEY,
  BINDING_OPTIONS,
  KEY_LIMITS,
  KEY_MEMBER,
  KEY_QUOTAS,
  paging,
  USAGE_FILTERS,
  USAGE_REQUEST,
} from './resources.js'
export {
  BODY_ERRORS,
  documented,
  ERROR_SCHEMA_ID,
  earmark,
  errorResponses,
  type JsonSchema,
  MANAGEMENT_ERRORS,
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
