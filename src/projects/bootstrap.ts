import { randomUUID } from 'node:crypto'
import { ApiError } from '../errors.js'
import type { Member, Project } from '../store/index.js'
import type { Services } from './context.js'
import { newKeyRecord } from './keys.js'

export interface BootstrapOptions {
  /** Use this as the owner key's secret instead of generating one (scripts, tests). */
  ownerKey?: string
  projectName?: string
  ownerEmail?: string
}

export interface BootstrapResult {
  project: Project
  owner: Member
  keyId: string
  /** Set only when Earmark generated the secret: it must be shown to the operator once. */
  generatedSecret?: string
}

/**
 * RFC 7230 token characters only, so the key also works as a WebSocket subprotocol
 * (docs/deepgram-compat.md §0 #3).
 */
const TOKEN_SAFE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]{20,512}$/

/** On first start with an empty store: a project, its owner member and an owner key. Otherwise nothing. */
export async function bootstrapIfEmpty(
  services: Services,
  options: BootstrapOptions,
): Promise<BootstrapResult | undefined> {
  if (!(await services.store.isEmpty())) return undefined
  if (options.ownerKey !== undefined && !TOKEN_SAFE.test(options.ownerKey)) {
    throw new ApiError(
      'INVALID_FIELD',
      "EARMARK_BOOTSTRAP_KEY must be 20 to 512 characters from A-Z a-z 0-9 and !#$%&'*+-.^_`|~ (no = / :).",
    )
  }
  const now = services.clock.now()
  const project: Project = {
    id: randomUUID(),
    name: options.projectName ?? 'Earmark',
    company: null,
    createdAt: now,
    settings: {},
  }
  const owner: Member = {
    id: randomUUID(),
    projectId: project.id,
    email: options.ownerEmail ?? 'owner@earmark.local',
    firstName: null,
    lastName: null,
    role: 'owner',
    createdAt: now,
  }
  const spec = { comment: 'bootstrap owner key', scopes: ['owner'], tags: [], expiresAt: null }
  const { record, secret } = newKeyRecord(owner, spec, now, options.ownerKey)
  await services.store.createProjectWithOwner(project, owner, record)
  return {
    project,
    owner,
    keyId: record.id,
    ...(options.ownerKey === undefined ? { generatedSecret: secret } : {}),
  }
}
