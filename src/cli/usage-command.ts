import type { Command } from 'commander'
import { ApiError } from '../errors.js'
import { parseDate, usagePeriod } from '../projects/index.js'
import { type CliContext, pickProject } from './cli-context.js'
import { createServerClient, type ServerClient } from './server-client.js'
import { type MeteredRequest, usageReport, usageTables } from './usage-report.js'

/** Requests read per page (the most `/requests` lists at once). */
const PAGE = 1000

interface UsageFlags {
  start?: string
  end?: string
  url?: string
  key?: string
  project?: string
}

/** A `/requests` entry, the fields the report reads. */
interface RequestEntry {
  api_key_id: string
  end_user: string | null
  response?: { details?: { duration?: number } }
}

/** The project the key may act on: the one named, or the only one it lists. */
async function serverProject(client: ServerClient, named: string | undefined): Promise<string> {
  if (named) return named
  const { projects } = (await client.get('/v1/projects')) as { projects: { project_id: string }[] }
  const only = projects[0]
  if (projects.length === 1 && only) return only.project_id
  throw new ApiError('INVALID_FIELD', 'The key lists several projects (or none): pick one with --project.')
}

/** Every request of the period through `GET /v1/projects/:id/requests`, page by page. */
async function* serverRequests(
  client: ServerClient,
  projectId: string,
  period: { start: number; end: number },
): AsyncGenerator<MeteredRequest> {
  const path = `/v1/projects/${encodeURIComponent(projectId)}/requests`
  for (let page = 0; ; page++) {
    const { requests } = (await client.get(path, {
      start: new Date(period.start).toISOString(),
      end: new Date(period.end).toISOString(),
      limit: String(PAGE),
      page: String(page),
    })) as { requests: RequestEntry[] }
    for (const r of requests) {
      yield { keyId: r.api_key_id, endUser: r.end_user, audioSeconds: r.response?.details?.duration ?? 0 }
    }
    if (requests.length < PAGE) return
  }
}

/** Key comments, when the key may list keys (`keys:read`); none otherwise. */
async function serverComments(client: ServerClient, projectId: string): Promise<Map<string, string>> {
  try {
    const { api_keys } = (await client.get(`/v1/projects/${encodeURIComponent(projectId)}/keys`)) as {
      api_keys: { api_key: { api_key_id: string; comment: string } }[]
    }
    return new Map(api_keys.map((k) => [k.api_key.api_key_id, k.api_key.comment]))
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) return new Map()
    throw err
  }
}

async function collect(requests: AsyncIterable<MeteredRequest>): Promise<MeteredRequest[]> {
  const all: MeteredRequest[] = []
  for await (const r of requests) all.push(r)
  return all
}

/**
 * `earmark usage` (docs/cli.md): audio minutes and requests per API key and per end user over a period,
 * from the data directory's store, or through a server's `/requests` (which `usage:read` may read).
 */
export function registerUsage(program: Command, ctx: CliContext): void {
  program
    .command('usage')
    .description(
      'audio minutes and requests per API key and per end user, from the store or a server (--url)',
    )
    .option(
      '--start <date>',
      'from this date or time, inclusive (2026-01-31, 2026-01-31T12:00:00Z; UTC); default: 30 days before --end',
    )
    .option('--end <date>', 'to this date or time, exclusive; default: the end of today (UTC)')
    .option('-u, --url <url>', "a running server's base URL (default $EARMARK_URL; none: the data directory)")
    .option('-k, --key <key>', 'an API key with usage:read for --url (default $EARMARK_API_KEY)')
    .option('--project <id>', 'project id (default: the only project)')
    .action(async (flags: UsageFlags) => {
      const { io } = ctx
      const given = { start: parseDate('start', flags.start), end: parseDate('end', flags.end) }
      const url = flags.url ?? io.env.EARMARK_URL
      let report: ReturnType<typeof usageReport>
      if (url) {
        const key = flags.key ?? io.env.EARMARK_API_KEY
        if (!key) throw new ApiError('INVALID_AUTH', 'No API key: pass --key or set EARMARK_API_KEY.')
        const client = createServerClient({ url, key, retries: 0 })
        const projectId = await serverProject(client, flags.project)
        const period = usagePeriod(given, Date.now())
        const requests = await collect(serverRequests(client, projectId, period))
        report = usageReport({ projectId, ...period }, requests, await serverComments(client, projectId))
      } else {
        report = await ctx.withServices(async (services) => {
          const projectId = await pickProject(services, flags.project)
          const period = usagePeriod(given, services.clock.now())
          const requests: MeteredRequest[] = []
          for (let offset = 0; ; offset += PAGE) {
            const rows = await services.store.listUsage(projectId, { ...period, limit: PAGE, offset })
            for (const r of rows)
              requests.push({ keyId: r.keyId, endUser: r.endUser, audioSeconds: r.audioSeconds })
            if (rows.length < PAGE) break
          }
          const keys = await services.store.listKeys(projectId)
          return usageReport({ projectId, ...period }, requests, new Map(keys.map((k) => [k.id, k.comment])))
        })
      }
      if (ctx.jsonMode()) ctx.json(report)
      else io.out(usageTables(report))
    })
}
