// What both bench server children start with: an IPC channel to the runner, and Earmark built by the real
// composition root (`loadConfig` → `createEarmark`) on a temporary data dir, listening on a loopback port.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeySecret } from '../src/auth/index.js'
import { type Config, loadConfig } from '../src/config/index.js'
import { NO_LIMITS_ENV } from '../src/limits/index.js'
import { createEarmark, type Earmark } from '../src/main.js'

/** `process.send`, or a clear error when `file` was not started by bench/run.ts. */
export function runnerChannel(file: string): (message: unknown) => boolean {
  const send = process.send?.bind(process)
  if (!send) throw new Error(`bench/${file} must be started by bench/run.ts (it needs an IPC channel)`)
  return send
}

export interface BenchEarmark {
  earmark: Earmark
  config: Config
  url: string
  /** The bootstrap owner key's secret. */
  apiKey: string
}

/**
 * Earmark on a fresh temporary data dir (removed however this process ends, a failed start included), with a
 * generated owner key, `EARMARK_LOG_LEVEL=warn` and no access log line per request; `env` adds to that.
 */
export async function startBenchEarmark(
  dirPrefix: string,
  env: Record<string, string> = {},
): Promise<BenchEarmark> {
  const dataDir = mkdtempSync(join(tmpdir(), dirPrefix))
  process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }))
  const apiKey = generateKeySecret()
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    EARMARK_DATA_DIR: dataDir,
    EARMARK_BOOTSTRAP_KEY: apiKey,
    EARMARK_LOG_LEVEL: 'warn',
    EARMARK_ACCESS_LOG: 'false',
    // The load benches drive every slot with the one bootstrap key.
    EARMARK_MAX_STREAMS_PER_CREDENTIAL: '0',
    EARMARK_MAX_STREAMS_PER_KEY: '0',
    EARMARK_MAX_STREAMS_PER_END_USER: '0',
    // Rate and failed-authentication limits too; test/limits/ turns them on (docs/limits.md).
    ...NO_LIMITS_ENV,
    ...env,
  })
  const earmark = await createEarmark(config)
  const url = await earmark.app.listen({ port: config.port, host: config.host })
  return { earmark, config, url, apiKey }
}
