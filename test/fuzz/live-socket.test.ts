import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { createFuzzTarget, type FuzzServer, type FuzzTarget } from '../helpers/fuzz-target.js'
import { type LiveServer, startLiveServer } from '../helpers/live-server.js'
import type { RawHeader } from '../helpers/raw-http.js'
import { closePayload, OP, openRawWs, type RawWs } from '../helpers/raw-ws.js'
import { recordSecrets } from '../helpers/test-logs.js'
import {
  deepgramErrorProblem,
  LISTEN_KEYS,
  mediaBytes,
  nastyString,
  pctEncode,
  queryBytes,
  queryPairs,
  SPEAK_KEYS,
  target,
} from './arbitraries.js'
import { createTally, type FuzzTally, runProperty } from './fuzz-options.js'

/**
 * Hostile clients on live sockets (issue 8): random JSON values, control messages of every type, byte strings
 * as text and binary frames, broken frames, pauses and closes at random points, with and without `encoding`,
 * authenticated with the owner key or a grant token, by header or subprotocol. After every case: no 5xx and
 * no internal-error close, every refusal Deepgram-shaped, speech slots back to zero, the process alive.
 */

const IDLE_MS = 1000
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
/** A deadline for a race: unreferenced, so a race already won does not hold the process open. */
const deadline = (ms: number) => new Promise((r) => setTimeout(r, ms).unref())

type Action =
  | { k: 'text'; text: string }
  | { k: 'textBytes'; bytes: Buffer }
  | { k: 'binary'; bytes: Buffer }
  | { k: 'silence'; ms: number }
  | { k: 'ping' | 'pong'; bytes: Buffer }
  | { k: 'fragmented'; text: string; cut: number }
  | { k: 'badFrame'; opcode: number; rsv: number; fin: boolean; masked: boolean; bytes: Buffer }
  | { k: 'pause'; ms: number }
  | { k: 'close'; code: number | undefined; reason: Buffer }
  | { k: 'terminate' }
  | { k: 'end' }

const CONTROL_TYPES = [
  'KeepAlive',
  'Finalize',
  'CloseStream',
  'Configure',
  'Speak',
  'Flush',
  'Clear',
  'Close',
] as const

/** Text a client may send: control messages (with junk fields), `type` of every JSON type, any JSON value. */
const controlText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...CONTROL_TYPES),
        fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
      )
      .map(([type, extra]) => JSON.stringify({ ...extra, type })),
  },
  {
    weight: 3,
    arbitrary: fc
      .oneof(
        fc.constant(null),
        fc.boolean(),
        fc.integer(),
        fc.double(),
        nastyString,
        fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
        fc.object({ maxDepth: 1 }),
        fc.constantFrom('keepalive', 'closestream', 'CloseStream ', 'Finalize\u0000'),
      )
      .map((type) => JSON.stringify({ type })),
  },
  { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? 'null') },
  {
    weight: 2,
    arbitrary: fc
      .oneof(nastyString, fc.jsonValue({ maxDepth: 1 }))
      .map((text) => JSON.stringify({ type: 'Speak', text })),
  },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'null',
      'true',
      '0',
      '1e309',
      '[]',
      '{}',
      '""',
      '"CloseStream"',
      '{"type":"Finalize"',
      '{"type":"CloseStream"}{"type":"CloseStream"}',
      '{"__proto__":{"type":"CloseStream"}}',
      '{"constructor":{"prototype":{"type":"Finalize"}}}',
      '[{"type":"CloseStream"}]',
      '{"type":["CloseStream"]}',
      '{"type":{"toString":"CloseStream"}}',
      '{"type":"Speak","text":null}',
      '{"type":"Speak","text":"🙂\\u0000"}',
      '',
      ' ',
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 64 }) },
)

