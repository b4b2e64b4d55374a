/** One thing the page received (or a control message it sent), in the order it happened. */
export interface LogEntry {
  /** Milliseconds since the page loaded. */
  t: number
  kind: 'fetch' | 'ws-in' | 'ws-out' | 'ws-close' | 'error'
  /** The request or socket URL. */
  url: string
  /** HTTP status (fetch) or close code (ws-close). */
  status?: number
  /** The body or frame as text; binary frames as `[binary N bytes]`. */
  data: string
}

declare global {
  interface Window {
    /**
     * Every fetch response body and WebSocket frame the page received, for tests: they assert the app
     * server's own key never reaches the browser.
     */
    __earmarkLog: LogEntry[]
  }
}

window.__earmarkLog = []

const listeners: ((entry: LogEntry) => void)[] = []

/** Appends to `window.__earmarkLog` and tells the page's event list. */
export function record(entry: Omit<LogEntry, 't'>): void {
  const full = { t: Math.round(performance.now()), ...entry }
  window.__earmarkLog.push(full)
  for (const listener of listeners) listener(full)
}

export function onRecord(listener: (entry: LogEntry) => void): void {
  listeners.push(listener)
}

/** A received WebSocket payload as loggable text. */
export function frameText(data: unknown): string {
  if (typeof data === 'string') return data
  if (data instanceof ArrayBuffer) return `[binary ${data.byteLength} bytes]`
  if (data instanceof Blob) return `[binary ${data.size} bytes]`
  return String(data)
}

/** `fetch` that records the response body, then hands back the parsed JSON (or throws with the server's error). */
export async function fetchJson<T>(url: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(url, { credentials: 'same-origin', ...init })
  const text = await res.text()
  record({ kind: 'fetch', url: `${init.method ?? 'GET'} ${url}`, status: res.status, data: text })
  let body: unknown
  try {
    body = text === '' ? {} : JSON.parse(text)
  } catch {
    body = { err_msg: text }
  }
  if (!res.ok) {
    const err = body as { err_code?: string; err_msg?: string }
    throw new Error(`${res.status} ${err.err_code ?? ''} ${err.err_msg ?? ''}`.trim())
  }
  return body as T
}
