// The Earmark console (docs/console.md): one page over the project's own API, signed in with an admin or owner
// key. The key lives in this module's memory only: never a cookie, localStorage or sessionStorage, so a reload
// signs out. Every call sends it as `Authorization: Token …`; nothing is fetched from another origin.
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import './console.css'

interface Session {
  key: string
  projectId: string
  keyId: string
}

let session: Session | undefined

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const el = document.getElementById(id)
  if (!el) throw new Error(`missing #${id}`)
  return el as T
}

/** An API error in Deepgram's shape. */
class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

async function api<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
  if (!session) throw new ApiFailure(401, 'INVALID_AUTH', 'Not signed in.')
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Token ${session.key}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    credentials: 'omit',
    cache: 'no-store',
  })
  const data = (await res.json().catch(() => ({}))) as Record<string, unknown>
  if (!res.ok) {
    throw new ApiFailure(
      res.status,
      String(data.err_code ?? res.status),
      String(data.err_msg ?? res.statusText),
    )
  }
  return data as T
}

const project = () => `/v1/projects/${encodeURIComponent(session?.projectId ?? '')}`

function say(message: string): void {
  $('status').textContent = message
}

function failed(err: unknown): void {
  if (err instanceof ApiFailure && err.status === 401) {
    signOut('Your key is no longer valid: signed out.')
    return
  }
  say(err instanceof Error ? `Failed: ${err.message}` : 'Failed.')
}

/** A cell with text (never HTML: every value comes from the API and is shown as text). */
function cell(row: HTMLTableRowElement, text: string, className?: string): HTMLTableCellElement {
  const td = row.insertCell()
  td.textContent = text
  if (className) td.className = className
  return td
}

function button(label: string, accessibleName: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button')
  b.type = 'button'
  b.textContent = label
  b.setAttribute('aria-label', accessibleName)
  b.addEventListener('click', onClick)
  return b
}

/**
 * Gives each cell its column's name (`data-label`): at phone width the rows are shown as cards, each cell
 * prefixed with its column's name (console.css).
 */
function labelCells(table: HTMLTableElement): void {
  const names = [...(table.tHead?.rows[0]?.cells ?? [])].map((th) => th.textContent ?? '')
  for (const row of table.tBodies[0]?.rows ?? []) {
    for (const [i, td] of [...row.cells].entries()) if (td.colSpan === 1) td.dataset.label = names[i] ?? ''
  }
  scrollersFocusable()
}

/**
 * A table wider than its box scrolls sideways: the box then takes keyboard focus (so it can be scrolled
 * without a mouse) and is named after its table's caption; otherwise it is a plain box.
 */
function scrollersFocusable(): void {
  for (const box of document.querySelectorAll<HTMLElement>('.scroll')) {
    if (box.scrollWidth > box.clientWidth + 1) {
      box.tabIndex = 0
      box.setAttribute('role', 'region')
      box.setAttribute('aria-label', box.querySelector('caption')?.textContent ?? 'Table')
    } else {
      box.removeAttribute('tabindex')
      box.removeAttribute('role')
      box.removeAttribute('aria-label')
    }
  }
}

function emptyRow(body: HTMLTableSectionElement, columns: number, text: string): void {
  const row = body.insertRow()
  const td = cell(row, text, 'empty')
  td.colSpan = columns
}

/** `1 d 02:03:04`, `02:03`, or `expired`. */
function remaining(ms: number): string {
  if (ms <= 0) return 'expired'
  const s = Math.floor(ms / 1000)
  const d = Math.floor(s / 86400)
  const hh = String(Math.floor((s % 86400) / 3600)).padStart(2, '0')
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0')
  const ss = String(s % 60).padStart(2, '0')
  return d > 0 ? `${d} d ${hh}:${mm}:${ss}` : `${hh}:${mm}:${ss}`
}

