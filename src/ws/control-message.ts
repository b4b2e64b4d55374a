/**
 * The `type` of a client's text frame, or undefined when the frame is not a JSON object with a string
 * `type`. Any text is accepted: `null`, numbers, arrays, strings, broken JSON and odd `type` values are
 * all simply "not a control message" (docs/deepgram-compat.md §7.2: unknown messages are ignored).
 */
export function controlType(text: string): string | undefined {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const type: unknown = (value as { type?: unknown }).type
  return typeof type === 'string' ? type : undefined
}
