// A child process for the crash-safety test: creates and deletes keys in a tight loop on a data directory,
// printing a line after each change commits ("C <id>" / "D <id>"), until it is killed.
import { openServices } from '../../src/main.js'
import { bootstrapIfEmpty, insertKey } from '../../src/projects/index.js'

const sqlitePath = process.argv[2]
if (!sqlitePath) throw new Error('usage: churn.ts <sqlite path>')
const services = await openServices({ sqlitePath })
await bootstrapIfEmpty(services, { ownerKey: 'emk_churn_bootstrap_owner_key_0001' })
const [project] = await services.store.listProjects()
const owner = project && (await services.store.listMembers(project.id)).find((m) => m.role === 'owner')
if (!project || !owner) throw new Error('no project')

const live: string[] = []
process.stdout.write('READY\n')
for (let i = 0; ; i++) {
  const { record } = await insertKey(services, owner, {
    comment: `churn ${i}`,
    scopes: ['usage:write', 'usage:read', 'project:read'],
    tags: ['churn', `n${i}`],
    expiresAt: null,
  })
  process.stdout.write(`C ${record.id}\n`)
  live.push(record.id)
  if (i % 2 === 1) {
    const victim = live.splice(Math.floor(live.length / 2), 1)[0]
    if (victim && (await services.store.deleteKey(project.id, victim, Date.now()))) {
      process.stdout.write(`D ${victim}\n`)
    }
  }
}
