import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { createFuzzTarget, type FuzzServer, type FuzzTarget } from '../helpers/fuzz-target.js'
import { wav } from '../helpers/listen-e2e.js'
import { encodeRequest, type RawHeader, type RawResponse, rawRequest } from '../helpers/raw-http.js'
import { type RegisteredRoute, registeredRoutes } from '../helpers/registered-routes.js'
import {
  deepgramErrorProblem,
  headerValue,
  isRefusedHeaderByte,
  LISTEN_KEYS,
  MANAGE_KEYS,
  mediaBytes,
  nastyString,
  pctEncode,
  type QueryMode,
  queryBytes,
  queryPairs,
  SPEAK_KEYS,
  target,
} from './arbitraries.js'
import { createTally, type FuzzTally, runProperty } from './fuzz-options.js'

/**
 * Hostile HTTP (issue 8): random bodies, content types, headers, query strings and path segments on every
 * registered route, with no credential, a bad one and good ones, over raw loopback sockets. After every case:
 * no 5xx, every error Deepgram-shaped with a request id, no secret echoed, speech slots back to zero, the
 * process alive.
 */

type Route = RegisteredRoute

const METERED = ['/v1/listen', '/v1/speak']
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'] as const
type Cred = 'none' | 'bad' | 'badBearer' | 'owner' | 'grant' | 'grantAsToken' | 'twoHeaders'

const HEADER_NAMES = [
  'accept',
  'origin',
  'x-request-id',
  'dg-request-id',
  'access-control-request-method',
  'access-control-request-headers',
  'user-agent',
  'x-deepgram-session-id',
  'content-encoding',
  'accept-encoding',
  'range',
  'cookie',
  'x-forwarded-for',
  'sec-websocket-protocol',
] as const

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'application/json; charset=latin1',
  'application/octet-stream',
  'audio/wav',
  'deepgram/audio+video',
  'text/plain',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  'application/jsonx',
  '*/*',
  '',
] as const

/** Fields the routes read (docs/deepgram-compat.md §2-8), to aim bodies at real parsing code. */
const BODY_FIELDS = [
  'text',
  'url',
  'ttl_seconds',
  'comment',
  'scopes',
  'tags',
  'expiration_date',
  'time_to_live_in_seconds',
  'scope',
  'name',
  'company',
  // Earmark's extensions (docs/credential-options.md, limits.md, quotas.md, suspicious-activity.md, audit.md).
  'max_uses',
  'max_session_duration_seconds',
  'allowed_origins',
  'allowed_ips',
  'listen',
  'end_user',
  'limits',
  'quotas',
  'suspicious_activity',
  'grace_period_seconds',
  '__proto__',
  'constructor',
] as const

const body = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Buffer | undefined>(undefined) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(nastyString, fc.dictionary(fc.constantFrom(...BODY_FIELDS), nastyString, { maxKeys: 2 }))
      .map(([text, rest]) => Buffer.from(JSON.stringify({ ...rest, text: text || 'hello' }))),
  },
  {
    weight: 4,
    arbitrary: fc
      .dictionary(fc.constantFrom(...BODY_FIELDS), fc.oneof(nastyString, fc.jsonValue({ maxDepth: 2 })), {
        maxKeys: 4,
      })
      .map((o) => Buffer.from(JSON.stringify(o))),
  },
  {
    weight: 2,
    arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  },
  { weight: 2, arbitrary: mediaBytes(2048) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '{"__proto__":{"polluted":true},"text":"hi"}',
        '{"constructor":{"prototype":{"polluted":true}}}',
        '{"text":"hi"',
        '{"text":"\\ud800"}',
        '{"ttl_seconds":1e309}',
        '{"ttl_seconds":-0}',
        '{"scopes":["🙂"],"comment":"c"}',
        '{"url":"http://127.0.0.1:1/a"}',
        '{"url":"file:///etc/passwd"}',
        '{"allowed_ips":["::ffff:0:0/96","0.0.0.0/0"],"max_uses":1}',
        '{"allowed_origins":["null"],"listen":{"allowed_models":[],"max_sample_rate":1e309}}',
        '{"limits":{"requests_per_minute":1e400},"quotas":{"audio_seconds_per_day":-1}}',
        '{"suspicious_activity":{"__proto__":{"auto_disable":true}}}',
        '{"grace_period_seconds":86400.5}',
        '\u0000',
        ' ',
      )
      .map((s) => Buffer.from(s)),
  },
)

