import { type AudioPath, type Capture, startCapture } from './capture.js'
import {
  autoExpiring,
  type Credential,
  deleteKey,
  onDemandKey,
  type Pattern,
  type TokenKind,
} from './credentials.js'
import { fetchJson, type LogEntry, onRecord } from './log.js'
import { connectToProxy, connectWithSdk, type ListenConnection, type ServerMessage } from './transport.js'

/** What the demo server tells the page (`GET /config.json`). */
interface DemoConfig {
  /** Where the app kit's routes live, e.g. `/earmark`. */
  prefix: string
  /** Earmark's URL as the browser reaches it; null: this page's host name on `earmarkPort`. */
  earmarkUrl: string | null
  earmarkPort: number
  /** The signed-in demo user. */
  user: string
}

type State = 'idle' | 'starting' | 'streaming' | 'stopping' | 'stopped' | 'error'

function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id)
  if (!el) throw new Error(`#${id} is missing`)
  return el as T
}

const ui = {
  start: element<HTMLButtonElement>('start'),
  stop: element<HTMLButtonElement>('stop'),
  tokenKind: element<HTMLSelectElement>('token-kind'),
  status: element('status'),
  lifetime: element('lifetime'),
  endpoint: element('endpoint'),
  audio: element('audio'),
  level: element<HTMLMeterElement>('level'),
  final: element('final'),
  interim: element('interim'),
  user: element('user'),
  events: element<HTMLOListElement>('events'),
  controls: element<HTMLFieldSetElement>('controls'),
}

function chosen(name: string): string {
  const input = document.querySelector<HTMLInputElement>(`input[name="${name}"]:checked`)
  if (!input) throw new Error(`no ${name} chosen`)
  return input.value
}

function setState(state: State, text: string): void {
  ui.status.dataset.state = state
  ui.status.textContent = text
  document.body.dataset.state = state
  const busy = state === 'starting' || state === 'streaming' || state === 'stopping'
  ui.start.disabled = busy
  ui.stop.disabled = state !== 'streaming'
  ui.controls.disabled = busy
}

/* ---- credential lifetime ---- */

let countdown: ReturnType<typeof setInterval> | undefined

function showLifetime(credential: Credential | null): void {
  clearInterval(countdown)
  countdown = undefined
  delete ui.lifetime.dataset.expiresAt
  if (!credential) {
    ui.lifetime.dataset.credential = 'none'
    ui.lifetime.textContent = 'No credential in the browser: the app server holds it.'
    return
  }
  ui.lifetime.dataset.credential = credential.scheme
  ui.lifetime.dataset.expiresAt = String(credential.expiresAt)
  const tick = () => {
    const left = Math.max(0, Math.round((credential.expiresAt - Date.now()) / 1000))
    ui.lifetime.dataset.secondsLeft = String(left)
    const clock =
      left >= 60 ? `${Math.floor(left / 60)} min ${String(left % 60).padStart(2, '0')} s` : `${left} s`
    ui.lifetime.textContent =
      left > 0
        ? `${credential.label}: expires in ${clock}`
        : `${credential.label}: expired (an open stream lives on; a new one needs a new credential)`
  }
  tick()
  countdown = setInterval(tick, 250)
}

function showKeyDeleted(credential: Credential): void {
  clearInterval(countdown)
  countdown = undefined
  ui.lifetime.dataset.secondsLeft = '0'
  ui.lifetime.textContent = `${credential.label}: deleted at Stop`
}

/* ---- transcript ---- */

const finals: string[] = []

function onMessage(message: ServerMessage): void {
  if (message.type !== 'Results') return
  const text = message.channel.alternatives[0]?.transcript.trim() ?? ''
  if (message.is_final) {
    if (text) finals.push(text)
    ui.final.textContent = finals.join(' ')
    ui.final.dataset.count = String(finals.length)
    ui.interim.textContent = ''
  } else {
    ui.interim.textContent = text
  }
}

/* ---- the event list ---- */

function summary(entry: LogEntry): string {
  if (entry.kind === 'ws-in') {
    try {
      const m = JSON.parse(entry.data) as { type?: string; is_final?: boolean; channel?: unknown }
      if (m.type === 'Results') {
        const t = (m.channel as { alternatives?: { transcript?: string }[] }).alternatives?.[0]?.transcript
        return `← Results ${m.is_final ? 'final' : 'interim'}: "${t ?? ''}"`
      }
      return `← ${m.type ?? entry.data.slice(0, 80)}`
    } catch {
      return `← ${entry.data.slice(0, 80)}`
    }
  }
  if (entry.kind === 'ws-out') return `→ ${entry.data}`
  if (entry.kind === 'ws-close') return `closed ${entry.status ?? ''} ${entry.data}`.trim()
  if (entry.kind === 'fetch') return `${entry.url} → ${entry.status ?? ''}`
  return `error: ${entry.data}`
}

onRecord((entry) => {
  const li = document.createElement('li')
  li.textContent = `${(entry.t / 1000).toFixed(2)} s  ${summary(entry)}`
  ui.events.append(li)
  while (ui.events.children.length > 200) ui.events.firstElementChild?.remove()
  ui.events.scrollTop = ui.events.scrollHeight
})

/* ---- one run ---- */

interface Run {
  pattern: Pattern
  credential: Credential | null
  capture: Capture | null
  connection: ListenConnection | null
  stopping: boolean
  /** Set once the socket has closed. */
  closed: boolean
}

let config: DemoConfig
let run: Run | null = null
let peak = 0
let bytesSent = 0