/** Cells whose text counts down to (or up from) a time, updated every second. */
function ticking(td: HTMLTableCellElement, at: number, direction: 'down' | 'up'): void {
  td.dataset.at = String(at)
  td.dataset.direction = direction
  td.classList.add('countdown')
  tick(td)
}

function tick(td: HTMLElement): void {
  const at = Number(td.dataset.at)
  td.textContent =
    td.dataset.direction === 'up' ? remaining(Date.now() - at + 1000) : remaining(at - Date.now())
}

setInterval(() => {
  for (const td of document.querySelectorAll<HTMLElement>('.countdown')) tick(td)
}, 1000)

// ---- keys

interface KeyView {
  api_key_id: string
  comment: string
  scopes: string[]
  tags: string[]
  expiration_date?: string
  disabled_at?: string
}

async function loadKeys(): Promise<void> {
  const { api_keys } = await api<{ api_keys: { api_key: KeyView; member: { email: string } }[] }>(
    'GET',
    `${project()}/keys`,
  )
  const body = ($('keys-table') as HTMLTableElement).tBodies[0] as HTMLTableSectionElement
  body.replaceChildren()
  if (api_keys.length === 0) emptyRow(body, 7, 'No keys.')
  for (const { api_key: k } of api_keys) {
    const row = body.insertRow()
    row.dataset.keyId = k.api_key_id
    cell(row, k.comment || '(no comment)')
    cell(row, k.api_key_id, 'mono')
    cell(row, k.scopes.join(' '))
    cell(row, k.tags.find((t) => t.startsWith('end_user:'))?.slice('end_user:'.length) ?? '—')
    const left = cell(row, 'never expires')
    if (k.expiration_date) ticking(left, Date.parse(k.expiration_date), 'down')
    cell(row, k.disabled_at ? 'disabled' : k.api_key_id === session?.keyId ? 'active (you)' : 'active')
    const actions = row.insertCell()
    actions.className = 'actions'
    const name = k.comment || k.api_key_id
    actions.append(
      button('Reroll', `Reroll key ${name}`, () => void reroll(k)),
      button('Delete', `Delete key ${name}`, () => void remove(k)),
    )
  }
  labelCells($('keys-table') as HTMLTableElement)
}

function showSecret(forWhat: string, secret: string): void {
  $('secret-for').textContent = forWhat
  const input = $<HTMLInputElement>('secret-value')
  input.value = secret
  const panel = $('secret')
  panel.hidden = false
  panel.focus()
}

function hideSecret(): void {
  $<HTMLInputElement>('secret-value').value = ''
  $('secret').hidden = true
}

async function createKey(event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const comment = $<HTMLInputElement>('create-comment').value.trim()
  const scopes = $<HTMLInputElement>('create-scopes').value.split(/\s+/).filter(Boolean)
  const endUser = $<HTMLInputElement>('create-end-user').value.trim()
  const ttl = $<HTMLInputElement>('create-ttl').value.trim()
  try {
    const created = await api<{ key: string; api_key_id: string }>('POST', `${project()}/keys`, {
      comment,
      scopes,
      ...(endUser ? { tags: [`end_user:${endUser}`] } : {}),
      ...(ttl ? { time_to_live_in_seconds: Number(ttl) } : {}),
    })
    ;($('create-form') as HTMLFormElement).reset()
    say(`Created key ${comment}.`)
    showSecret(comment, created.key)
    await loadKeys()
  } catch (err) {
    failed(err)
  }
}

async function reroll(k: KeyView): Promise<void> {
  const name = k.comment || k.api_key_id
  if (!confirm(`Reroll ${name}? The old secret keeps working for an hour.`)) return
  try {
    const rolled = await api<{ key: string }>('POST', `${project()}/keys/${k.api_key_id}/reroll`, {})
    say(`Rerolled ${name}.`)
    showSecret(name, rolled.key)
    await loadKeys()
  } catch (err) {
    failed(err)
  }
}