const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 10, arbitrary: controlText.map((text) => ({ k: 'text' as const, text })) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(64 * 1024, 1024 * 1024, 4 * 1024 * 1024 + 1)
      .map((n) => ({ k: 'text' as const, text: JSON.stringify({ type: 'KeepAlive', pad: 'x'.repeat(n) }) })),
  },
  {
    weight: 2,
    arbitrary: fc
      .uint8Array({ maxLength: 64 })
      .map((b) => ({ k: 'textBytes' as const, bytes: Buffer.from(b) })),
  },
  { weight: 5, arbitrary: mediaBytes(4096).map((bytes) => ({ k: 'binary' as const, bytes })) },
  { weight: 1, arbitrary: fc.constant({ k: 'binary' as const, bytes: Buffer.alloc(0) }) },
  { weight: 4, arbitrary: fc.integer({ min: 20, max: 400 }).map((ms) => ({ k: 'silence' as const, ms })) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.constantFrom('ping' as const, 'pong' as const), fc.uint8Array({ maxLength: 125 }))
      .map(([k, b]) => ({ k, bytes: Buffer.from(b) })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(controlText, fc.nat({ max: 64 }))
      .map(([text, cut]) => ({ k: 'fragmented' as const, text, cut })),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('badFrame' as const),
      opcode: fc.integer({ min: 0, max: 15 }),
      rsv: fc.integer({ min: 0, max: 7 }),
      fin: fc.boolean(),
      masked: fc.boolean(),
      bytes: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    }),
  },
  {
    weight: 4,
    arbitrary: fc
      .oneof(
        { weight: 9, arbitrary: fc.integer({ min: 0, max: 60 }) },
        { weight: 1, arbitrary: fc.integer({ min: IDLE_MS + 100, max: IDLE_MS + 600 }) },
      )
      .map((ms) => ({ k: 'pause' as const, ms })),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        fc.oneof(
          fc.constantFrom(undefined, 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999),
          fc.integer({ min: 0, max: 65535 }),
        ),
        fc.oneof(
          fc.string({ maxLength: 30 }).map((s) => Buffer.from(s)),
          fc.uint8Array({ maxLength: 123 }).map((b) => Buffer.from(b)),
        ),
      )
      .map(([code, reason]) => ({ k: 'close' as const, code, reason })),
  },
  { weight: 1, arbitrary: fc.constant({ k: 'terminate' as const }) },
  { weight: 1, arbitrary: fc.constant({ k: 'end' as const }) },
)

type Auth = 'ownerHeader' | 'grantHeader' | 'ownerProtocol' | 'grantProtocol' | 'none' | 'bad'

/** `encoding` as real clients send it, missing (container audio), or junk. */
const encodingQuery = fc.constantFrom(
  '',
  'encoding=linear16&sample_rate=16000',
  'encoding=linear16&sample_rate=16000',
  'encoding=linear16',
  'encoding=mulaw&sample_rate=8000',
  'encoding=opus&sample_rate=48000',
  'encoding=flac',
  'encoding=linear16&sample_rate=0',
  'encoding=linear16&sample_rate=99999999999999999999',
  'encoding=%F0%9F%99%82',
)

const liveCase = fc.record({
  path: fc.oneof(
    { weight: 16, arbitrary: fc.constant('/v1/listen') },
    { weight: 3, arbitrary: fc.constant('/v1/speak') },
    { weight: 1, arbitrary: nastyString.map((s) => `/v1/listen/${pctEncode(s)}`) },
  ),
  auth: fc.oneof(
    {
      weight: 10,
      arbitrary: fc.constantFrom<Auth>('ownerHeader', 'grantHeader', 'ownerProtocol', 'grantProtocol'),
    },
    { weight: 1, arbitrary: fc.constantFrom<Auth>('none', 'bad') },
  ),
  encoding: encodingQuery,
  extra: fc.oneof(
    { weight: 5, arbitrary: fc.constant([]) },
    { weight: 1, arbitrary: queryPairs([...LISTEN_KEYS, ...SPEAK_KEYS], 4) },
  ),
  key: fc.oneof(
    { weight: 20, arbitrary: fc.constant<string | null | undefined>(undefined) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<string | null>(null, '', 'AAAA', 'dGhlIHNhbXBsZSBub25jZQ==x', '🙂'),
    },
  ),
  version: fc.oneof(
    { weight: 20, arbitrary: fc.constant<string | null | undefined>(undefined) },
    { weight: 1, arbitrary: fc.constantFrom<string | null>(null, '', '8', '12', '99999999999', 'x') },
  ),
  /** Drop the TCP connection this many ms after writing the upgrade request, without reading the answer. */
  dropAfterMs: fc.oneof(
    { weight: 20, arbitrary: fc.constant<number | undefined>(undefined) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) },
  ),
  actions: fc.array(action, { maxLength: 10 }),
})
type LiveCase = typeof liveCase extends fc.Arbitrary<infer T> ? T : never

function authHeaders(auth: Auth, s: FuzzServer): RawHeader[] {
  switch (auth) {
    case 'ownerHeader':
      return [['Authorization', `Token ${s.srv.ownerKey}`]]
    case 'grantHeader':
      return [['Authorization', `Bearer ${s.grant}`]]
    case 'ownerProtocol':
      return [['Sec-WebSocket-Protocol', `token, ${s.srv.ownerKey}`]]
    case 'grantProtocol':
      return [['Sec-WebSocket-Protocol', `bearer, ${s.grant}`]]
    case 'bad':
      return [['Authorization', 'Token emk_not_a_real_key_0000000000000000']]
    case 'none':
      return []
  }
}

