import type { Engine } from './engine.js'
import {
  createPocketsphinxEngine,
  type PocketsphinxEngineOptions,
} from './pocketsphinx/pocketsphinx-engine.js'

/** Options per engine name; each engine reads only its own. */
export interface EngineOptionsByName {
  pocketsphinx: PocketsphinxEngineOptions
}

export type EngineName = keyof EngineOptionsByName

/** The engines `createEngine` knows, by name. */
export const ENGINE_NAMES: readonly EngineName[] = ['pocketsphinx']

const FACTORIES: { [N in EngineName]: (options: EngineOptionsByName[N]) => Promise<Engine> } = {
  pocketsphinx: createPocketsphinxEngine,
}

/** Creates the engine called `name`; resolves once it is ready to serve (decoders loaded). */
export function createEngine<N extends EngineName>(
  name: N,
  options: EngineOptionsByName[N],
): Promise<Engine> {
  const factory = FACTORIES[name] as ((options: EngineOptionsByName[N]) => Promise<Engine>) | undefined
  if (!factory) return Promise.reject(new RangeError(`Unknown speech engine: ${String(name)}.`))
  return factory(options)
}