async function remove(k: KeyView): Promise<void> {
  const name = k.comment || k.api_key_id
  if (!confirm(`Delete ${name}? Its grant tokens and live streams end at once.`)) return
  try {
    await api('DELETE', `${project()}/keys/${k.api_key_id}`)
    say(`Deleted ${name}.`)
    await Promise.all([loadKeys(), loadLive()])
  } catch (err) {
    failed(err)
  }
}

// ---- live streams and grants

interface StreamView {
  request_id: string
  route: string
  credential: string
  api_key_id: string
  jti: string | null
  end_user: string | null
  started: string
}

interface GrantView {
  jti: string
  api_key_id: string
  end_user: string | null
  expiration_date: string
  streams: number
}

async function loadLive(): Promise<void> {
  const [{ streams }, { grants }] = await Promise.all([
    api<{ streams: StreamView[] }>('GET', `${project()}/streams`),
    api<{ grants: GrantView[] }>('GET', `${project()}/grants`),
  ])
  const sBody = ($('streams-table') as HTMLTableElement).tBodies[0] as HTMLTableSectionElement
  sBody.replaceChildren()
  if (streams.length === 0) emptyRow(sBody, 6, 'No live stream open.')
  for (const s of streams) {
    const row = sBody.insertRow()
    row.dataset.requestId = s.request_id
    cell(row, s.request_id, 'mono')
    cell(row, s.route)
    cell(
      row,
      s.jti
        ? `grant ${s.jti.slice(0, 8)}… of ${s.api_key_id.slice(0, 8)}…`
        : `key ${s.api_key_id.slice(0, 8)}…`,
    )
    cell(row, s.end_user ?? '—')
    ticking(cell(row, ''), Date.parse(s.started), 'up')
    const actions = row.insertCell()
    actions.className = 'actions'
    actions.append(
      button(
        'Close',
        `Close stream ${s.request_id} by revoking its ${s.jti ? 'grant token' : 'key'}`,
        () => void closeStream(s),
      ),
    )
  }
  const gBody = ($('grants-table') as HTMLTableElement).tBodies[0] as HTMLTableSectionElement
  gBody.replaceChildren()
  if (grants.length === 0) emptyRow(gBody, 6, 'No grant token outstanding.')
  for (const g of grants) {
    const row = gBody.insertRow()
    row.dataset.jti = g.jti
    cell(row, g.jti, 'mono')
    cell(row, g.api_key_id, 'mono')
    cell(row, g.end_user ?? '—')
    ticking(cell(row, ''), Date.parse(g.expiration_date), 'down')
    cell(row, String(g.streams))
    const actions = row.insertCell()
    actions.className = 'actions'
    actions.append(button('Revoke', `Revoke grant token ${g.jti}`, () => void revokeGrant(g)))
  }
  labelCells($('streams-table') as HTMLTableElement)
  labelCells($('grants-table') as HTMLTableElement)
}

async function closeStream(s: StreamView): Promise<void> {
  const what = s.jti ? 'its grant token is revoked' : `its key ${s.api_key_id} is disabled`
  if (!confirm(`Close stream ${s.request_id}? ${what[0]?.toUpperCase()}${what.slice(1)}.`)) return
  try {
    await api('DELETE', `${project()}/streams/${s.request_id}`)
    say(`Closed stream ${s.request_id}: ${what}.`)
    await Promise.all([loadLive(), loadKeys()])
  } catch (err) {
    failed(err)
  }
}

async function revokeGrant(g: GrantView): Promise<void> {
  if (!confirm(`Revoke grant token ${g.jti}? Its streams close at once.`)) return
  try {
    await api('DELETE', `${project()}/grants/${g.jti}`)
    say(`Revoked grant token ${g.jti}.`)
    await loadLive()
  } catch (err) {
    failed(err)
  }
}

// ---- usage over time

interface UsageRow {
  start: string
  audio_seconds: number
  requests: number
  failed: number
  accessor?: string | null
  end_user?: string | null
}