/** A path segment for a `:param`: the real id the fixtures hold, or junk. */
const paramChoice = fc.oneof(
  { weight: 6, arbitrary: fc.constant<string | null>(null) },
  { weight: 2, arbitrary: nastyString.map(pctEncode) },
  { weight: 1, arbitrary: fc.constantFrom('secret', '..', '%2e%2e', '%2F', '%00', '%F0%9F%99%82') },
)

/** The query keys a route reads, so random values reach its parsing code. */
function routeKeys(route: Route): readonly string[] {
  if (route.url === '/v1/listen') return LISTEN_KEYS
  if (route.url === '/v1/speak') return SPEAK_KEYS
  return MANAGE_KEYS
}

/** A value of a field, or the junk the field must survive. */
const fieldValue = <T>(good: fc.Arbitrary<T>) =>
  fc.oneof(
    { weight: 2, arbitrary: good },
    { weight: 2, arbitrary: nastyString },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  )

const json = (o: fc.Arbitrary<Record<string, unknown>>) => o.map((v) => Buffer.from(JSON.stringify(v)))

/** The body a route reads, with each field good, junk or missing (docs/deepgram-compat.md §2-8). */
function routeBody(route: Route): fc.Arbitrary<Buffer | undefined> {
  const key = `${route.method} ${route.url}`
  const opt = { requiredKeys: [] as never[] }
  switch (key) {
    case 'POST /v1/speak':
      return json(fc.record({ text: fieldValue(fc.constantFrom('hello', 'Hi there.')) }))
    case 'POST /v1/listen':
      return fc.oneof(
        mediaBytes(4096),
        fc.constant(Buffer.alloc(3200)),
        json(
          fc.record({
            url: fieldValue(fc.constantFrom('http://127.0.0.1:1/a.wav', 'https://example.com/a')),
          }),
        ),
      )
    case 'POST /v1/auth/grant':
      return json(fc.record({ ttl_seconds: fieldValue(fc.integer({ min: -10, max: 4000 })) }, opt))
    case 'POST /v1/projects/:project_id/keys':
      return json(
        fc.record(
          {
            comment: fieldValue(fc.constant('fuzz')),
            scopes: fieldValue(
              fc.array(fieldValue(fc.constantFrom('usage:write', 'member', 'admin', 'keys:read'))),
            ),
            tags: fieldValue(fc.array(nastyString, { maxLength: 2 })),
            time_to_live_in_seconds: fieldValue(fc.integer({ min: -10, max: 100_000 })),
            expiration_date: fieldValue(fc.constantFrom('2030-01-01', '1970-01-01T00:00:00Z')),
          },
          { requiredKeys: ['comment', 'scopes'] },
        ),
      )
    case 'PATCH /v1/projects/:project_id':
      return json(
        fc.record({ name: fieldValue(fc.constant('Renamed')), company: fieldValue(fc.constant('Co')) }, opt),
      )
    case 'PUT /v1/projects/:project_id/members/:member_id/scopes':
      return json(fc.record({ scope: fieldValue(fc.constantFrom('member', 'admin', 'owner')) }))
    default:
      return body
  }
}

