// The server side of `npm run bench`, run as a child process so the load generator (autocannon, in the
// parent) never shares its event loop. It hosts two servers in this one process:
// - Earmark, built by the real composition root (`loadConfig` → `createEarmark`) on a temporary data dir;
// - a bare Fastify instance (no hooks, no plugins, logger off) on its own port: the baseline.
import Fastify from 'fastify'
import { runnerChannel, startBenchEarmark } from './bench-earmark.js'
import { type ReadyMessage, serveRunner } from './protocol.js'

const send = runnerChannel('auth-server.ts')
const { earmark, config, url: earmarkUrl, apiKey } = await startBenchEarmark('earmark-bench-')
if (!earmark.bootstrap) throw new Error('expected a fresh data directory to be bootstrapped')

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
