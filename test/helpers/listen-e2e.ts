import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { LIVE_WEBM_ARGS } from './audio-fixtures.js'
import { finals, openSocket, type StreamLog } from './live-server.js'
import { concatPcm, SAMPLE_RATE, silence, speech } from './speech.js'

// Helpers for the end-to-end /v1/listen tests that drive a real `earmark serve` process (test/ws/listen-*.test.ts,
// test/sdk/sdk-listen.test.ts). Audio is made at test time (flite, ffmpeg) and never committed.

const run = promisify(execFile)

/** The bytes of 16-bit PCM, as the wire carries them (little-endian on every machine we run on). */
export function pcmBytes(pcm: Int16Array): Buffer {
  return Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)
}

/** A mono 16-bit WAV of `pcm` at `sampleRate` (default 16 kHz; 44-byte canonical header). */
export function wav(pcm: Int16Array, sampleRate = SAMPLE_RATE): Buffer {
  const data = pcmBytes(pcm)
  const h = Buffer.alloc(44)
  h.write('RIFF', 0)
  h.writeUInt32LE(36 + data.length, 4)
  h.write('WAVEfmt ', 8)
  h.writeUInt32LE(16, 16)
  h.writeUInt16LE(1, 20)
  h.writeUInt16LE(1, 22)
  h.writeUInt32LE(sampleRate, 24)
  h.writeUInt32LE(sampleRate * 2, 28)
  h.writeUInt16LE(2, 32)
  h.writeUInt16LE(16, 34)
  h.write('data', 36)
  h.writeUInt32LE(data.length, 40)
  return Buffer.concat([h, data])
}

/** Flite speech of each sentence, `pauseSeconds` of silence after each, and 0.5 s before the first. */
export async function spokenSentences(sentences: readonly string[], pauseSeconds = 1): Promise<Int16Array> {
  const parts = [silence(0.5)]
  for (const sentence of sentences) parts.push(await speech(sentence), silence(pauseSeconds))
  return concatPcm(...parts)
}

/** `pcm` cut or padded with silence to exactly `seconds` (a whole number of samples). */
export function exactly(pcm: Int16Array, seconds: number): Int16Array {
  const samples = Math.round(seconds * SAMPLE_RATE)
  return pcm.length >= samples ? pcm.slice(0, samples) : concatPcm(pcm, new Int16Array(samples - pcm.length))
}

/** Cuts bytes into pieces of `size` (the last may be shorter). */
export function pieces(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = []
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size))
  return out
}

/** ffmpeg encodings of one WAV: what a file upload and what a browser's MediaRecorder produce. */
export interface WebmVariants {
  /** `-c:a libopus` into WebM (ffmpeg's defaults: sized clusters, cues, duration). */
  webm: Buffer
  /** MediaRecorder-like: `-live 1 -cluster_time_limit 100`, clusters of unknown size, no cues or duration. */
  liveWebm: Buffer
}

