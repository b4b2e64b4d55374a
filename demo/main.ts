// `npm run demo`: Earmark and a demo app in front of it, in this one process. Ctrl-C stops both.
//
//   DEMO_PORT          the demo page (default 3000)
//   DEMO_EARMARK_PORT  Earmark (default 8080)
//   HOST               both listen here (default 127.0.0.1)
//   DEMO_DATA_DIR      Earmark's data directory (default ./data/demo)
//   DEMO_EARMARK_URL   Earmark's URL as the browser reaches it (default: the page's host on DEMO_EARMARK_PORT)
//   EARMARK_*          any other Earmark setting (README, Configuration)
import { availableParallelism } from 'node:os'

// Speech decoding runs on libuv's threadpool (as in bin/earmark.js); it is sized at first use, so before
// anything is imported.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(16, availableParallelism() * 4))

const { startDemo } = await import('./server.js')

function port(name: string, fallback: number): number {
  const raw = process.env[name]
  const n = raw === undefined || raw === '' ? fallback : Number(raw)
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`demo: ${name} must be a port number (got ${raw})`)
    process.exit(1)
  }
  return n
}

const env: NodeJS.ProcessEnv = {}
for (const [k, v] of Object.entries(process.env)) {
  if (k.startsWith('EARMARK_') && k !== 'EARMARK_DATA_DIR') env[k] = v
}

console.log('demo: building the page and starting Earmark (measuring speech capacity takes a few seconds)…')
const demo = await startDemo({
  host: process.env.HOST || '127.0.0.1',
  port: port('DEMO_PORT', 3000),
  earmarkPort: port('DEMO_EARMARK_PORT', 8080),
  dataDir: process.env.DEMO_DATA_DIR || 'data/demo',
  ...(process.env.DEMO_EARMARK_URL ? { earmarkPublicUrl: process.env.DEMO_EARMARK_URL } : {}),
  env,
}).catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err)
  console.error(`demo: could not start: ${message}`)
  if (/EADDRINUSE/.test(message)) console.error('demo: a port is taken; set DEMO_PORT / DEMO_EARMARK_PORT')
  process.exit(1)
})

console.log(`
  Earmark demo is running.

    Open  ${demo.url}        (add ?user=alice to pick who you are)
    Earmark speech server:   ${demo.earmarkUrl}

  Choose a pattern, press Start, speak, press Stop. Ctrl-C stops both servers.
`)

let stopping = false
const stop = async (signal: string) => {
  if (stopping) return
  stopping = true
  console.log(`demo: ${signal}, stopping`)
  await demo.close()
  process.exit(0)
}
process.once('SIGINT', () => void stop('SIGINT'))
process.once('SIGTERM', () => void stop('SIGTERM'))
