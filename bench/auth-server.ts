// The server side of `npm run bench`, run as a child process so the load generator (autocannon, in the
// parent) never shares its event loop. It hosts two servers in this one process:
// - Earmark, built by the real composition root (`loadConfig` → `createEarmark`) on a temporary data dir;
// - a bare Fastify instance (no hooks, no plugins, logger off) on its own port: the baseline.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Fastify from 'fastify'
import { generateKeySecret } from '../src/auth/index.js'
import { loadConfig } from '../src/config/index.js'
import { createEarmark } from '../src/main.js'
import { type ReadyMessage, serveRunner } from './protocol.js'

const send = process.send?.bind(process)
if (!send) throw new Error('bench/auth-server.ts must be started by bench/run.ts (it needs an IPC channel)')

const dataDir = mkdtempSync(join(tmpdir(), 'earmark-bench-'))
// Removed however this process ends (a failed start included).
process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }))
const apiKey = generateKeySecret()
const config = loadConfig({
  PORT: '0',
  HOST: '127.0.0.1',
  EARMARK_DATA_DIR: dataDir,
  EARMARK_BOOTSTRAP_KEY: apiKey,
  EARMARK_LOG_LEVEL: 'warn',
  EARMARK_ACCESS_LOG: 'false',
})

const earmark = await createEarmark(config)
if (!earmark.bootstrap) throw new Error('expected a fresh data directory to be bootstrapped')
const earmarkUrl = await earmark.app.listen({ port: config.port, host: config.host })

const bare = Fastify({ logger: false })
bare.get('/bare', async () => ({ ok: true, type: 'bare' }))
bare.post('/bare', async (request) => ({ ok: true, received: request.body }))
const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' })

serveRunner(send, () => Promise.allSettled([bare.close(), earmark.close()]))

const ready: ReadyMessage = {
  type: 'ready',
  earmarkUrl,
  bareUrl,
  apiKey,
  apiKeyId: earmark.bootstrap.keyId,
  projectId: earmark.bootstrap.project.id,
  config: { logLevel: config.logLevel, accessLog: config.accessLog },
}
send(ready)