export async function webmVariants(wavBytes: Uint8Array): Promise<WebmVariants> {
  const dir = await mkdtemp(join(tmpdir(), 'earmark-webm-'))
  try {
    const src = join(dir, 'speech.wav')
    await writeFile(src, wavBytes)
    const ff = (args: string[]) =>
      run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-i', src, ...args])
    await Promise.all([
      ff(['-c:a', 'libopus', join(dir, 'speech.webm')]),
      ff([...LIVE_WEBM_ARGS, join(dir, 'speech-live.webm')]),
    ])
    return {
      webm: await readFile(join(dir, 'speech.webm')),
      liveWebm: await readFile(join(dir, 'speech-live.webm')),
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** `http://…` → `ws://…` */
export function wsUrlOf(httpUrl: string): string {
  return httpUrl.replace(/^http/, 'ws')
}

/** The owner's view of the one project: keys, grants and usage over plain HTTP. */
export interface OwnerApi {
  projectId: string
  /** A new key with `scopes` (default `['member']`): its secret and id. */
  createKey(comment: string, scopes?: string[]): Promise<{ key: string; id: string }>
  /** `POST /v1/auth/grant` with `key`: the access token and its `expires_in`. */
  grant(key: string, ttlSeconds: number): Promise<{ token: string; expiresIn: number }>
  /** GET a management path with the owner key; throws unless 200. */
  get<T>(path: string): Promise<T>
}

async function json<T>(res: Response, what: string): Promise<T> {
  const text = await res.text()
  if (!res.ok) throw new Error(`${what}: ${res.status} ${text}`)
  return JSON.parse(text) as T
}

export async function ownerApi(url: string, ownerKey: string): Promise<OwnerApi> {
  const headers = { authorization: `Token ${ownerKey}`, 'content-type': 'application/json' }
  const get = async <T>(path: string) => json<T>(await fetch(`${url}${path}`, { headers }), `GET ${path}`)
  const { projects } = await get<{ projects: { project_id: string }[] }>('/v1/projects')
  const projectId = projects[0]?.project_id
  if (!projectId) throw new Error('the owner key sees no project')
  return {
    projectId,
    async createKey(comment, scopes = ['member']) {
      const res = await fetch(`${url}/v1/projects/${projectId}/keys`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ comment, scopes }),
      })
      const created = await json<{ key: string; api_key_id: string }>(res, 'create key')
      return { key: created.key, id: created.api_key_id }
    },
    async grant(key, ttlSeconds) {
      const res = await fetch(`${url}/v1/auth/grant`, {
        method: 'POST',
        headers: { authorization: `Token ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ ttl_seconds: ttlSeconds }),
      })
      const body = await json<{ access_token: string; expires_in: number }>(res, 'grant')
      return { token: body.access_token, expiresIn: body.expires_in }
    },
    get,
  }
}

/** The parts of a pre-recorded response these tests read. */
export interface PrerecordedBody {
  metadata: { request_id: string; duration: number }
  results: { channels: { alternatives: { transcript: string }[] }[] }
}

/** `POST /v1/listen` with raw media; the status, the request id header and the body. */
export async function postListen(
  url: string,
  authorization: string,
  body: Uint8Array,
  query = '',
): Promise<{ status: number; requestId: string; body: unknown }> {
  const res = await fetch(`${url}/v1/listen${query}`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/octet-stream' },
    body,
  })
  const text = await res.text()
  return { status: res.status, requestId: res.headers.get('dg-request-id') ?? '', body: JSON.parse(text) }
}

/** The transcript of a pre-recorded response. */
export function prerecordedTranscript(body: unknown): string {
  return (body as PrerecordedBody).results.channels[0]?.alternatives[0]?.transcript ?? ''
}

/** Polls `check` every 50 ms until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** WER as a percentage with one decimal, for diagnostics. */
export function percent(rate: number): string {
  return `${(rate * 100).toFixed(1)} %`
}

/** What a client saw of one live stream, with its transcript (the final Results, joined). */
export interface LiveOutcome extends StreamLog {
  /** The 101's `dg-request-id`. */
  requestId: string
  transcript: string
}

/**
 * Opens `/v1/listen?query` on `wsUrl` with `auth`, sends `frames` (binary, `paceMs` apart when given), then
 * CloseStream, and resolves once the server closed the socket. Throws when the upgrade is refused.
 */
export async function streamFrames(
  wsUrl: string,
  auth: { protocols?: string[]; headers?: Record<string, string> },
  query: string,
  frames: readonly Uint8Array[],
  paceMs = 0,
): Promise<LiveOutcome> {
  const { ws, log, closed } = await openSocket(`${wsUrl}/v1/listen?${query}`, auth)
  if (log.status !== undefined) throw new Error(`upgrade refused: ${log.status} ${JSON.stringify(log.body)}`)
  for (const frame of frames) {
    ws.send(frame)
    if (paceMs > 0) await new Promise((r) => setTimeout(r, paceMs))
  }
  ws.send(JSON.stringify({ type: 'CloseStream' }))
  await closed
  return { ...log, requestId: String(log.headers?.['dg-request-id'] ?? ''), transcript: finals(log) }
}
