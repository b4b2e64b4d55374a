import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { createAppKitInternals } from './app-kit.js'
import { AppKitError, errorBody, headerText } from './errors.js'
import { MAX_BODY_BYTES, parseJsonBody } from './http-handler.js'
import type { AppKitOptions } from './options.js'

/** Options of {@link earmarkAppKit}: the kit's, plus Fastify's `prefix` (default `/earmark`). */
export type EarmarkAppKitPluginOptions = AppKitOptions & { prefix?: string }

function renderError(
  error: FastifyError | AppKitError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
) {
  let e: AppKitError
  if (error instanceof AppKitError) {
    e = error
  } else {
    const fe = error as FastifyError
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') e = new AppKitError('PAYLOAD_TOO_LARGE')
    else if (fe.statusCode === 415 || fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      e = new AppKitError('UNSUPPORTED_MEDIA_TYPE')
    else if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500)
      e = new AppKitError('INVALID_FIELD', 'Bad request.', { status: fe.statusCode, errCode: 'BAD_REQUEST' })
    else e = new AppKitError('INTERNAL_ERROR')
  }
  // Unknown errors are logged, never echoed (their message could say anything).
  if (e.status >= 500) request.log.error({ err: error }, 'earmark app-kit error')
  void reply
    .code(e.status)
    .header('dg-request-id', request.id)
    .header('dg-error', headerText(e.message))
    .header('cache-control', 'no-store')
    .send(errorBody(e, request.id))
}

async function appKitRoutes(instance: FastifyInstance, opts: EarmarkAppKitPluginOptions): Promise<void> {
  // The routes live under this instance's prefix; the upgrade path must match it exactly.
  const { kit, credentials } = createAppKitInternals({ ...opts, prefix: instance.prefix })

  // Encapsulated: the app's own parsers and error handler elsewhere are untouched.
  instance.removeAllContentTypeParsers()
  instance.addContentTypeParser(
    '*',
    { parseAs: 'string', bodyLimit: MAX_BODY_BYTES },
    (request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
      try {
        done(null, parseJsonBody(String(body), request.headers['content-type']))
      } catch (err) {
        done(err as Error)
      }
    },
  )
  instance.setErrorHandler(renderError)

  const fresh = (request: FastifyRequest, reply: FastifyReply) =>
    reply.header('cache-control', 'no-store').header('dg-request-id', request.id)

  instance.post('/key', async (request, reply) => {
    const endUser = await credentials.identify(request.raw)
    fresh(request, reply)
    return credentials.createKey(endUser)
  })
  instance.delete<{ Params: { id: string } }>('/key/:id', async (request, reply) => {
    const endUser = await credentials.identify(request.raw)
    fresh(request, reply)
    return credentials.deleteKey(endUser, request.params.id)
  })
  instance.post('/token', async (request, reply) => {
    const endUser = await credentials.identify(request.raw)
    fresh(request, reply)
    return credentials.createToken(endUser, request.body ?? {})
  })
  instance.get('/listen', async (_request, reply) => {
    reply.header('upgrade', 'websocket')
    throw new AppKitError('UPGRADE_REQUIRED')
  })

  const server = instance.server
  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (kit.handleUpgrade(req, socket, head)) return
    // Alone on this server, an upgrade for another path has no one else to answer it.
    if (server.listenerCount('upgrade') === 1) socket.destroy()
  }
  server.on('upgrade', onUpgrade)
  instance.addHook('onClose', async () => {
    server.off('upgrade', onUpgrade)
    await kit.close()
  })
}

/**
 * Fastify plugin: `POST /key`, `DELETE /key/:id`, `POST /token` and the `GET /listen` WebSocket proxy under
 * the registration prefix (default `/earmark`). Encapsulated (no fastify-plugin): its body parser and error
 * handler apply to its own routes only. Its `upgrade` listener on the server answers only its own path.
 *
 * @example
 * await app.register(earmarkAppKit, { prefix: '/earmark', upstream: { url, apiKey }, authorize })
 */
export const earmarkAppKit: FastifyPluginAsync<EarmarkAppKitPluginOptions> = async (instance, opts) => {
  if (opts.prefix === undefined) {
    await instance.register(appKitRoutes, { ...opts, prefix: '/earmark' })
  } else {
    await appKitRoutes(instance, opts)
  }
}
