// The server side of the memory benchmark (bench/memory.ts): Earmark alone in this child process, built by
// the real composition root on a temporary data dir, so the runner reads this process's RSS from /proc and
// nothing else (the uploading clients run in the runner) is counted in it.
import { runnerChannel, startBenchEarmark } from './bench-earmark.js'
import { type MemoryReadyMessage, serveRunner } from './protocol.js'

const send = runnerChannel('memory-server.ts')
const { earmark, config, url, apiKey } = await startBenchEarmark('earmark-bench-memory-', {
  EARMARK_CAPACITY: process.env.EARMARK_CAPACITY ?? '2',
  EARMARK_MAX_UPLOAD_BYTES: process.env.EARMARK_MAX_UPLOAD_BYTES ?? String(600 * 1024 * 1024),
  EARMARK_MAX_AUDIO_SECONDS: process.env.EARMARK_MAX_AUDIO_SECONDS ?? '120',
  EARMARK_LISTEN_QUEUE: process.env.EARMARK_LISTEN_QUEUE ?? '8',
  EARMARK_CAPACITY_WAIT_MS: '600000',
})

serveRunner(send, () => earmark.close())

const ready: MemoryReadyMessage = {
  type: 'memory-ready',
  earmarkUrl: url,
  apiKey,
  uploadDir: config.uploadDir,
  config: {
    capacity: earmark.engine.capacity,
    maxUploadBytes: config.maxUploadBytes,
    maxAudioSeconds: config.maxAudioSeconds,
    listenQueue: config.listenQueue,
    listenMaxUploads: config.listenMaxUploads,
  },
}
send(ready)
