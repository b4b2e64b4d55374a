import type { FastifyInstance } from 'fastify'
import { type DestinationStream, pino } from 'pino'
import {
  type Authenticator,
  type Clock,
  createAuthenticator,
  createGrants,
  systemClock,
} from './auth/index.js'
import type { Config } from './config/index.js'
import { createApp } from './http/index.js'
import { type BootstrapResult, bootstrapIfEmpty, type Services } from './projects/index.js'
import { createSqliteStore } from './store/sqlite/sqlite-store.js'

/** Secrets must never reach a log line, even through a header a future log call might include. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  'headers["sec-websocket-protocol"]',
  'key',
  'secret',
  'access_token',
]

/** The process logger (stdout unless `destination` is given). */
export function createLogger(config: Pick<Config, 'logLevel'>, destination?: DestinationStream) {
  const options = { level: config.logLevel, redact: { paths: LOG_REDACT, censor: '[redacted]' } }
  return destination ? pino(options, destination) : pino(options)
}

/** Store, clock and grant service for a data directory: what the server and the CLI share. */
export async function openServices(
  config: Pick<Config, 'sqlitePath'>,
  clock: Clock = systemClock,
): Promise<Services> {
  const store = createSqliteStore({ path: config.sqlitePath })
  try {
    const grants = await createGrants({ store, clock })
    return { store, clock, grants }
  } catch (err) {
    await store.close()
    throw err
  }
}

export interface Earmark {
  app: FastifyInstance
  services: Services
  authenticator: Authenticator
  bootstrap: BootstrapResult | undefined
  close(): Promise<void>
}

/** Composition root: config → store → auth → app. Bootstraps an empty store. Does not listen. */
export async function createEarmark(config: Config, clock: Clock = systemClock): Promise<Earmark> {
  const logger = createLogger(config)
  const services = await openServices(config, clock)
  const bootstrap = await bootstrapIfEmpty(services, {
    ownerKey: config.bootstrapKey,
    projectName: config.projectName,
    ownerEmail: config.ownerEmail,
  })
  const authenticator = createAuthenticator(services)
  const app = await createApp({
    services,
    authenticator,
    logger,
    accessLog: config.accessLog,
    jsonBodyLimit: config.jsonBodyLimit,
  })
  return {
    app,
    services,
    authenticator,
    bootstrap,
    close: async () => {
      await app.close()
      await services.store.close()
    },
  }
}

/** `earmark serve`: start, print the generated owner key once, listen, stop cleanly on SIGTERM/SIGINT. */
export async function serve(config: Config): Promise<Earmark> {
  const earmark = await createEarmark(config)
  const { bootstrap, app } = earmark
  if (bootstrap) {
    app.log.info(
      { project_id: bootstrap.project.id, api_key_id: bootstrap.keyId },
      'bootstrapped a new project',
    )
    if (bootstrap.generatedSecret) {
      // Shown once, on stdout, never through the logger: only its hash is kept.
      process.stdout.write(
        `\nEarmark created project ${bootstrap.project.id} and an owner key.\n` +
          `Owner API key (shown once, store it now): ${bootstrap.generatedSecret}\n\n`,
      )
    }
  }
  const address = await app.listen({ port: config.port, host: config.host })
  app.log.info({ url: address, data_dir: config.dataDir, store: earmark.services.store.kind }, 'listening')
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    app.log.info({ signal }, 'shutting down')
    await earmark.close()
    process.exit(0)
  }
  process.once('SIGTERM', () => void stop('SIGTERM'))
  process.once('SIGINT', () => void stop('SIGINT'))
  return earmark
}