/** Close codes a server may send, beyond the one a client closed with: protocol, data and idle closes. */
function closeProblem(
  code: number | undefined,
  reason: string,
  clientCode: number | undefined,
): string | undefined {
  if (code === undefined) return undefined
  if (code === clientCode) return undefined
  if (code === 1011 && reason === 'NET-0000')
    return 'the server closed with 1011 NET-0000 (an internal error)'
  if ([1000, 1002, 1007, 1009].includes(code)) return undefined
  if (code === 1008 && reason.startsWith('DATA-')) return undefined
  if (code === 1011 && reason === 'NET-0001') return undefined
  return `the server closed with an unexpected code ${code} ${JSON.stringify(reason)}`
}

const OPCODE = { textBytes: OP.TEXT, binary: OP.BINARY, ping: OP.PING, pong: OP.PONG } as const

async function play(
  ws: RawWs,
  actions: readonly Action[],
): Promise<{ clientCode?: number; dropped: boolean }> {
  let clientCode: number | undefined
  let sentClose = false
  for (const a of actions) {
    if (!ws.writable()) break
    switch (a.k) {
      case 'text':
        ws.send(OP.TEXT, Buffer.from(a.text, 'utf8'))
        break
      case 'silence':
        ws.send(OP.BINARY, Buffer.alloc(a.ms * 32))
        break
      case 'textBytes':
      case 'binary':
      case 'ping':
      case 'pong':
        ws.send(OPCODE[a.k], a.bytes)
        break
      case 'fragmented': {
        const bytes = Buffer.from(a.text, 'utf8')
        const cut = Math.min(a.cut, bytes.length)
        ws.send(OP.TEXT, bytes.subarray(0, cut), { fin: false })
        ws.send(OP.PING, Buffer.alloc(0))
        ws.send(OP.CONTINUATION, bytes.subarray(cut))
        break
      }
      case 'badFrame':
        ws.send(a.opcode, a.bytes, { fin: a.fin, rsv: a.rsv, masked: a.masked })
        break
      case 'pause':
        await sleep(a.ms)
        break
      case 'close':
        ws.send(OP.CLOSE, closePayload(a.code, a.reason))
        if (!sentClose) clientCode = a.code
        sentClose = true
        break
      case 'terminate':
        ws.socket.destroy()
        return { clientCode, dropped: true }
      case 'end':
        ws.socket.end()
        return { clientCode, dropped: true }
    }
    // Let the server interleave its work with ours, as a real network would.
    await new Promise((r) => setImmediate(r))
  }
  if (ws.writable() && !sentClose) {
    ws.send(OP.CLOSE, closePayload(1000))
    clientCode = 1000
  }
  return { clientCode, dropped: false }
}

