import { resolve } from 'node:path'
import { z } from 'zod'

/** Everything Earmark reads from its environment, validated once at start. */
const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('127.0.0.1'),
  EARMARK_DATA_DIR: z.string().min(1).default('./data'),
  EARMARK_BOOTSTRAP_KEY: z.string().min(1).optional(),
  EARMARK_PROJECT_NAME: z.string().min(1).default('Earmark'),
  EARMARK_OWNER_EMAIL: z.string().min(3).default('owner@earmark.local'),
  EARMARK_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** One log line per request (method, path, status, time: never a header or query value). */
  EARMARK_ACCESS_LOG: z
    .enum(['true', 'false', '1', '0'])
    .default('true')
    .transform((v) => v === 'true' || v === '1'),
  /** Largest JSON body the management API reads, bytes. */
  EARMARK_JSON_BODY_LIMIT: z.coerce
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(64 * 1024),
})

export interface Config {
  port: number
  host: string
  dataDir: string
  /** The SQLite file inside the data directory. */
  sqlitePath: string
  bootstrapKey: string | undefined
  projectName: string
  ownerEmail: string
  logLevel: z.infer<typeof schema>['EARMARK_LOG_LEVEL']
  accessLog: boolean
  jsonBodyLimit: number
}

/** Reads the config from `env` (default `process.env`); throws with every problem listed. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = schema.safeParse(env)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')
    throw new Error(`Invalid configuration: ${problems}`)
  }
  const e = parsed.data
  const dataDir = resolve(e.EARMARK_DATA_DIR)
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir,
    sqlitePath: resolve(dataDir, 'earmark.sqlite'),
    bootstrapKey: e.EARMARK_BOOTSTRAP_KEY,
    projectName: e.EARMARK_PROJECT_NAME,
    ownerEmail: e.EARMARK_OWNER_EMAIL,
    logLevel: e.EARMARK_LOG_LEVEL,
    accessLog: e.EARMARK_ACCESS_LOG,
    jsonBodyLimit: e.EARMARK_JSON_BODY_LIMIT,
  }
}