function earmarkUrl(): string {
  return config.earmarkUrl ?? `${location.protocol}//${location.hostname}:${config.earmarkPort}`
}

async function credentialFor(pattern: Pattern): Promise<Credential | null> {
  if (pattern === 'key') return onDemandKey(config.prefix)
  if (pattern === 'token') return autoExpiring(config.prefix, ui.tokenKind.value as TokenKind)
  return null
}

async function start(): Promise<void> {
  const pattern = chosen('pattern') as Pattern
  const path = chosen('path') as AudioPath
  document.body.dataset.pattern = pattern
  document.body.dataset.path = path
  delete document.body.dataset.keyDeleted
  delete document.body.dataset.closeCode
  finals.length = 0
  ui.final.textContent = ''
  ui.final.dataset.count = '0'
  ui.interim.textContent = ''
  peak = 0
  bytesSent = 0
  ui.level.dataset.peak = '0'
  setState('starting', 'Getting a credential…')
  const current: Run = {
    pattern,
    credential: null,
    capture: null,
    connection: null,
    stopping: false,
    closed: false,
  }
  run = current
  try {
    current.credential = await credentialFor(pattern)
    showLifetime(current.credential)
    if (current.credential?.apiKeyId) document.body.dataset.apiKeyId = current.credential.apiKeyId

    // Capture starts at once and queues until the socket opens, so no speech is lost while it connects.
    setState('starting', 'Opening the microphone…')
    const queued: (Blob | ArrayBuffer)[] = []
    let open = false
    const send = (audio: Blob | ArrayBuffer) => {
      const connection = current.connection
      if (!open || !connection) {
        queued.push(audio)
        return
      }
      connection.send(audio)
      bytesSent += audio instanceof Blob ? audio.size : audio.byteLength
      document.body.dataset.bytesSent = String(bytesSent)
    }
    current.capture = await startCapture(path, {
      onAudio: send,
      onLevel: (p) => {
        peak = Math.max(peak, p)
        ui.level.value = p
        ui.level.dataset.peak = peak.toFixed(4)
      },
    })
    ui.audio.textContent = current.capture.description
    document.body.dataset.contextRate = String(current.capture.contextRate)

    setState('starting', 'Connecting…')
    const params = { linear16: path === 'worklet' }
    current.connection =
      pattern === 'proxy'
        ? connectToProxy(config.prefix, params, onMessage)
        : await connectWithSdk(earmarkUrl(), current.credential as Credential, params, onMessage)
    ui.endpoint.textContent =
      pattern === 'proxy'
        ? `${current.connection.url.split('?')[0]} (app server) → Earmark /v1/listen`
        : `${current.connection.url} (Earmark, directly: @deepgram/sdk v5, subprotocol "${current.credential?.scheme}")`
    void current.connection.closed.then((info) => {
      current.closed = true
      document.body.dataset.closeCode = String(info.code)
      // The server ended the stream on its own (idle timeout, undecodable audio, …).
      if (!current.stopping && run === current)
        void stop(`Stream closed by the server (${info.code} ${info.reason})`)
    })
    await current.connection.opened
    open = true
    for (const audio of queued.splice(0)) send(audio)
    setState('streaming', 'Listening: speak now')
  } catch (err) {
    await stop(`Could not start: ${err instanceof Error ? err.message : String(err)}`)
  }
}

/** Stops capture, sends CloseStream, waits for the server's close, and deletes a pattern-1 key. */
async function stop(problem?: string): Promise<void> {
  const current = run
  if (!current || current.stopping) return
  current.stopping = true
  setState('stopping', 'Finishing…')
  try {
    await current.capture?.stop()
    const connection = current.connection
    if (connection && !current.closed) {
      connection.closeStream()
      // The server flushes, sends the last Results and Metadata, then closes with 1000.
      const closed = await Promise.race([connection.closed, delay(10_000).then(() => null)])
      if (!closed) connection.close()
    }
  } catch (err) {
    problem ??= `Stop failed: ${err instanceof Error ? err.message : String(err)}`
  }
  const credential = current.credential
  if (current.pattern === 'key' && credential?.apiKeyId) {
    try {
      await deleteKey(config.prefix, credential.apiKeyId)
      document.body.dataset.keyDeleted = 'true'
      showKeyDeleted(credential)
    } catch (err) {
      problem ??= `Could not delete the key: ${err instanceof Error ? err.message : String(err)}`
    }
  }
  ui.interim.textContent = ''
  if (problem) setState('error', problem)
  else setState('stopped', 'Stopped')
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function init(): Promise<void> {
  config = await fetchJson<DemoConfig>('/config.json')
  ui.user.textContent = config.user
  const syncKindSelect = () => {
    ui.tokenKind.disabled = chosen('pattern') !== 'token'
  }
  for (const input of document.querySelectorAll<HTMLInputElement>('input[name="pattern"]')) {
    input.addEventListener('change', syncKindSelect)
  }
  syncKindSelect()
  // Leaving mid-stream: delete a pattern-1 key anyway (it would otherwise live until its safety-net expiry).
  window.addEventListener('pagehide', () => {
    const id = run?.credential?.apiKeyId
    if (id && run?.pattern === 'key' && document.body.dataset.keyDeleted !== 'true') {
      void fetch(`${config.prefix}/key/${encodeURIComponent(id)}`, { method: 'DELETE', keepalive: true })
    }
  })
  ui.start.addEventListener('click', () => void start())
  ui.stop.addEventListener('click', () => void stop())
  setState('idle', 'Ready')
  document.body.dataset.ready = 'true'
}

init().catch((err: unknown) => setState('error', `The demo could not load: ${String(err)}`))