/** The content types a route takes, most of the time; anything, the rest. */
const routeContentType = (route: Route) =>
  fc.oneof(
    { weight: 1, arbitrary: fc.constant<Buffer | undefined>(undefined) },
    {
      weight: 6,
      arbitrary: fc
        .constantFrom(
          ...(route.url === '/v1/listen'
            ? ['application/octet-stream', 'audio/wav', 'application/json']
            : ['application/json']),
        )
        .map((t) => Buffer.from(t)),
    },
    { weight: 2, arbitrary: fc.constantFrom(...CONTENT_TYPES).map((t) => Buffer.from(t)) },
    { weight: 1, arbitrary: headerValue },
  )

const httpCase = (routes: Route[]) =>
  // The metered routes (decoding, synthesis, usage records) get a third of the cases.
  fc
    .oneof(
      { weight: 1, arbitrary: fc.constantFrom(...routes.filter((r) => METERED.includes(r.url))) },
      { weight: 2, arbitrary: fc.constantFrom(...routes.filter((r) => !METERED.includes(r.url))) },
    )
    .chain((route) =>
      fc.record({
        route: fc.constant(route),
        method: fc.oneof(
          { weight: 8, arbitrary: fc.constant<string | null>(null) },
          { weight: 2, arbitrary: fc.constantFrom<string | null>(...METHODS) },
        ),
        params: fc.tuple(paramChoice, paramChoice),
        suffix: fc.oneof(
          { weight: 8, arbitrary: fc.constant('') },
          {
            weight: 1,
            arbitrary: fc.constantFrom('/', '//', '/..', '/%2e%2e/healthz', '/x', '.json', '%00'),
          },
        ),
        query: fc.oneof(
          { weight: 2, arbitrary: fc.constant([]) },
          {
            weight: 1,
            arbitrary: fc.constant([
              ['encoding', 'linear16', 'encoded'],
              ['sample_rate', '16000', 'encoded'],
            ] as [string, string, QueryMode][]),
          },
          { weight: 3, arbitrary: queryPairs(routeKeys(route), 2) },
          { weight: 1, arbitrary: queryPairs(routeKeys(route), 5) },
        ),
        cred: fc.oneof(
          { weight: 6, arbitrary: fc.constantFrom<Cred>('owner', 'grant') },
          {
            weight: 4,
            arbitrary: fc.constantFrom<Cred>('none', 'bad', 'badBearer', 'grantAsToken', 'twoHeaders'),
          },
        ),
        contentType: routeContentType(route),
        body: fc.oneof({ weight: 3, arbitrary: routeBody(route) }, { weight: 2, arbitrary: body }),
        /** Chunked transfer coding (chunk size), or Content-Length. */
        chunkBytes: fc.oneof(
          { weight: 3, arbitrary: fc.constant(null) },
          { weight: 1, arbitrary: fc.integer({ min: 1, max: 4096 }) },
        ),
        /** Drop the connection part-way through the request (fraction of its bytes written). */
        dropAt: fc.oneof(
          { weight: 8, arbitrary: fc.constant(null) },
          { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
        ),
        headers: fc.array(
          fc.tuple(
            fc.oneof(fc.constantFrom(...HEADER_NAMES), fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/)),
            headerValue,
          ),
          { maxLength: 3 },
        ),
      }),
    )
type HttpCase = ReturnType<typeof httpCase> extends fc.Arbitrary<infer T> ? T : never

function credHeaders(cred: Cred, s: FuzzServer): RawHeader[] {
  switch (cred) {
    case 'none':
      return []
    case 'bad':
      return [['Authorization', 'Token emk_not_a_real_key_0000000000000000']]
    case 'badBearer':
      return [['Authorization', 'Bearer eyJhbGciOiJIUzI1NiJ9.e30.AAAA']]
    case 'owner':
      return [['Authorization', `Token ${s.srv.ownerKey}`]]
    case 'grant':
      return [['Authorization', `Bearer ${s.grant}`]]
    case 'grantAsToken':
      return [['Authorization', `Token ${s.grant}`]]
    case 'twoHeaders':
      return [
        ['Authorization', `Token ${s.srv.ownerKey}`],
        ['Authorization', `Bearer ${s.grant}`],
      ]
  }
}

