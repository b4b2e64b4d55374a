import type { Principal } from '../auth/index.js'
import { invalidField } from '../errors.js'
import type { Project } from '../store/index.js'
import { requireProject, requireScope, type Services } from './context.js'

/** Deepgram's project shape (docs/deepgram-compat.md §4). */
export function projectView(p: Project) {
  return {
    project_id: p.id,
    name: p.name,
    ...(p.company !== null ? { company: p.company } : {}),
    mip_opt_out: false,
  }
}

/** The projects the caller can see: a key belongs to exactly one. */
export async function listProjects(services: Services, principal: Principal) {
  requireScope(principal, 'project:read')
  const project = await services.store.getProject(principal.projectId)
  return { projects: project ? [{ project_id: project.id, name: project.name }] : [] }
}

export async function getProject(services: Services, principal: Principal, projectId: string) {
  requireScope(principal, 'project:read')
  return projectView(await requireProject(services, principal, projectId))
}

function optionalText(body: Record<string, unknown>, field: string, max: number): string | undefined {
  const v = body[field]
  if (v === undefined) return undefined
  if (typeof v !== 'string' || v.trim() === '' || v.length > max) {
    throw invalidField(field, `must be a non-empty string of at most ${max} characters`)
  }
  return v.trim()
}

export async function updateProject(
  services: Services,
  principal: Principal,
  projectId: string,
  body: Record<string, unknown>,
) {
  requireScope(principal, 'project:write')
  await requireProject(services, principal, projectId)
  const name = optionalText(body, 'name', 200)
  const company = optionalText(body, 'company', 200)
  await services.store.updateProject(projectId, { name, company })
  return { message: 'Successfully updated project info.' }
}
