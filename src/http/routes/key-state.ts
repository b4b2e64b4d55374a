import type { FastifyInstance } from 'fastify'
import { changeKeyState } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { documented, errorResponses, MANAGEMENT_ERRORS, pathParams, TOKEN } from '../openapi/index.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface KeyParams extends ProjectParams {
  key_id: string
}

const KEY_STATE = {
  type: 'object',
  required: ['api_key_id', 'disabled', 'disabled_at', 'disabled_reason'],
  properties: {
    api_key_id: { type: 'string' },
    disabled: { type: 'boolean' },
    disabled_at: { type: ['string', 'null'], format: 'date-time' },
    disabled_reason: { type: ['string', 'null'], description: '`operator`, or the rule that fired.' },
  },
}

const SUMMARY = {
  disable:
    'Disables a key: refused at once with its tokens, its live streams closed; kept listed (`keys:write`)',
  enable: 'Enables a disabled key again (`keys:write`)',
} as const

/**
 * `POST /v1/projects/:project_id/keys/:key_id/disable` and `.../enable`: Earmark extensions
 * (docs/suspicious-activity.md). A body, if any, is ignored.
 */
export function keyStateRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  for (const [action, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    app.post<{ Params: KeyParams }>(
      `/v1/projects/:project_id/keys/:key_id/${action}`,
      {
        onRequest: management,
        ...documented({
          summary: SUMMARY[action],
          description: 'docs/suspicious-activity.md. A body, if any, is ignored.',
          tags: ['keys'],
          security: TOKEN,
          params: pathParams('project_id', 'key_id'),
          response: {
            200: { description: "The key's state.", ...KEY_STATE },
            ...errorResponses(...MANAGEMENT_ERRORS),
          },
          'x-earmark': true,
        }),
      },
      (req) =>
        changeKeyState(
          services,
          principalOf(req),
          req.params.project_id,
          req.params.key_id,
          disabled,
          req.access,
        ),
    )
  }
}
