export type {
  ApiKeyRecord,
  ApiKeyWithMember,
  Member,
  Project,
  RoleChange,
  SigningKey,
  Store,
  UsageFilter,
  UsageRecord,
} from './store.js'
