export {
  type AuditInput,
  type AuditLog,
  type AuditLogOptions,
  auditContext,
  createAuditLog,
} from './audit-log.js'
