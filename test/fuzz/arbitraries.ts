import fc from 'fast-check'

/** Percent-encodes the UTF-8 bytes of `s` (lone surrogates become U+FFFD), keeping RFC 3986 unreserved bytes. */
export function pctEncode(s: string): string {
  let out = ''
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b)
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** Strings an attacker reaches for: empty, emoji, NUL (raw and encoded), huge numbers, prototype keys, long. */
export const nastyString: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      '🙂',
      '%00',
      '\u0000',
      '\r\n',
      'NaN',
      '-1',
      '0',
      '1e309',
      '-0',
      '99999999999999999999999999999999',
      '9'.repeat(400),
      'true',
      'false',
      '__proto__',
      'constructor',
      'toString',
      '[object Object]',
      'aura-%00',
      'aura-\u0000',
      'aura-🙂-en',
      'a'.repeat(5000),
      'é',
      '\u2028',
      '\ud800',
      'en-🙂',
      'ü',
      '\u0085',
      '\u{1F600}x\u0007',
    ),
  },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 24 }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.integer().map(String) },
  { weight: 1, arbitrary: fc.double().map(String) },
)

/** How a query pair is written: percent-encoded, or its UTF-8 bytes raw on the request line. */
export type QueryMode = 'encoded' | 'raw'

export const queryPair = (keys: readonly string[]) =>
  fc.tuple(
    fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: nastyString }),
    nastyString,
    fc.constantFrom<QueryMode>('encoded', 'encoded', 'encoded', 'raw'),
  )

/** Query pairs, repeated keys included (a key is drawn from `keys` most of the time). */
export const queryPairs = (keys: readonly string[], maxLength = 5) => fc.array(queryPair(keys), { maxLength })

/**
 * The bytes of a query string. Raw pairs keep their bytes unencoded but only those node's HTTP parser takes on
 * a request line (printable ASCII but `#`): what it refuses is the malformed-request property's input.
 */
export function queryBytes(pairs: readonly (readonly [string, string, QueryMode])[]): Buffer {
  const parts = pairs.map(([k, v, mode]) =>
    mode === 'encoded' ? `${pctEncode(k)}=${pctEncode(v)}` : `${k}=${v}`.replace(/[^\x21-\x7e]|#/g, ''),
  )
  return Buffer.from(parts.join('&'), 'utf8')
}

/** A request target: `path` and the query (when there is one). */
export function target(path: string | Buffer, query: Buffer): Buffer {
  const p = Buffer.isBuffer(path) ? path : Buffer.from(path, 'utf8')
  return query.length > 0 ? Buffer.concat([p, Buffer.from('?'), query]) : p
}

/** Bytes node's HTTP parser refuses in a header value: controls but tab, and DEL. */
export const isRefusedHeaderByte = (b: number) => (b < 0x20 && b !== 0x09) || b === 0x7f

/**
 * Header values that reach the app: non-Latin-1 UTF-8 (emoji), raw high bytes, tabs, long. Control
 * characters never get past node's parser; they are the malformed-request property's input.
 */
export const headerValue: fc.Arbitrary<Buffer> = fc
  .oneof(
    { weight: 2, arbitrary: nastyString.map((s) => Buffer.from(s, 'utf8')) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.constantFrom(Buffer.from('🙂'), Buffer.from('\t'), Buffer.from([0xff])) },
  )
  .map((b) => Buffer.from(b.filter((x) => !isRefusedHeaderByte(x))))

/** Known magic numbers, so random bytes after them reach deeper into the container parsers. */
export const mediaPrefix: fc.Arbitrary<Buffer> = fc.constantFrom(
  Buffer.alloc(0),
  Buffer.from('RIFF\x24\x00\x00\x00WAVEfmt ', 'latin1'),
  Buffer.from('OggS\x00\x02', 'latin1'),
  Buffer.from('fLaC', 'latin1'),
  Buffer.from('ID3\x03\x00', 'latin1'),
  Buffer.from([0x1a, 0x45, 0xdf, 0xa3]),
  Buffer.from([0xff, 0xfb, 0x90, 0x64]),
)

/** Random bytes, sometimes behind a container's magic number. */
export const mediaBytes = (maxLength: number): fc.Arbitrary<Buffer> =>
  fc
    .tuple(mediaPrefix, fc.uint8Array({ maxLength }))
    .map(([prefix, rest]) => Buffer.concat([prefix, Buffer.from(rest)]))

/** The names of the live and pre-recorded listen options (docs/deepgram-compat.md §6-7), and a few more. */
export const LISTEN_KEYS = [
  'encoding',
  'sample_rate',
  'channels',
  'container',
  'callback',
  'endpointing',
  'interim_results',
  'language',
  'model',
  'paragraphs',
  'punctuate',
  'smart_format',
  'tag',
  'utterance_end_ms',
  'utterances',
  'vad_events',
  'keywords',
  'diarize',
  'multichannel',
  'version',
  'detect_language',
] as const

export const SPEAK_KEYS = [
  'model',
  'encoding',
  'container',
  'sample_rate',
  'bit_rate',
  'callback',
  'callback_method',
  'tag',
  'mip_opt_out',
] as const

export const MANAGE_KEYS = [
  'start',
  'end',
  'limit',
  'page',
  'status',
  'endpoint',
  'method',
  'accessor',
  'request_id',
  'comment',
  'scopes',
  'time_to_live_in_seconds',
  'ttl_seconds',
  'tags',
] as const

/** A Deepgram error body: `{err_code, err_msg, request_id}`, all strings, the id not empty. */
export function deepgramErrorProblem(
  body: Buffer,
  headerId: string | string[] | undefined,
): string | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return `error body is not JSON: ${JSON.stringify(body.toString('utf8').slice(0, 200))}`
  }
  const b = parsed as { err_code?: unknown; err_msg?: unknown; request_id?: unknown }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    return 'error body is not an object'
  if (typeof b.err_code !== 'string' || typeof b.err_msg !== 'string' || typeof b.request_id !== 'string') {
    return `error body is not Deepgram-shaped: ${JSON.stringify(parsed).slice(0, 200)}`
  }
  if (b.request_id === '') return 'error body has an empty request_id'
  if (headerId !== undefined && headerId !== b.request_id) {
    return `dg-request-id ${JSON.stringify(headerId)} differs from the body's request_id ${b.request_id}`
  }
  return undefined
}
