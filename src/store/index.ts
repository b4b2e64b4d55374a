export type {
  ApiKeyRecord,
  ApiKeyWithMember,
  Member,
  Project,
  RoleChange,
  SigningKey,
  Store,
} from './store.js'
