import { randomUUID } from 'node:crypto'
import type { AccessRequest } from '../access/index.js'
import { auditContext } from '../audit/index.js'
import { isRole, memberScopePrefix, type Principal, type Role } from '../auth/index.js'
import { ApiError, invalidField } from '../errors.js'
import type { Member } from '../store/index.js'
import { requireProject, requireScope, type Services } from './context.js'

const ROLE_ERROR = "Invalid request: scope must be either 'member', 'admin' or 'owner'."

function memberView(m: Member) {
  return {
    member_id: m.id,
    email: m.email,
    first_name: m.firstName ?? '',
    last_name: m.lastName ?? '',
    scopes: [m.role],
  }
}

async function findMember(services: Services, projectId: string, memberId: string): Promise<Member> {
  const member = await services.store.getMember(projectId, memberId)
  if (!member) throw new ApiError('MEMBER_NOT_FOUND')
  return member
}

export async function listMembers(services: Services, principal: Principal, projectId: string) {
  requireScope(principal, 'members:read')
  await requireProject(services, principal, projectId)
  return { members: (await services.store.listMembers(projectId)).map(memberView) }
}

export async function getMemberScopes(
  services: Services,
  principal: Principal,
  projectId: string,
  memberId: string,
) {
  requireScope(principal, 'members:read:scopes')
  await requireProject(services, principal, projectId)
  const member = await findMember(services, projectId, memberId)
  requireScope(principal, `${memberScopePrefix(member.role)}:read:scopes`)
  return { scopes: [member.role] }
}

export async function setMemberScope(
  services: Services,
  principal: Principal,
  projectId: string,
  memberId: string,
  body: Record<string, unknown>,
  access?: AccessRequest | null,
) {
  requireScope(principal, 'members:write:scopes')
  await requireProject(services, principal, projectId)
  const scope = body.scope
  if (typeof scope !== 'string' || !isRole(scope)) throw new ApiError('INVALID_FIELD', ROLE_ERROR)
  const member = await findMember(services, projectId, memberId)
  // Taking a role away and giving one both need the write scope of that role's group.
  requireScope(principal, `${memberScopePrefix(member.role)}:write:scopes`)
  requireScope(principal, `${memberScopePrefix(scope)}:write:scopes`)
  const outcome = await services.store.setMemberRole(projectId, memberId, scope)
  if (outcome === 'not_found') throw new ApiError('MEMBER_NOT_FOUND')
  if (outcome === 'last_owner') throw new ApiError('CONFLICT', 'A project must keep at least one owner.')
  services.revocations?.publish({ type: 'member-role-changed', projectId, memberId })
  if (member.role !== scope)
    services.audit?.record({
      ...auditContext(principal, access),
      type: 'member.role_changed',
      detail: { member_id: memberId, from: member.role, to: scope },
    })
  return { message: 'Successfully updated the account scopes.' }
}

/** Adds a member (operators, through the CLI). */
export async function addMember(
  services: Services,
  input: { projectId: string; email: string; role: Role; firstName?: string; lastName?: string },
): Promise<Member> {
  if (!/^[^\s@]+@[^\s@]+$/.test(input.email)) throw invalidField('email', 'must be an e-mail address')
  if (await services.store.getMemberByEmail(input.projectId, input.email)) {
    throw new ApiError('CONFLICT', `A member with e-mail ${input.email} already exists.`)
  }
  const member: Member = {
    id: randomUUID(),
    projectId: input.projectId,
    email: input.email,
    firstName: input.firstName ?? null,
    lastName: input.lastName ?? null,
    role: input.role,
    createdAt: services.clock.now(),
  }
  await services.store.createMember(member)
  return member
}