interface AuditEventView {
  id: string
  type: string
  time: string
  key_id: string | null
  end_user: string | null
  ip: string | null
  detail: Record<string, unknown>
}

const BUCKET_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const
type Resolution = keyof typeof BUCKET_MS
let chart: uPlot | undefined

/** Audit events of some types since `start`, newest first (up to 1000). */
async function events(type: string, start: number): Promise<AuditEventView[]> {
  const q = new URLSearchParams({ type, start: new Date(start).toISOString().slice(0, 19), limit: '1000' })
  return (await api<{ events: AuditEventView[] }>('GET', `${project()}/audit?${q}`)).events
}

/** The latest usage read: an older answer arriving after a newer one is dropped. */
let usageRead = 0

async function loadUsage(): Promise<void> {
  const read = ++usageRead
  const metric = $<HTMLSelectElement>('usage-metric').value
  const groupBy = $<HTMLSelectElement>('usage-group').value as 'key' | 'end_user'
  const resolution = $<HTMLSelectElement>('usage-resolution').value as Resolution
  const q = new URLSearchParams({ resolution, group_by: groupBy })
  const usage = await api<{ start: string; end: string; results: UsageRow[] }>(
    'GET',
    `${project()}/usage?${q}`,
  )
  const bucket = BUCKET_MS[resolution]
  const from = Date.parse(usage.start)
  const to = Date.parse(usage.end)
  /** series name → bucket start → value */
  const values = new Map<string, Map<number, number>>()
  const add = (group: string, at: number, value: number) => {
    const start = Math.floor(at / bucket) * bucket
    let series = values.get(group)
    if (!series) {
      series = new Map()
      values.set(group, series)
    }
    series.set(start, (series.get(start) ?? 0) + value)
  }
  const groupOf = (r: { accessor?: string | null; end_user?: string | null }) =>
    (groupBy === 'key' ? r.accessor : r.end_user) ?? '(none)'
  if (metric === 'refusals' || metric === 'auth_failures') {
    const types = metric === 'refusals' ? ['limit.refused', 'quota.refused'] : ['auth.refused']
    for (const type of types) {
      for (const e of await events(type, from)) {
        // A flood is recorded as one event, and the refusals it did not record ride on the next one.
        const suppressed = typeof e.detail.suppressed === 'number' ? e.detail.suppressed : 0
        add((groupBy === 'key' ? e.key_id : e.end_user) ?? '(none)', Date.parse(e.time), 1 + suppressed)
      }
    }
  } else {
    for (const r of usage.results) {
      const v = metric === 'minutes' ? r.audio_seconds / 60 : metric === 'requests' ? r.requests : r.failed
      add(groupOf(r), Date.parse(`${r.start}${r.start.length === 10 ? 'T00:00:00Z' : ''}`), v)
    }
  }
  if (read !== usageRead) return
  const xs: number[] = []
  for (let t = Math.floor(from / bucket) * bucket; t < to; t += bucket) xs.push(t / 1000)
  const names = [...values.keys()].sort()
  const data: uPlot.AlignedData = [xs, ...names.map((n) => xs.map((x) => values.get(n)?.get(x * 1000) ?? 0))]
  const label = $<HTMLSelectElement>('usage-metric').selectedOptions[0]?.textContent ?? metric
  const total = names.reduce(
    (n, name) => n + [...(values.get(name)?.values() ?? [])].reduce((a, b) => a + b, 0),
    0,
  )
  $('usage-caption').textContent =
    names.length === 0
      ? `${label}: nothing recorded in this range.`
      : `${label} per ${groupBy === 'key' ? 'key' : 'end user'}, every ${resolution}: ${names.length} series, ${Math.round(total * 100) / 100} in total.`
  renderUsageTable(names, data, label)
  drawChart(names, data, label)
}

const COLORS = ['#1f6feb', '#c2410c', '#15803d', '#7c3aed', '#be185d', '#0e7490', '#a16207', '#4b5563']

