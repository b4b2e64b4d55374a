export type {
  ApiKeyRecord,
  ApiKeyWithMember,
  AudioTotalFilter,
  AuditEvent,
  AuditFilter,
  Member,
  Project,
  RoleChange,
  SigningKey,
  Store,
  UsageFilter,
  UsageRecord,
} from './store.js'
