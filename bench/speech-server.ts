// The server side of the speech benchmark (bench/speech.ts), run as a child process so the clients (in the
// parent) never share its event loop. It hosts two servers in this one process:
// - Earmark, built by the real composition root (`loadConfig` → `createEarmark`) on a temporary data dir,
//   with a fixed speech capacity (EARMARK_CAPACITY from the runner) so admission control never refuses a
//   stream of the concurrency sweep;
// - a bare `ws` WebSocketServer on its own port (no auth, no engine, echoes messages): the upgrade baseline.
// The runner sets UV_THREADPOOL_SIZE in this process's environment, as bin/earmark.js does for a real server.
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { WebSocketServer } from 'ws'
import { runnerChannel, startBenchEarmark } from './bench-earmark.js'
import { type SpeechReadyMessage, serveRunner } from './protocol.js'

const send = runnerChannel('speech-server.ts')
const {
  earmark,
  config,
  url: earmarkUrl,
  apiKey,
} = await startBenchEarmark('earmark-bench-speech-', {
  EARMARK_CAPACITY: process.env.EARMARK_CAPACITY ?? '8',
})

const bareHttp = createServer((_req, res) => {
  res.writeHead(404).end()
})
// Same socket settings as Earmark's listen socket (no compression); the default protocol handler echoes
// the first offered subprotocol, as Earmark echoes `token` / `bearer`.
const bare = new WebSocketServer({ server: bareHttp, perMessageDeflate: false })
bare.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }))
})
await new Promise<void>((resolve) => bareHttp.listen(0, '127.0.0.1', resolve))
const barePort = (bareHttp.address() as AddressInfo).port

serveRunner(send, async () => {
  for (const client of bare.clients) client.terminate()
  bare.close()
  await Promise.allSettled([new Promise((resolve) => bareHttp.close(resolve)), earmark.close()])
})

const ready: SpeechReadyMessage = {
  type: 'speech-ready',
  earmarkUrl,
  earmarkWsUrl: earmarkUrl.replace(/^http/, 'ws'),
  bareWsUrl: `ws://127.0.0.1:${barePort}`,
  apiKey,
  config: {
    logLevel: config.logLevel,
    accessLog: config.accessLog,
    capacity: earmark.engine.capacity,
    uvThreadpoolSize: process.env.UV_THREADPOOL_SIZE ?? '(default: 4)',
  },
}
send(ready)
