// One Earmark node of the multi-node and gateway benchmarks (bench/multinode.ts, bench/gateway.ts), alone in
// this child process as it would be in production (one `earmark serve` per node), built by the real
// composition root on a temporary data dir. The runner passes the node's own settings as JSON in
// BENCH_NODE_ENV: the owner key, and for a PostgreSQL + Redis node the database URL, the Redis URL and prefix,
// and the trusted proxy; for the gateway, B's capacity, and A's upstream engine, URL and key.
import { runnerChannel, startBenchEarmark } from './bench-earmark.js'
import { type NodeReadyMessage, serveRunner } from './protocol.js'

const send = runnerChannel('multinode-server.ts')
const env = JSON.parse(process.env.BENCH_NODE_ENV ?? '{}') as Record<string, string>
const { earmark, url } = await startBenchEarmark('earmark-bench-node-', {
  // No speech-engine work is measured here: skip the capacity probe at start.
  EARMARK_CAPACITY: '2',
  ...env,
})

serveRunner(send, () => earmark.close())

const ready: NodeReadyMessage = {
  type: 'node-ready',
  earmarkUrl: url,
  backend: env.EARMARK_DATABASE_URL && env.EARMARK_REDIS_URL ? 'postgres+redis' : 'sqlite',
}
send(ready)