/** The request path: each `:param` replaced by the fixture's id or the case's junk, `*` by a path. */
function casePath(c: HttpCase, s: FuzzServer): string {
  const real: Record<string, string> = {
    project_id: s.srv.projectId,
    key_id: s.victimKeyId,
    member_id: s.subjectMemberId,
    request_id: s.requestId,
  }
  let i = 0
  const path = c.route.url.replace(/:([a-z_]+)/g, (_m, name: string) => {
    const choice = c.params[i++] ?? null
    if (choice === 'secret') return s.srv.ownerKey
    return choice ?? real[name] ?? ''
  })
  return (path === '*' ? '/v1/projects' : path) + c.suffix
}

/** What is wrong with one answer, given the secrets the case held. */
function responseProblems(res: RawResponse, method: string, secrets: string[]): string[] {
  const problems: string[] = []
  if (res.timedOut) return ['no complete answer within 15 s']
  if (res.status === 0) return [`no HTTP answer (${res.raw.length} bytes before the connection ended)`]
  if (res.status >= 500) problems.push(`answered ${res.status}: ${res.body.toString('utf8').slice(0, 300)}`)
  if (res.status >= 400 && method !== 'HEAD') {
    const problem = deepgramErrorProblem(res.body, res.headers['dg-request-id'])
    if (problem) problems.push(`${res.status}: ${problem}`)
  }
  for (const [name, value] of Object.entries(res.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if ([...Buffer.from(v, 'latin1')].some(isRefusedHeaderByte)) {
        problems.push(`response header ${name} carries a control character`)
      }
    }
  }
  const raw = res.raw.toString('latin1')
  for (const secret of secrets) if (raw.includes(secret)) problems.push('the answer echoes a secret')
  return problems
}

/**
 * A metered request's usage record must say what the client got (issue 8: a 500 was metered as 200): once
 * finished, its status is the answer's. A request refused before metering has no record, which is fine.
 */
async function meteringProblems(s: FuzzServer, res: RawResponse, tally: FuzzTally): Promise<string[]> {
  const id = res.headers['dg-request-id']
  if (typeof id !== 'string' || res.status === 0) return []
  const { store } = s.srv.earmark.services
  const until = Date.now() + 3000
  let record = await store.getUsage(s.srv.projectId, id)
  while (record && record.endedAt === null && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 20))
    record = await store.getUsage(s.srv.projectId, id)
  }
  if (!record) return []
  tally.add(`metered ${record.status}`)
  if (record.endedAt === null) return ['the usage record is still open 3 s after the answer']
  if (record.status !== res.status)
    return [`the usage record says ${record.status}; the client got ${res.status}`]
  return []
}

