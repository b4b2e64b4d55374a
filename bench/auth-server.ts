// The server side of `npm run bench`, run as a child process so the load generator (autocannon, in the
// parent) never shares its event loop. It hosts three servers in this one process:
// - Earmark, built by the real composition root (`loadConfig` → `createEarmark`) on a temporary data dir,
//   with the rate limits off (`EARMARK_LIMIT_*=0`);
// - the same Earmark again on its own data dir with every rate limit on, set so high that nothing is
//   refused: each request is counted against its key and project (and each grant against its key's grants),
//   which is the cost the limits-on scenarios measure (docs/limits.md, docs/benchmarks.md);
// - a bare Fastify instance (no hooks, no plugins, logger off) on its own port: the baseline.
import Fastify from 'fastify'
import type { LimitsReady } from './auth.js'
import { runnerChannel, startBenchEarmark } from './bench-earmark.js'
import { type ReadyMessage, serveRunner } from './protocol.js'

/** High enough never to refuse a benchmark's load, so every request pays for the counting and nothing more. */
const NEVER_REACHED = '1000000000'

const send = runnerChannel('auth-server.ts')
const { earmark, config, url: earmarkUrl, apiKey } = await startBenchEarmark('earmark-bench-')
if (!earmark.bootstrap) throw new Error('expected a fresh data directory to be bootstrapped')
const limited = await startBenchEarmark('earmark-bench-limits-', {
  EARMARK_LIMIT_REQUESTS_PER_MINUTE: NEVER_REACHED,
  EARMARK_LIMIT_PROJECT_REQUESTS_PER_MINUTE: NEVER_REACHED,
  EARMARK_LIMIT_GRANTS_PER_MINUTE: NEVER_REACHED,
  EARMARK_LIMIT_AUTH_FAILURES_PER_MINUTE: '10',
  EARMARK_LIMIT_AUTH_FAILURES_PER_HOUR: '100',
})
if (!limited.earmark.bootstrap) throw new Error('expected a fresh data directory to be bootstrapped')

const bare = Fastify({ logger: false })
bare.get('/bare', async () => ({ ok: true, type: 'bare' }))
bare.post('/bare', async (request) => ({ ok: true, received: request.body }))
const bareUrl = await bare.listen({ port: 0, host: '127.0.0.1' })

serveRunner(send, () => Promise.allSettled([bare.close(), earmark.close(), limited.earmark.close()]))

const ready: ReadyMessage & LimitsReady = {
  type: 'ready',
  earmarkUrl,
  bareUrl,
  apiKey,
  apiKeyId: earmark.bootstrap.keyId,
  projectId: earmark.bootstrap.project.id,
  config: { logLevel: config.logLevel, accessLog: config.accessLog },
  limited: {
    earmarkUrl: limited.url,
    apiKey: limited.apiKey,
    apiKeyId: limited.earmark.bootstrap.keyId,
    limits: limited.config.limits,
  },
}
send(ready)