function drawChart(names: string[], data: uPlot.AlignedData, label: string): void {
  const host = $('usage-chart')
  chart?.destroy()
  chart = undefined
  host.replaceChildren()
  const width = Math.max(280, host.clientWidth || 600)
  chart = new uPlot(
    {
      width,
      height: 260,
      series: [
        {},
        ...names.map((n, i) => ({
          label: n.length > 14 ? `${n.slice(0, 13)}…` : n,
          stroke: COLORS[i % COLORS.length] ?? '#1f6feb',
          width: 2,
          points: { show: true, size: 5 },
        })),
      ],
      axes: [{}, { label, size: 60 }],
      scales: { x: { time: true } },
      legend: { live: false },
    },
    data,
    host,
  )
}

function renderUsageTable(names: string[], data: uPlot.AlignedData, label: string): void {
  const table = $('usage-table') as HTMLTableElement
  if (table.caption) table.caption.textContent = `${label} per bucket`
  const head = table.tHead as HTMLTableSectionElement
  head.replaceChildren()
  const hr = head.insertRow()
  for (const h of ['Bucket start', ...names]) {
    const th = document.createElement('th')
    th.scope = 'col'
    th.textContent = h
    hr.append(th)
  }
  const body = table.tBodies[0] as HTMLTableSectionElement
  body.replaceChildren()
  const xs = data[0] as number[]
  xs.forEach((x, i) => {
    if (!names.some((_, n) => ((data[n + 1] as number[])[i] ?? 0) !== 0)) return
    const row = body.insertRow()
    cell(row, new Date(x * 1000).toISOString().replace('.000Z', 'Z'))
    for (let n = 0; n < names.length; n++) {
      cell(row, String(Math.round(((data[n + 1] as number[])[i] ?? 0) * 1000) / 1000))
    }
  })
  if (body.rows.length === 0) emptyRow(body, names.length + 1, 'Nothing recorded in this range.')
  scrollersFocusable()
}

// ---- events

/** The latest events read: an older answer arriving after a newer one is dropped. */
let eventsRead = 0

