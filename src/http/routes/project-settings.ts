import type { FastifyInstance } from 'fastify'
import { getProjectSettings, updateProjectSettings } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  BODY_ERRORS,
  documented,
  errorResponses,
  type JsonSchema,
  MANAGEMENT_ERRORS,
  pathParams,
  TOKEN,
} from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

/** The three sections; each is documented on its own page. */
const SETTINGS: JsonSchema = {
  type: 'object',
  properties: {
    limits: {
      type: 'object',
      description:
        'Rates and concurrent streams for the project and defaults for its keys (docs/limits.md, "Per project").',
    },
    quotas: { type: 'object', description: 'Audio quotas (docs/quotas.md, "Where quotas are set").' },
    suspicious_activity: {
      type: 'object',
      description: 'Suspicious-activity policy (docs/suspicious-activity.md, "Settings").',
    },
  },
}

/** `GET|PATCH /v1/projects/:project_id/settings`: Earmark's project-wide limits and policies (docs/limits.md). */
export function projectSettingsRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/settings',
    {
      onRequest: management,
      ...documented({
        summary: "A project's limits, quotas and suspicious-activity policy (`project:read`)",
        tags: ['projects'],
        security: TOKEN,
        params: pathParams('project_id'),
        response: {
          200: { description: 'The settings.', ...SETTINGS },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) => getProjectSettings(services, principalOf(req), req.params.project_id),
  )
  app.patch<{ Params: ProjectParams }>(
    '/v1/projects/:project_id/settings',
    {
      onRequest: management,
      ...documented({
        summary: 'Changes the sections given (`project:write:settings`, owners)',
        description: 'A section left out is unchanged; `null` for a value removes it. Checked whole first.',
        tags: ['projects'],
        security: TOKEN,
        params: pathParams('project_id'),
        body: SETTINGS,
        response: {
          200: { description: 'The settings as they now are.', ...SETTINGS },
          ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) =>
      updateProjectSettings(services, principalOf(req), req.params.project_id, bodyObject(req), req.access),
  )
}
