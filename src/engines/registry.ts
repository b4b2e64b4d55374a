import type { Engine, RelayEngine, SpeechEngine } from './engine.js'
import type { EngineName } from './engine-names.js'
import {
  createPocketsphinxEngine,
  type PocketsphinxEngineOptions,
} from './pocketsphinx/pocketsphinx-engine.js'
import { createUpstreamEngine, type UpstreamEngineOptions } from './upstream/upstream-engine.js'

/** Options per engine name; each engine reads only its own. */
export interface EngineOptionsByName {
  pocketsphinx: PocketsphinxEngineOptions
  upstream: UpstreamEngineOptions
}

/** What each engine name builds: a decoding engine, or a relay. */
export interface EngineByName {
  pocketsphinx: Engine
  upstream: RelayEngine
}

const FACTORIES: {
  [N in EngineName]: (options: EngineOptionsByName[N]) => Promise<EngineByName[N]>
} = {
  pocketsphinx: createPocketsphinxEngine,
  upstream: async (options) => createUpstreamEngine(options),
}

/** Creates the engine called `name`; resolves once it is ready to serve (decoders loaded). */
export function createEngine<N extends EngineName>(
  name: N,
  options: EngineOptionsByName[N],
): Promise<EngineByName[N]> {
  const factory = FACTORIES[name] as
    | ((options: EngineOptionsByName[N]) => Promise<EngineByName[N]>)
    | undefined
  if (!factory) return Promise.reject(new RangeError(`Unknown speech engine: ${String(name)}.`))
  return factory(options)
}

/** An engine and the `model` values it serves (see `EngineEntry`); no list: the default. */
export interface RegisteredEngine {
  engine: SpeechEngine
  models?: readonly string[]
}

/**
 * The engines a server runs, chosen per request by the `model` the client names. Every transport asks it,
 * so a model routed to another engine (an upstream service, say) goes there over REST and live alike.
 */
export interface EngineRegistry {
  /** Every engine, in configured order. */
  readonly engines: readonly SpeechEngine[]
  /** The engine of requests whose model no entry claims (and of requests naming none). */
  readonly default: SpeechEngine
  /** The engine serving `model` (case-insensitive): the first entry listing it, else the default. */
  forModel(model: string | null): SpeechEngine
  /** True when an entry lists `model` by name or pattern (a relay may serve models Earmark does not know). */
  claims(model: string): boolean
  /** Closes every engine. */
  close(): Promise<void>
}

function matches(pattern: string, model: string): boolean {
  return pattern.endsWith('*') ? model.startsWith(pattern.slice(0, -1)) : model === pattern
}

/** A registry over `entries`; the default is the first entry without a model list, else the first. */
export function createEngineRegistry(entries: readonly RegisteredEngine[]): EngineRegistry {
  const first = entries[0]
  if (!first) throw new RangeError('An engine registry needs at least one engine.')
  const fallback = entries.find((e) => !e.models || e.models.length === 0) ?? first
  const routed = entries.filter((e) => e.models && e.models.length > 0)
  return {
    engines: entries.map((e) => e.engine),
    default: fallback.engine,
    forModel(model) {
      if (model === null) return fallback.engine
      const m = model.toLowerCase()
      return routed.find((e) => e.models?.some((p) => matches(p, m)))?.engine ?? fallback.engine
    },
    claims(model) {
      const m = model.toLowerCase()
      return routed.some((e) => e.models?.some((p) => matches(p, m)))
    },
    async close() {
      await Promise.all(entries.map((e) => e.engine.close()))
    },
  }
}
