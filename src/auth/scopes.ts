/**
 * Roles and scopes, after docs/deepgram-compat.md §4 ("Roles and scopes"). A key's `scopes` may mix roles and
 * single scopes; what it may do is the expansion of those, capped by the role of the member who owns it.
 */
export const ROLES = ['owner', 'admin', 'member'] as const
export type Role = (typeof ROLES)[number]

const MEMBER_SCOPES = [
  'project:read',
  'project:write',
  'keys:read',
  'keys:write',
  'usage:read',
  'usage:write',
] as const

const MEMBERS_ADMIN = [
  'members:read',
  'members:read:invites',
  'members:read:scopes',
  'members:write',
  'members:write:invites',
  'members:write:scopes',
  'members:write:kick',
] as const
const ADMINS_ADMIN = MEMBERS_ADMIN.map((s) => s.replace('members:', 'admins:'))
const OWNERS_READ = ['owners:read', 'owners:read:invites', 'owners:read:scopes'] as const
const OWNERS_WRITE = [
  'owners:write',
  'owners:write:invites',
  'owners:write:scopes',
  'owners:write:kick',
] as const

const ADMIN_SCOPES = [
  ...MEMBER_SCOPES,
  ...MEMBERS_ADMIN,
  ...ADMINS_ADMIN,
  ...OWNERS_READ,
  'billing:read',
  // Earmark's extension: reading the project's audit trail (docs/audit.md).
  'audit:read',
] as const

const OWNER_SCOPES = [
  ...ADMIN_SCOPES,
  'project:write:settings',
  'project:write:destroy',
  ...OWNERS_WRITE,
  'billing:write',
] as const

/** The scope set of each role. */
export const ROLE_SCOPES: Readonly<Record<Role, ReadonlySet<string>>> = {
  owner: new Set(OWNER_SCOPES),
  admin: new Set(ADMIN_SCOPES),
  member: new Set(MEMBER_SCOPES),
}

/** Every single scope Earmark knows; a key may hold only these and the role names. */
export const KNOWN_SCOPES: ReadonlySet<string> = new Set([...OWNER_SCOPES])

/** The only scope a grant token (JWT) carries. */
export const USAGE_WRITE = 'usage:write'

const ROLE_RANK: Record<Role, number> = { member: 1, admin: 2, owner: 3 }

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value)
}

/** True for a role name or a known single scope. */
export function isValidScope(value: string): boolean {
  return isRole(value) || KNOWN_SCOPES.has(value)
}

/** Expands roles into their scopes. */
export function expandScopes(scopes: Iterable<string>): Set<string> {
  const out = new Set<string>()
  for (const s of scopes) {
    if (isRole(s)) for (const r of ROLE_SCOPES[s]) out.add(r)
    else if (KNOWN_SCOPES.has(s)) out.add(s)
  }
  return out
}

/** What a key may do: its own scopes, expanded, capped by its member's role. */
export function effectiveScopes(keyScopes: Iterable<string>, memberRole: Role): Set<string> {
  const cap = ROLE_SCOPES[memberRole]
  const out = new Set<string>()
  for (const s of expandScopes(keyScopes)) if (cap.has(s)) out.add(s)
  return out
}

export function isSubset(a: Iterable<string>, b: ReadonlySet<string>): boolean {
  for (const s of a) if (!b.has(s)) return false
  return true
}

/** The highest role whose whole scope set `scopes` holds, if any ("member-or-higher" checks use this). */
export function roleOf(scopes: ReadonlySet<string>): Role | undefined {
  for (const role of ROLES) if (isSubset(ROLE_SCOPES[role], scopes)) return role
  return undefined
}

export function roleAtLeast(role: Role | undefined, min: Role): boolean {
  return role !== undefined && ROLE_RANK[role] >= ROLE_RANK[min]
}

/** The scope prefix that governs changing or reading members of a role: `members`, `admins` or `owners`. */
export function memberScopePrefix(role: Role): 'members' | 'admins' | 'owners' {
  return role === 'member' ? 'members' : role === 'admin' ? 'admins' : 'owners'
}
