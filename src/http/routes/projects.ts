import type { FastifyInstance } from 'fastify'
import { getProject, listProjects, updateProject } from '../../projects/index.js'
import { bodyObject, principalOf } from '../hooks/auth.js'
import {
  BODY_ERRORS,
  documented,
  errorResponses,
  MANAGEMENT_ERRORS,
  MESSAGE_RESPONSE,
  pathParams,
  TOKEN,
} from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

const PROJECT = {
  type: 'object',
  required: ['project_id', 'name'],
  properties: {
    project_id: { type: 'string' },
    name: { type: 'string' },
    company: { type: 'string', description: 'Only when set.' },
    mip_opt_out: { type: 'boolean', description: 'Always false.' },
  },
}

export function projectRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get(
    '/v1/projects',
    {
      onRequest: management,
      ...documented({
        summary: "The caller's projects (a key belongs to exactly one)",
        tags: ['projects'],
        security: TOKEN,
        response: {
          200: {
            description: 'The projects.',
            type: 'object',
            properties: {
              projects: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { project_id: { type: 'string' }, name: { type: 'string' } },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => listProjects(services, principalOf(req)),
  )
  app.get<{ Params: ProjectParams }>(
    '/v1/projects/:project_id',
    {
      onRequest: management,
      ...documented({
        summary: 'A project',
        tags: ['projects'],
        security: TOKEN,
        params: pathParams('project_id'),
        response: {
          200: { description: 'The project.', ...PROJECT },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
      }),
    },
    (req) => getProject(services, principalOf(req), req.params.project_id),
  )
  // v3/v4 copy the body into the query string (docs/deepgram-compat.md §0 #5): only the body is read.
  app.patch<{ Params: ProjectParams }>(
    '/v1/projects/:project_id',
    {
      onRequest: management,
      ...documented({
        summary: 'Renames a project or sets its company (`project:write`)',
        description: 'Only the body is read: a copy of it in the query string (SDK v3/v4) is ignored.',
        tags: ['projects'],
        security: TOKEN,
        params: pathParams('project_id'),
        body: {
          type: 'object',
          properties: { name: { type: 'string' }, company: { type: 'string' } },
        },
        response: {
          200: { description: 'Updated.', ...MESSAGE_RESPONSE },
          ...errorResponses(...MANAGEMENT_ERRORS, ...BODY_ERRORS),
        },
      }),
    },
    (req) => updateProject(services, principalOf(req), req.params.project_id, bodyObject(req)),
  )
}
