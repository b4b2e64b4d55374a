import { LRUCache } from 'lru-cache'
import type { AccessRequest } from '../access/index.js'
import { auditContext } from '../audit/index.js'
import type { Principal, ProjectSettings } from '../auth/index.js'
import { invalidField } from '../errors.js'
import { parseLimitSettings, projectLimitsView } from '../limits/limit-options.js'
import { quotaSettingsSection } from '../quotas/quota-options.js'
import type { Store } from '../store/index.js'
import { suspiciousSettingsSection } from '../suspicious/suspicious-settings.js'
import { requireProject, requireScope, type Services } from './context.js'
import { upstreamSettingsSection } from './upstream-settings.js'

/**
 * One section of `/v1/projects/:id/settings` (docs/limits.md, "Per project"): how a PATCH of it changes the
 * stored settings (a 400 naming the field for anything invalid), and how GET shows it (snake_case).
 */
export interface SettingsSection {
  apply(settings: ProjectSettings, value: unknown, services: Services): ProjectSettings
  view(settings: ProjectSettings): Record<string, unknown>
}

const limitsSection: SettingsSection = {
  apply(settings, value) {
    const { limits: _old, ...rest } = settings
    const limits = parseLimitSettings(value, settings.limits)
    return limits ? { ...rest, limits } : rest
  },
  view: (settings) => projectLimitsView(settings.limits),
}

/** The sections by wire name; any other top-level field of a PATCH is a 400. */
const SECTIONS: Readonly<Record<string, SettingsSection>> = {
  limits: limitsSection,
  quotas: quotaSettingsSection, // docs/quotas.md, "Where quotas are set"
  suspicious_activity: suspiciousSettingsSection, // docs/suspicious-activity.md, "Settings"
  upstream: upstreamSettingsSection, // docs/gateway.md, "Per project"
}

/** The settings as `GET` shows them: every section, each with only what is set. */
export function projectSettingsView(settings: ProjectSettings): Record<string, Record<string, unknown>> {
  const view: Record<string, Record<string, unknown>> = {}
  for (const [name, section] of Object.entries(SECTIONS)) view[name] = section.view(settings)
  return view
}

/** `GET /v1/projects/:id/settings` (`project:read`). */
export async function getProjectSettings(services: Services, principal: Principal, projectId: string) {
  requireScope(principal, 'project:read')
  const project = await requireProject(services, principal, projectId)
  return projectSettingsView(project.settings)
}

/**
 * `PATCH /v1/projects/:id/settings` (`project:write:settings`, owners): each section present is applied to
 * the stored settings; a section absent is left as it is. The whole body is checked before anything is
 * written, so a 400 changes nothing.
 */
export async function updateProjectSettings(
  services: Services,
  principal: Principal,
  projectId: string,
  body: Record<string, unknown>,
  access?: AccessRequest | null,
) {
  requireScope(principal, 'project:write:settings')
  const project = await requireProject(services, principal, projectId)
  let next = project.settings
  for (const [name, value] of Object.entries(body)) {
    const section = SECTIONS[name]
    if (!section) {
      throw invalidField(name, `is not a settings section (known: ${Object.keys(SECTIONS).join(', ')})`)
    }
    next = section.apply(next, value, services)
  }
  await services.store.setProjectSettings(projectId, next)
  // Loosening a limit or turning a policy off is a security decision: who did it, and to what (docs/audit.md).
  const view = projectSettingsView(next)
  const changed = Object.keys(body)
  services.audit?.record({
    ...auditContext(principal, access),
    type: 'project.settings_changed',
    detail: { sections: changed, settings: Object.fromEntries(changed.map((name) => [name, view[name]])) },
  })
  return view
}

/**
 * Project settings for the per-request checks: read once, then served from memory while the store's
 * credentials version (which every settings write moves, in this process or another) is unchanged.
 */
export interface ProjectSettingsCache {
  /** The current settings: synchronously when they are known and fresh, else after one store read. */
  get(projectId: string): ProjectSettings | Promise<ProjectSettings>
  /**
   * The settings as last read, however old, or undefined when never read: for callers that must stay
   * synchronous (the stream caps, which run after `get` admitted the same request).
   */
  peek(projectId: string): ProjectSettings | undefined
}

const NO_SETTINGS: ProjectSettings = {}

export function createProjectSettingsCache(store: Store, maxProjects = 10_000): ProjectSettingsCache {
  const cache = new LRUCache<string, { version: number; settings: ProjectSettings }>({ max: maxProjects })
  const loading = new Map<string, Promise<ProjectSettings>>()
  const load = (projectId: string, version: number): Promise<ProjectSettings> => {
    let pending = loading.get(projectId)
    if (!pending) {
      pending = store.getProject(projectId).then(
        (project) => {
          loading.delete(projectId)
          const settings = project?.settings ?? NO_SETTINGS
          cache.set(projectId, { version, settings })
          return settings
        },
        (err: unknown) => {
          loading.delete(projectId)
          throw err
        },
      )
      loading.set(projectId, pending)
    }
    return pending
  }
  return {
    get(projectId) {
      const version = store.credentialsVersion()
      const hit = cache.get(projectId)
      if (hit && hit.version === version) return hit.settings
      return load(projectId, version)
    },
    peek: (projectId) => cache.get(projectId)?.settings,
  }
}
