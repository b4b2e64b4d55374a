import type { ProjectUpstream } from '../auth/index.js'
import type { RelayEngine } from '../engines/index.js'
import type { ProjectSettingsCache } from '../projects/index.js'

/**
 * Each project's own upstream relay (docs/gateway.md "Per project"): built from the project's settings the
 * first time a request needs it, rebuilt when the settings change. A replaced relay finishes the streams it
 * carries and is closed once it carries none.
 */
export interface ProjectEngines {
  /**
   * The project's relay when its settings name an upstream that serves `model` (every model, when the
   * settings list none), else undefined. Synchronous while the project's settings are cached.
   */
  forRequest(
    projectId: string,
    model: string | null,
  ): RelayEngine | undefined | Promise<RelayEngine | undefined>
  /** Closes every relay. */
  close(): Promise<void>
}

export interface ProjectEnginesOptions {
  settings: ProjectSettingsCache
  /** Builds the relay of one project's upstream (its key already opened). */
  createRelay(upstream: { url: string; key: string; scheme: 'token' | 'bearer' }): RelayEngine
  /** The key of a stored upstream (`SecretBox.open`). */
  openKey(sealed: string): string
  /** How often a replaced relay is checked for its last stream, ms. Default 1 s. */
  retireEveryMs?: number
}

function serves(upstream: ProjectUpstream, model: string | null): boolean {
  if (upstream.models.length === 0) return true
  if (model === null) return false
  const m = model.toLowerCase()
  return upstream.models.some((p) => (p.endsWith('*') ? m.startsWith(p.slice(0, -1)) : m === p))
}

export function createProjectEngines(o: ProjectEnginesOptions): ProjectEngines {
  /** Each project's relay, by what it was built from (the settings object changes on any credential write). */
  const relays = new Map<string, { built: string; relay: RelayEngine }>()
  const retiring = new Set<RelayEngine>()
  const retireEveryMs = o.retireEveryMs ?? 1000

  const retire = (relay: RelayEngine) => {
    retiring.add(relay)
    const check = setInterval(() => {
      if (relay.inUse() > 0) return
      clearInterval(check)
      retiring.delete(relay)
      void relay.close()
    }, retireEveryMs)
    check.unref()
  }

  const pick = (projectId: string, upstream: ProjectUpstream | undefined, model: string | null) => {
    const built = upstream ? `${upstream.scheme} ${upstream.url} ${upstream.sealedKey}` : ''
    const held = relays.get(projectId)
    if (held && held.built !== built) {
      // Settings changed (or the upstream was removed): new streams go by the new settings.
      relays.delete(projectId)
      retire(held.relay)
    }
    if (!upstream || !serves(upstream, model)) return undefined
    const current = relays.get(projectId)
    if (current) return current.relay
    const relay = o.createRelay({
      url: upstream.url,
      key: o.openKey(upstream.sealedKey),
      scheme: upstream.scheme,
    })
    relays.set(projectId, { built, relay })
    return relay
  }

  return {
    forRequest(projectId, model) {
      const settings = o.settings.get(projectId)
      if (settings instanceof Promise) return settings.then((s) => pick(projectId, s.upstream, model))
      return pick(projectId, settings.upstream, model)
    },
    async close() {
      const all = [...[...relays.values()].map((h) => h.relay), ...retiring]
      relays.clear()
      retiring.clear()
      await Promise.all(all.map((r) => r.close()))
    },
  }
}
