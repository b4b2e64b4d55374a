import type { FastifyInstance } from 'fastify'
import { listSigningKeys, retireSigningKey } from '../../projects/index.js'
import { principalOf } from '../hooks/auth.js'
import { documented, errorResponses, MANAGEMENT_ERRORS, pathParams, TOKEN } from '../openapi/index.js'
import { authHooks, type RouteDeps } from './route-deps.js'

/** Earmark extension routes (docs/revocation.md): see and retire the grant-signing keys, owners only. */
export function signingKeyRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { services } = deps
  const { management } = authHooks(deps)
  app.get(
    '/v1/auth/signing-keys',
    {
      onRequest: management,
      ...documented({
        summary: 'The keys grant tokens are signed with (owners)',
        description: 'docs/revocation.md. Ids and dates only, never the secrets.',
        tags: ['auth'],
        security: TOKEN,
        response: {
          200: {
            description: 'The signing keys.',
            type: 'object',
            properties: {
              signing_keys: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    kid: { type: 'string' },
                    created: { type: 'string', format: 'date-time' },
                    retired: { type: ['string', 'null'], format: 'date-time' },
                    current: { type: 'boolean', description: 'The key new tokens are signed with.' },
                  },
                },
              },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) => listSigningKeys(services, principalOf(req)),
  )
  app.delete<{ Params: { kid: string } }>(
    '/v1/auth/signing-keys/:kid',
    {
      onRequest: management,
      ...documented({
        summary: 'Retires a signing key: its tokens are refused and their streams closed at once (owners)',
        description: 'Retiring the current key makes a fresh one current (docs/revocation.md).',
        tags: ['auth'],
        security: TOKEN,
        params: pathParams('kid'),
        response: {
          200: {
            description: 'Retired.',
            type: 'object',
            properties: {
              message: { type: 'string' },
              kid: { type: 'string' },
              current_kid: { type: ['string', 'null'] },
            },
          },
          ...errorResponses(...MANAGEMENT_ERRORS),
        },
        'x-earmark': true,
      }),
    },
    (req) => retireSigningKey(services, principalOf(req), req.params.kid, req.access),
  )
}