describe('HTTP routes under hostile requests', () => {
  let fuzz: FuzzTarget
  let routes: Route[]

  before(async () => {
    fuzz = createFuzzTarget({ EARMARK_CAPACITY: '2', EARMARK_CAPACITY_WAIT_MS: '2000' })
    const s = await fuzz.ready()
    routes = registeredRoutes(s.srv.earmark.app)
  })
  after(async () => {
    await fuzz.close()
  })

  it('reads every registered route from the app', async () => {
    const s = await fuzz.ready()
    assert.ok(routes.length >= 15, `only ${routes.length} routes parsed`)
    for (const r of routes) {
      if (r.url === '*') continue
      assert.ok(s.srv.earmark.app.hasRoute({ method: r.method as 'GET', url: r.url }), `${r.method} ${r.url}`)
    }
    for (const r of ['POST /v1/listen', 'POST /v1/speak', 'DELETE /v1/projects/:project_id/keys/:key_id']) {
      assert.ok(
        routes.some((x) => `${x.method} ${x.url}` === r),
        `${r} is among the parsed routes`,
      )
    }
  })

  it('no body, header, query or path on any route crashes the server, leaks a slot or answers a 5xx', async (t) => {
    const tally = createTally()
    const property = fc.asyncProperty(httpCase(routes), async (c) => {
      tally.cases++
      const s = await fuzz.ready()
      const method = c.method ?? c.route.method
      const headers: RawHeader[] = [
        ...credHeaders(c.cred, s),
        ...c.headers.map(([n, v]): RawHeader => [n, v]),
      ]
      if (c.contentType) headers.push(['Content-Type', c.contentType])
      const request = {
        method,
        target: target(casePath(c, s), queryBytes(c.query)),
        headers,
        ...(c.body ? { body: c.body } : {}),
        ...(c.chunkBytes !== null ? { chunkBytes: c.chunkBytes } : {}),
      }
      const problems: string[] = []
      if (c.dropAt === null) {
        const res = await rawRequest(s.port, request)
        tally.add(`${res.status}`)
        problems.push(...responseProblems(res, method, [s.srv.ownerKey, s.grant]))
        problems.push(...(await meteringProblems(s, res, tally)))
      } else {
        const size = encodeRequest(request, '127.0.0.1').length
        await rawRequest(s.port, { ...request, dropAfterBytes: Math.floor(size * c.dropAt) })
        tally.add('dropped')
      }
      problems.push(...(await fuzz.settle()))
      if (process.env.FUZZ_VERBOSE) console.error(method, c.route.url, problems)
      if (problems.length > 0) {
        tally.add('FAILED')
        throw new Error(problems.join('\n'))
      }
    })
    await runProperty(t, 'HTTP routes', 600, property, tally)
  })

  it('a valid metered request with one field made hostile is answered, metered and released correctly', async (t) => {
    const tally = createTally()
    /** Requests that succeed as they are: each case changes one thing about one of them. */
    const BASES = [
      {
        path: '/v1/speak',
        query: '',
        type: 'application/json',
        body: Buffer.from('{"text":"Hello there."}'),
      },
      {
        path: '/v1/listen',
        query: 'encoding=linear16&sample_rate=16000',
        type: 'application/octet-stream',
        body: Buffer.alloc(6400),
      },
      { path: '/v1/listen', query: '', type: 'audio/wav', body: wav(new Int16Array(3200)) },
    ] as const
    const mutated = fc.record({
      base: fc.nat({ max: BASES.length - 1 }),
      cred: fc.constantFrom<Cred>('owner', 'grant'),
      mutation: fc.oneof(
        {
          weight: 3,
          arbitrary: fc.record({
            k: fc.constant('query' as const),
            // The options that reach headers, the engine and the usage record, most often.
            pair: fc.tuple(
              fc.constantFrom(
                'model',
                'model',
                'language',
                'encoding',
                'sample_rate',
                'tag',
                ...SPEAK_KEYS,
                ...LISTEN_KEYS,
              ),
              fc
                .tuple(fc.constantFrom('', '', 'aura-', 'aura-asteria-en', 'nova-2-', 'en-'), nastyString)
                .map(([prefix, rest]) => prefix + rest),
              fc.constant<QueryMode>('encoded'),
            ),
          }),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            k: fc.constant('field' as const),
            name: fc.constantFrom('text', 'url', 'model'),
            value: fc.oneof(nastyString, fc.jsonValue({ maxDepth: 2 })),
          }),
        },
        {
          weight: 1,
          arbitrary: fc.record({
            k: fc.constant('header' as const),
            name: fc.constantFrom(...HEADER_NAMES, 'content-type'),
            value: headerValue,
          }),
        },
      ),
    })
    const property = fc.asyncProperty(mutated, async (c) => {
      tally.cases++
      const s = await fuzz.ready()
      const base = BASES[c.base] ?? BASES[0]
      const m = c.mutation
      let query = Buffer.from(base.query)
      let body: Buffer = base.body
      const headers: RawHeader[] = credHeaders(c.cred, s)
      if (m.k === 'query')
        query = Buffer.concat([query, Buffer.from(query.length ? '&' : ''), queryBytes([m.pair])])
      if (m.k === 'field') {
        const fields = base.path === '/v1/speak' ? { text: 'Hello there.' } : {}
        body = Buffer.from(JSON.stringify({ ...fields, [m.name]: m.value }))
      }
      if (m.k === 'header') headers.push([m.name, m.value])
      if (!(m.k === 'header' && m.name === 'content-type')) {
        headers.push(['Content-Type', m.k === 'field' ? 'application/json' : base.type])
      }
      const res = await rawRequest(s.port, {
        method: 'POST',
        target: target(base.path, query),
        headers,
        body,
      })
      tally.add(`${base.path} ${res.status}`)
      const problems = responseProblems(res, 'POST', [s.srv.ownerKey, s.grant])
      problems.push(...(await meteringProblems(s, res, tally)))
      problems.push(...(await fuzz.settle()))
      if (problems.length > 0) {
        tally.add('FAILED')
        throw new Error(problems.join('\n'))
      }
    })
    await runProperty(t, 'mutated metered requests', 150, property, tally)
  })

  it('requests node refuses to parse (control bytes, raw non-ASCII, bad tokens, huge headers) get a Deepgram-shaped 4xx', async (t) => {
    const tally = createTally()
    const refused = fc.oneof(
      fc.constantFrom(0x00, 0x01, 0x0a, 0x0d, 0x1b, 0x7f),
      fc.integer({ min: 0x80, max: 0xff }),
    )
    const malformed = fc.record({
      route: fc.constantFrom(...routes),
      where: fc.constantFrom('target', 'headerValue', 'headerName', 'method', 'hugeHeader'),
      bytes: fc.array(refused, { minLength: 1, maxLength: 4 }).map((b) => Buffer.from(b)),
      cred: fc.constantFrom<Cred>('none', 'owner', 'grant'),
    })
    const property = fc.asyncProperty(malformed, async (c) => {
      tally.cases++
      const s = await fuzz.ready()
      const path = c.route.url === '*' ? '/v1/projects' : c.route.url.replace(/:[a-z_]+/g, 'x')
      const headers = credHeaders(c.cred, s)
      // A CR or LF in a header value would end the header: it is part of a name or target instead.
      const value = Buffer.concat([
        Buffer.from('a'),
        c.bytes.filter((b) => b !== 0x0a && b !== 0x0d),
        Buffer.from('a'),
      ])
      if (c.where === 'headerValue') headers.push(['X-Fuzz', value])
      if (c.where === 'headerName') headers.push([`X-F${c.bytes.toString('latin1')}z`, 'a'])
      // Past node's header size limit (16 KiB).
      if (c.where === 'hugeHeader') headers.push(['X-Fuzz', 'a'.repeat(20_000 + c.bytes.length)])
      const res = await rawRequest(s.port, {
        method: c.where === 'method' ? `G${c.bytes.toString('latin1')}T` : c.route.method,
        target: c.where === 'target' ? Buffer.concat([Buffer.from(`${path}?q=`), c.bytes]) : path,
        headers,
      })
      tally.add(`${res.status}`)
      const problems = responseProblems(res, c.route.method, [s.srv.ownerKey, s.grant])
      const wellFormed = c.where === 'headerValue' && !value.some(isRefusedHeaderByte)
      if (res.status < 400 && !wellFormed) {
        problems.push(`a malformed request was answered ${res.status}`)
      }
      problems.push(...(await fuzz.settle()))
      if (problems.length > 0) {
        tally.add('FAILED')
        throw new Error(problems.join('\n'))
      }
    })
    await runProperty(t, 'malformed HTTP', 60, property, tally)
  })
})