async function loadEvents(): Promise<void> {
  const read = ++eventsRead
  const type = $<HTMLSelectElement>('events-type').value
  const q = new URLSearchParams({ limit: '100', ...(type ? { type } : {}) })
  const { events: list } = await api<{ events: AuditEventView[] }>('GET', `${project()}/audit?${q}`)
  if (read !== eventsRead) return
  const body = ($('events-table') as HTMLTableElement).tBodies[0] as HTMLTableSectionElement
  body.replaceChildren()
  if (list.length === 0) emptyRow(body, 6, 'No events.')
  for (const e of list) {
    const row = body.insertRow()
    if (e.type.startsWith('suspicious.')) row.className = 'suspicious'
    cell(row, e.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'))
    cell(row, e.type, 'mono nowrap')
    cell(row, e.key_id ?? '—', 'mono')
    cell(row, e.end_user ?? '—')
    cell(row, e.ip ?? '—')
    cell(row, JSON.stringify(e.detail), 'detail')
  }
  labelCells($('events-table') as HTMLTableElement)
}

// ---- session

async function refreshAll(): Promise<void> {
  await Promise.all([loadKeys(), loadLive(), loadUsage(), loadEvents()])
}

let liveTimer: ReturnType<typeof setInterval> | undefined

async function signIn(event: SubmitEvent): Promise<void> {
  event.preventDefault()
  const input = $<HTMLInputElement>('signin-key')
  const error = $('signin-error')
  error.textContent = ''
  const key = input.value.trim()
  try {
    const res = await fetch('/v1/auth/token', {
      headers: { authorization: `Token ${key}` },
      credentials: 'omit',
      cache: 'no-store',
    })
    const who = (await res.json()) as Record<string, unknown>
    if (!res.ok) throw new Error(String(who.err_msg ?? 'That key was refused.'))
    if (who.type !== 'api_key') throw new Error('Sign in with an API key, not a grant token.')
    session = { key, projectId: String(who.project_id), keyId: String(who.api_key_id) }
    // The console reads the audit trail: an admin's or owner's `audit:read` (docs/roles-and-scopes.md).
    try {
      await api('GET', `${project()}/audit?limit=1`)
    } catch (err) {
      session = undefined
      if (err instanceof ApiFailure && err.status === 403)
        throw new Error('This key is not an admin or owner key (it lacks audit:read).')
      throw err
    }
  } catch (err) {
    error.textContent = err instanceof Error ? err.message : 'Sign-in failed.'
    input.focus()
    return
  } finally {
    input.value = ''
  }
  $('signin').hidden = true
  $('app').hidden = false
  $('nav').hidden = false
  $('who').hidden = false
  $('who-text').textContent = `Project ${session.projectId}`
  say('Signed in.')
  $('keys-h').focus()
  try {
    await refreshAll()
  } catch (err) {
    failed(err)
  }
  // Streams, grants and events change without this page: read again every 2 s while signed in.
  let ticks = 0
  liveTimer = setInterval(() => {
    if (!session) return
    // The chart every 30 s: usage is summed in the store, a heavier read than the lists.
    const usage = ++ticks % 15 === 0 ? loadUsage() : undefined
    void Promise.all([loadLive(), loadEvents(), usage]).catch(failed)
  }, 2000)
}

function signOut(message = 'Signed out.'): void {
  session = undefined
  clearInterval(liveTimer)
  hideSecret()
  chart?.destroy()
  chart = undefined
  for (const id of ['keys-table', 'streams-table', 'grants-table', 'events-table', 'usage-table']) {
    ;(($(id) as HTMLTableElement).tBodies[0] as HTMLTableSectionElement).replaceChildren()
  }
  $('app').hidden = true
  $('nav').hidden = true
  $('who').hidden = true
  $('signin').hidden = false
  say(message)
  $('signin-key').focus()
}

function main(): void {
  $('signin-form').addEventListener('submit', (e) => void signIn(e as SubmitEvent))
  $('sign-out').addEventListener('click', () => signOut())
  $('create-form').addEventListener('submit', (e) => void createKey(e as SubmitEvent))
  $('secret-copy').addEventListener('click', () => {
    const value = $<HTMLInputElement>('secret-value').value
    navigator.clipboard.writeText(value).then(
      () => say('Secret copied to the clipboard.'),
      () => {
        $<HTMLInputElement>('secret-value').select()
        say('Copying was refused: the secret is selected, press Ctrl+C.')
      },
    )
  })
  $('secret-done').addEventListener('click', () => {
    hideSecret()
    $('create-comment').focus()
  })
  $('usage-form').addEventListener('submit', (e) => {
    e.preventDefault()
    void loadUsage().catch(failed)
  })
  for (const id of ['usage-metric', 'usage-group', 'usage-resolution']) {
    $(id).addEventListener('change', () => void loadUsage().catch(failed))
  }
  $('events-form').addEventListener('submit', (e) => {
    e.preventDefault()
    void loadEvents().catch(failed)
  })
  $('events-type').addEventListener('change', () => void loadEvents().catch(failed))
  // A closed <details> hides its table's width: measured again when opened.
  document.querySelector('details')?.addEventListener('toggle', scrollersFocusable)
  // Headings that focus moves to must take focus.
  for (const h of document.querySelectorAll('h2')) h.tabIndex = -1
  let width = window.innerWidth
  window.addEventListener('resize', () => {
    scrollersFocusable()
    if (Math.abs(window.innerWidth - width) > 40 && session && chart) {
      width = window.innerWidth
      chart.setSize({ width: Math.max(280, $('usage-chart').clientWidth), height: 260 })
    }
  })
  document.body.dataset.ready = 'true'
}

main()
