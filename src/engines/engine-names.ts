/**
 * The engines Earmark can build, by the name `EARMARK_ENGINE` uses. Kept apart from the factories so the
 * config can check names without loading any engine (PocketSphinx loads a native library).
 */
export const ENGINE_NAMES = ['pocketsphinx', 'upstream'] as const

/** A name of {@link ENGINE_NAMES}. */
export type EngineName = (typeof ENGINE_NAMES)[number]

/** True when `name` is an engine Earmark can build. */
export function isEngineName(name: string): name is EngineName {
  return (ENGINE_NAMES as readonly string[]).includes(name)
}

/**
 * One configured engine: its name, and the `model` values it serves (`*` at the end matches any rest,
 * `nova-*`); an empty list serves every model no other entry claims.
 */
export interface EngineEntry {
  name: EngineName
  models: string[]
}

/**
 * Parses `EARMARK_ENGINE`: engines separated by commas, each `name` or `name:model|model…`
 * (`upstream:nova-*|enhanced-*,pocketsphinx`). Throws a RangeError naming what is wrong.
 */
export function parseEngineList(text: string): EngineEntry[] {
  const entries: EngineEntry[] = []
  for (const part of text.split(',')) {
    const item = part.trim()
    if (item === '') continue
    const colon = item.indexOf(':')
    const name = (colon < 0 ? item : item.slice(0, colon)).trim().toLowerCase()
    if (!isEngineName(name)) {
      throw new RangeError(`unknown engine ${JSON.stringify(name)} (known: ${ENGINE_NAMES.join(', ')})`)
    }
    if (entries.some((e) => e.name === name)) throw new RangeError(`engine ${name} is listed twice`)
    const models =
      colon < 0
        ? []
        : item
            .slice(colon + 1)
            .split('|')
            .map((m) => m.trim().toLowerCase())
            .filter((m) => m.length > 0)
    if (colon >= 0 && models.length === 0) throw new RangeError(`engine ${name} lists no model after ':'`)
    entries.push({ name, models })
  }
  if (entries.length === 0) throw new RangeError('no engine is listed')
  return entries
}
