/** Longest header value Earmark writes from text a client can influence (an error message, a model name). */
export const MAX_HEADER_VALUE_LENGTH = 256

/**
 * `value` made safe for an HTTP header: every character outside printable ASCII (controls, CR/LF, DEL,
 * Latin-1 and beyond, lone surrogates) becomes `?`, and the result is cut to `max` characters. Node refuses
 * (`ERR_INVALID_CHAR`) or mangles anything else, and a refused header used to turn a 400 into Fastify's own
 * body or a 500. Bodies keep the full text; only headers go through here.
 */
export function headerSafe(value: string, max = MAX_HEADER_VALUE_LENGTH): string {
  // A code point is at most two code units: cutting at 2 × max first bounds the work on a huge value.
  const safe = value.slice(0, 2 * max).replace(/[^\x20-\x7e]/gu, '?')
  return safe.length > max ? safe.slice(0, max) : safe
}