/** Runs one case and returns what was wrong with the server's behaviour; `busy` allows a 429 (others hold slots). */
async function runCase(
  s: FuzzServer,
  c: LiveCase,
  note: (what: string) => void,
  busy = false,
): Promise<string[]> {
  const problems: string[] = []
  const query = Buffer.concat([
    Buffer.from(c.encoding),
    c.encoding && c.extra.length > 0 ? Buffer.from('&') : Buffer.alloc(0),
    queryBytes(c.extra),
  ])
  const ws = openRawWs(s.port, target(c.path, query), authHeaders(c.auth, s), {
    ...(c.key !== undefined ? { key: c.key } : {}),
    ...(c.version !== undefined ? { version: c.version } : {}),
  })
  try {
    if (c.dropAfterMs !== undefined) {
      await new Promise<void>((r) => ws.socket.once('connect', () => r()))
      await sleep(c.dropAfterMs)
      ws.socket.destroy()
      note('dropped during the upgrade')
      return problems
    }
    await Promise.race([ws.answered, deadline(15_000)])
    const { log } = ws
    if (log.status === 0) {
      problems.push(
        log.ended ? 'the server dropped the upgrade without an answer' : 'no upgrade answer in 15 s',
      )
      return problems
    }
    if (log.status >= 500) problems.push(`the upgrade was answered ${log.status}`)
    const goodAuth = c.auth !== 'none' && c.auth !== 'bad'
    const servedPath = c.path === '/v1/listen' || c.path === '/v1/speak'
    const goodHandshake = c.key === undefined && c.version === undefined
    if (log.status !== 101) {
      await Promise.race([ws.gone, deadline(5000)])
      const label = c.path.startsWith('/v1/listen/') ? '/v1/listen/…' : c.path
      note(`${label} ${log.status} ${/"err_code":"(\w+)"/.exec(log.body.toString())?.[1] ?? ''}`)
      const problem = deepgramErrorProblem(log.body, log.headers['dg-request-id'])
      if (problem) problems.push(`refused upgrade (${log.status}): ${problem}`)
      if (
        goodAuth &&
        servedPath &&
        goodHandshake &&
        c.path === '/v1/listen' &&
        ![400, ...(busy ? [429] : [])].includes(log.status)
      ) {
        problems.push(`a valid, authenticated upgrade was refused with ${log.status}`)
      }
      return problems
    }
    if (!goodAuth) problems.push('an upgrade without valid credentials was accepted')
    if (!goodHandshake) problems.push('an upgrade with a malformed key or version was accepted')
    const { clientCode, dropped } = await play(ws, c.actions)
    if (!dropped) {
      await Promise.race([ws.gone, deadline(10_000)])
      if (!log.ended) problems.push('the server kept the socket open 10 s after the client closed')
    }
    ws.socket.destroy()
    await ws.gone
    for (const f of log.frames) {
      if (f.masked) problems.push('the server sent a masked frame')
      if (f.opcode === OP.TEXT) {
        let message: unknown
        try {
          message = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.payload))
        } catch {
          problems.push(
            `a text frame that is not JSON: ${JSON.stringify(f.payload.toString().slice(0, 100))}`,
          )
          continue
        }
        const type = (message as { type?: unknown } | null)?.type
        if (typeof type !== 'string')
          problems.push(`a message without a string type: ${JSON.stringify(message)}`)
        else note(`message ${type}`)
      }
    }
    const close = log.frames.find((f) => f.opcode === OP.CLOSE)
    const code = close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : undefined
    const reason = close ? close.payload.subarray(2).toString('utf8') : ''
    note(close ? `close ${code ?? 'empty'} ${reason}`.trim() : dropped ? 'client dropped' : 'no close frame')
    const problem = closeProblem(code, reason, clientCode)
    if (problem) problems.push(problem)
    if (!close && !dropped) problems.push('the connection ended without a close frame')
    return problems
  } finally {
    ws.socket.destroy()
  }
}

describe('live sockets under hostile clients', () => {
  let target_: FuzzTarget

  before(() => {
    target_ = createFuzzTarget({ EARMARK_CAPACITY: '2', EARMARK_WS_IDLE_TIMEOUT_MS: String(IDLE_MS) })
  })
  after(async () => {
    await target_.close()
  })

  /** Fails the case with every problem found, after the checks every case ends with. */
  const conclude = async (problems: string[], tally: FuzzTally, what: unknown) => {
    problems.push(...(await target_.settle()))
    if (process.env.FUZZ_VERBOSE) console.error(JSON.stringify(what).slice(0, 300), problems)
    if (problems.length > 0) {
      tally.add('FAILED')
      throw new Error(problems.join('\n'))
    }
  }

  it('no sequence of frames, closes or handshakes crashes the server, leaks a slot or answers a 5xx', async (t) => {
    const tally = createTally()
    const property = fc.asyncProperty(liveCase, async (c) => {
      tally.cases++
      const s = await target_.ready()
      await conclude(await runCase(s, c, tally.add), tally, c)
    })
    await runProperty(t, 'live sockets', 150, property, tally)
  })

  it('sockets opened, used and dropped at the same time share capacity without leaking it', async (t) => {
    const tally = createTally()
    const property = fc.asyncProperty(fc.array(liveCase, { minLength: 2, maxLength: 4 }), async (cases) => {
      tally.cases++
      const s = await target_.ready()
      const problems = await Promise.all(cases.map((c) => runCase(s, c, tally.add, true)))
      await conclude(problems.flat(), tally, cases)
    })
    await runProperty(t, 'concurrent live sockets', 40, property, tally)
  })
})

