import { type Deepgram, DeepgramClient } from 'dg5'
import { chunks } from './speech.js'

type ConnectArgs = Parameters<DeepgramClient['listen']['v1']['connect']>[0]

/** The messages of one live stream as the official SDK v5 delivered them, and how it closed. */
export interface SdkV5LiveRun {
  results: Deepgram.listen.ListenV1Results[]
  metadata: Deepgram.listen.ListenV1Metadata[]
  closeCode: number
}

/**
 * Streams `pcm` (16 kHz linear16, 100 ms chunks) through SDK v5's `listen.v1.connect()` on `baseUrl`, then
 * CloseStream, and resolves once the server closed the socket. v5 builds the socket closed and opens it on
 * `connect()` (docs/deepgram-compat.md §7.1); a refused upgrade rejects. `query` adds to linear16 at 16 kHz
 * with interim results.
 */
export async function liveThroughSdkV5(
  baseUrl: string,
  credential: { apiKey: string } | { accessToken: string },
  pcm: Int16Array,
  query: Omit<ConnectArgs, 'encoding' | 'sample_rate'> = { model: 'nova-3' },
): Promise<SdkV5LiveRun> {
  const client = new DeepgramClient({ ...credential, baseUrl })
  const socket = await client.listen.v1.connect({
    interim_results: 'true',
    ...query,
    encoding: 'linear16',
    sample_rate: 16000,
    // A refused or broken stream must fail the test, not be retried behind its back.
    reconnectAttempts: 0,
  })
  const run: Omit<SdkV5LiveRun, 'closeCode'> = { results: [], metadata: [] }
  const closed = new Promise<number>((resolve, reject) => {
    socket.on('close', (event) => resolve(event.code))
    socket.on('error', (err) => reject(err))
  })
  socket.on('message', (message) => {
    if (message.type === 'Results') run.results.push(message)
    else if (message.type === 'Metadata') run.metadata.push(message)
  })
  socket.connect()
  // A refused upgrade fires `error` and a close, never `open`.
  await Promise.race([
    socket.waitForOpen(),
    closed.then((code) => {
      throw new Error(`closed with ${code} before it opened`)
    }),
  ])
  for (const chunk of chunks(pcm, 100)) socket.sendMedia(chunk)
  socket.sendCloseStream({ type: 'CloseStream' })
  const closeCode = await closed
  socket.close()
  return { ...run, closeCode }
}

/** The final (`is_final`) transcripts of a run, trimmed, the empty ones left out, joined by spaces. */
export function finalTranscript(run: SdkV5LiveRun): string {
  return run.results
    .filter((r) => r.is_final)
    .map((r) => r.channel.alternatives[0]?.transcript.trim() ?? '')
    .filter((t) => t.length > 0)
    .join(' ')
}
