// The server side of the speech benchmark (bench/speech.ts), run as a child process so the clients (in the
// parent) never share its event loop. It hosts two servers in this one process:
// - Earmark, built by the real composition root (`loadConfig` → `createEarmark`) on a temporary data dir,
//   with a fixed speech capacity (EARMARK_CAPACITY from the runner) so admission control never refuses a
//   stream of the concurrency sweep;
// - a bare `ws` WebSocketServer on its own port (no auth, no engine, echoes messages): the upgrade baseline.
// The runner sets UV_THREADPOOL_SIZE in this process's environment, as bin/earmark.js does for a real server.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { WebSocketServer } from 'ws'
import { generateKeySecret } from '../src/auth/index.js'
import { loadConfig } from '../src/config/index.js'
import { createEarmark } from '../src/main.js'
import { type SpeechReadyMessage, serveRunner } from './protocol.js'

const send = process.send?.bind(process)
if (!send) throw new Error('bench/speech-server.ts must be started by bench/run.ts (it needs an IPC channel)')

const capacity = process.env.EARMARK_CAPACITY ?? '8'
const dataDir = mkdtempSync(join(tmpdir(), 'earmark-bench-speech-'))
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
  EARMARK_CAPACITY: capacity,
})

const earmark = await createEarmark(config)
const earmarkUrl = await earmark.app.listen({ port: config.port, host: config.host })

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