describe('undecodable audio on a live socket', () => {
  let fuzz: FuzzTarget

  before(() => {
    // Deepgram's own idle timeout, so a verdict on the bytes comes before it.
    fuzz = createFuzzTarget({ EARMARK_CAPACITY: '2', EARMARK_WS_IDLE_TIMEOUT_MS: '10000' })
  })
  after(async () => {
    await fuzz.close()
  })

  it('bytes that are no audio close the stream with 1008 DATA-0000, never the idle NET-0001', async (t) => {
    const tally = createTally()
    const junk = fc.record({
      bytes: fc.uint8Array({ minLength: 1, maxLength: 65536 }).map((b) => Buffer.from(b)),
      frames: fc.integer({ min: 1, max: 4 }),
    })
    const property = fc.asyncProperty(junk, async (c) => {
      tally.cases++
      const s = await fuzz.ready()
      const ws = openRawWs(s.port, '/v1/listen', [['Authorization', `Token ${s.srv.ownerKey}`]])
      const problems: string[] = []
      try {
        await Promise.race([ws.answered, deadline(15_000)])
        if (ws.log.status !== 101) problems.push(`the upgrade was answered ${ws.log.status}`)
        for (let i = 0; i < c.frames; i++) ws.send(OP.BINARY, c.bytes)
        const closeFrame = () => ws.log.frames.find((f) => f.opcode === OP.CLOSE)
        // Past the idle timeout: a server that never judges the bytes closes with NET-0001 by then.
        const until = Date.now() + 11_000
        while (!closeFrame() && Date.now() < until) await sleep(20)
        // Random bytes can be decodable (raw MP3 frames, say): then a CloseStream ends it with audio metered.
        if (!closeFrame()) ws.send(OP.TEXT, Buffer.from('{"type":"CloseStream"}'))
        const stop = Date.now() + 6000
        while (!closeFrame() && Date.now() < stop) await sleep(20)
        const close = closeFrame()
        const code = close && close.payload.length >= 2 ? close.payload.readUInt16BE(0) : undefined
        const reason = close ? close.payload.subarray(2).toString('utf8') : ''
        tally.add(close ? `close ${code} ${reason}`.trim() : 'no close')
        const metadata = ws.log.frames
          .filter((f) => f.opcode === OP.TEXT)
          .map((f) => JSON.parse(f.payload.toString('utf8')) as { type?: string; duration?: number })
          .find((m) => m.type === 'Metadata')
        const decoded = code === 1000 && (metadata?.duration ?? 0) > 0
        if (!(code === 1008 && reason === 'DATA-0000') && !decoded) {
          problems.push(
            `undecodable bytes ended with ${close ? `${code} ${JSON.stringify(reason)}` : 'no close in 17 s'}`,
          )
        }
      } finally {
        ws.socket.destroy()
      }
      problems.push(...(await fuzz.settle()))
      if (problems.length > 0) {
        tally.add('FAILED')
        throw new Error(problems.join('\n'))
      }
    })
    await runProperty(t, 'undecodable audio', 4, property, tally)
  })
})

describe('live sockets relayed to an upstream under hostile clients', () => {
  // docs/gateway.md: the same hostile cases against Earmark A relaying every stream to Earmark B. After each
  // case A's relay slots and B's speech slots are back to zero: nothing a relayed stream claims outlives it.
  let upstream: LiveServer
  let relay: FuzzTarget

  before(async () => {
    // The target first (it watches the process from its creation on); the upstream's address fills its env
    // before the first case starts a server.
    const env: Record<string, string> = {
      EARMARK_ENGINE: 'upstream',
      EARMARK_WS_IDLE_TIMEOUT_MS: String(IDLE_MS),
    }
    relay = createFuzzTarget(env)
    upstream = await startLiveServer({ EARMARK_CAPACITY: '4', EARMARK_WS_IDLE_TIMEOUT_MS: String(IDLE_MS) })
    const res = await fetch(`${upstream.url}/v1/projects/${upstream.projectId}/keys`, {
      method: 'POST',
      headers: { authorization: `Token ${upstream.ownerKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ comment: 'relay', scopes: ['member'] }),
    })
    const { key } = (await res.json()) as { key: string }
    recordSecrets(key)
    env.EARMARK_UPSTREAM_URL = upstream.url
    env.EARMARK_UPSTREAM_KEY = key
  })
  after(async () => {
    await relay?.close()
    await upstream?.close()
  })

  it('no sequence of frames, closes or handshakes crashes either server, leaks a slot on either, or answers a 5xx', async (t) => {
    const tally = createTally()
    const property = fc.asyncProperty(liveCase, async (c) => {
      tally.cases++
      const s = await relay.ready()
      const problems = await runCase(s, c, tally.add)
      problems.push(...(await relay.settle()))
      // B's side of the stream ends with A's: its speech slot is free again.
      const until = Date.now() + 8000
      while (upstream.earmark.engine.inUse() > 0 && Date.now() < until) await sleep(20)
      const held = upstream.earmark.engine.inUse()
      if (held > 0) problems.push(`the upstream still holds ${held} speech slots 8 s after the case`)
      if (problems.length > 0) {
        tally.add('FAILED')
        throw new Error(problems.join('\n'))
      }
    })
    await runProperty(t, 'relayed live sockets', 60, property, tally)
  })
})
