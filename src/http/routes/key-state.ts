import type { FastifyInstance } from 'fastify'
import { changeKeyState } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { authHooks, type ProjectParams, type RouteDeps } from './route-deps.js'

interface KeyParams extends ProjectParams {
  key_id: string
}

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
      { onRequest: management },
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
