import { Command, InvalidArgumentError, Option } from 'commander'
import { isLive, isRole, keyPrincipal, ROLES, type Role } from '../auth/index.js'
import { type Config, loadConfig } from '../config/index.js'
import { ApiError, isApiError } from '../errors.js'
import { openServices, serve } from '../main.js'
import {
  addMember,
  apiKeyView,
  auditKeyCreated,
  auditKeyEvent,
  bootstrapIfEmpty,
  CLI_ACTOR,
  createKeySweeper,
  grantToken,
  insertKey,
  parseGracePeriod,
  parseKeySpec,
  rerollKeySecret,
  retireSigningKey,
  rotateSigningKey,
  type Services,
  setKeyDisabledState,
  signingKeyView,
} from '../projects/index.js'
import { type CliContext, CliExit, type CliIo, list, pickProject, positiveInt } from './cli-context.js'
import { EXIT, exitCodeOf } from './exit-codes.js'
import { registerTranscribe } from './transcribe-command.js'
import { registerUsage } from './usage-command.js'

export type { CliIo }

const processIo: CliIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  tty: process.stderr.isTTY ? process.stderr : undefined,
}

function role(value: string): Role {
  if (!isRole(value)) throw new InvalidArgumentError(`must be one of ${ROLES.join(', ')}`)
  return value
}

/** Builds the `earmark` command. Each action opens the data directory itself and closes it after. */
export function buildCli(io: CliIo = processIo): Command {
  const program = new Command('earmark')
    .description(
      'Earmark: a self-hosted, Deepgram-compatible speech API built around short-lived credentials.',
    )
    .option('-d, --data-dir <dir>', 'data directory (default: $EARMARK_DATA_DIR or ./data)')
    .option('--json', 'machine-readable output: one JSON document on stdout, nothing else there')
    .configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      // A usage error is one line in the CLI's error style; `--help` shows the rest.
      outputError: (text, write) =>
        write(
          `earmark: BAD_REQUEST: ${text
            .replace(/^error: /, '')
            .trim()
            .replace(/\s*\n\s*/g, ' ')}\n`,
        ),
    })
    .exitOverride()

  const config = (): Config => {
    const dataDir = program.opts<{ dataDir?: string }>().dataDir
    return loadConfig({ ...io.env, ...(dataDir ? { EARMARK_DATA_DIR: dataDir } : {}) })
  }
  const json = (value: unknown) => io.out(`${JSON.stringify(value, null, 2)}\n`)
  const jsonMode = () => program.opts<{ json?: boolean }>().json === true
  const withServices = async <T>(fn: (s: Services) => Promise<T>): Promise<T> => {
    const c = config()
    const services = await openServices(c, undefined, (err) =>
      io.err(
        `earmark: could not write the audit trail: ${err instanceof Error ? err.message : String(err)}\n`,
      ),
    )
    // With EARMARK_REDIS_URL, what the CLI revokes is announced to every node, which closes the streams at
    // once rather than at its next store poll (docs/redis.md). Loaded only then: SQLite alone never loads ioredis.
    const announcer = c.redis
      ? (await import('../store/redis/index.js')).createRedisRevocationPublisher(c.redis)
      : undefined
    if (announcer) services.revocations = announcer
    try {
      return await fn(services)
    } finally {
      const lost = await announcer?.close()
      if (lost) {
        io.err(
          'earmark: the change is stored, but Redis could not be reached to announce it: running servers apply it at their next store check\n',
        )
      }
      await services.audit?.close()
      await services.store.close()
    }
  }

  program
    .command('serve')
    .description('start the HTTP server ($PORT, $HOST, $EARMARK_* configure it)')
    .option('-p, --port <port>', 'port to listen on')
    .option('-H, --host <host>', 'address to listen on')
    .action(async (opts: { port?: string; host?: string }) => {
      const c = config()
      await serve({
        ...c,
        ...(opts.port !== undefined ? { port: positiveInt(opts.port) } : {}),
        ...(opts.host !== undefined ? { host: opts.host } : {}),
      })
    })

  program
    .command('init')
    .description('create the first project and its owner key, if the store is empty')
    .action(() =>
      withServices(async (services) => {
        const c = config()
        const result = await bootstrapIfEmpty(services, {
          ownerKey: c.bootstrapKey,
          projectName: c.projectName,
          ownerEmail: c.ownerEmail,
        })
        if (!result) {
          io.err('earmark: the store already has a project; nothing to do.\n')
          if (jsonMode()) json({ created: false })
          return
        }
        json({
          project_id: result.project.id,
          api_key_id: result.keyId,
          ...(result.generatedSecret ? { key: result.generatedSecret } : {}),
        })
      }),
    )

  const keys = program.command('keys').description('manage API keys directly in the data directory')
  keys
    .command('create')
    .description('create a key; its secret is printed once')
    .requiredOption(
      '-s, --scopes <scopes>',
      'comma-separated roles and scopes, e.g. member or usage:write',
      list,
    )
    .option('-c, --comment <comment>', 'what the key is for', 'created with the earmark CLI')
    .option('-t, --tags <tags>', 'comma-separated tags', list)
    .option('--ttl <seconds>', 'expire after this many seconds', positiveInt)
    .option('--expires <date>', 'expire at this ISO-8601 date')
    .option('-m, --member <email>', "the member who owns the key (default: the project's first owner)")
    .option('--project <id>', 'project id (default: the only project)')
    .action(
      (opts: {
        scopes: string[]
        comment: string
        tags?: string[]
        ttl?: number
        expires?: string
        member?: string
        project?: string
      }) =>
        withServices(async (services) => {
          const projectId = await pickProject(services, opts.project)
          const spec = parseKeySpec(
            {
              comment: opts.comment,
              scopes: opts.scopes,
              tags: opts.tags,
              time_to_live_in_seconds: opts.ttl,
              expiration_date: opts.expires,
            },
            services.clock.now(),
          )
          const member = opts.member
            ? await services.store.getMemberByEmail(projectId, opts.member)
            : (await services.store.listMembers(projectId)).find((m) => m.role === 'owner')
          if (!member) throw new ApiError('MEMBER_NOT_FOUND')
          const { record, secret } = await insertKey(services, member, spec)
          auditKeyCreated(services, record, CLI_ACTOR)
          json({ project_id: projectId, key: secret, ...apiKeyView(record) })
        }),
    )
  keys
    .command('list')
    .description('list the keys that are not deleted')
    .option('--project <id>', 'project id (default: the only project)')
    .action((opts: { project?: string }) =>
      withServices(async (services) => {
        const projectId = await pickProject(services, opts.project)
        const now = services.clock.now()
        const all = await services.store.listKeys(projectId)
        json(
          all.map((k) => ({
            ...apiKeyView(k),
            member: k.memberEmail,
            status: k.expiresAt !== null && k.expiresAt <= now ? 'expired' : 'active',
          })),
        )
      }),
    )
  keys
    .command('delete')
    .description('delete a key; it is refused at once')
    .argument('<api_key_id>')
    .option('--project <id>', 'project id (default: the only project)')
    .action((keyId: string, opts: { project?: string }) =>
      withServices(async (services) => {
        const projectId = await pickProject(services, opts.project)
        if (!(await services.store.deleteKey(projectId, keyId, services.clock.now()))) {
          throw new ApiError('KEY_NOT_FOUND')
        }
        services.revocations?.publish({ type: 'key-revoked', projectId, keyId, reason: 'deleted' })
        auditKeyEvent(services, 'key.deleted', { projectId, id: keyId }, CLI_ACTOR)
        json({ message: 'Successfully deleted the API key!' })
      }),
    )
  // A running server sees the change within a poll and closes the key's streams (docs/suspicious-activity.md);
  // with Redis, every node hears of it at once.
  for (const [action, disabled] of [
    ['disable', true],
    ['enable', false],
  ] as const) {
    keys
      .command(action)
      .description(
        disabled
          ? 'disable a key: it and its grant tokens are refused, its live streams close; it stays listed'
          : 'enable a disabled key again (one disabled by hand or by a suspicious-activity rule)',
      )
      .argument('<api_key_id>')
      .option('--project <id>', 'project id (default: the only project)')
      .action((keyId: string, opts: { project?: string }) =>
        withServices(async (services) => {
          const projectId = await pickProject(services, opts.project)
          const key = await services.store.getKey(projectId, keyId)
          const state =
            key && key.deletedAt === null && (await setKeyDisabledState(services, key, disabled, CLI_ACTOR))
          if (!state) throw new ApiError('KEY_NOT_FOUND')
          json(state)
        }),
      )
  }
  // A running server refuses the old secret once the grace ends and closes the streams it opened
  // (docs/audit.md, "Key reroll").
  keys
    .command('reroll')
    .description('give a key a new secret (printed once); the old one works for the grace period, then never')
    .argument('<api_key_id>')
    .option('--project <id>', 'project id (default: the only project)')
    .option('--grace-period <seconds>', 'how long the old secret keeps working, 0..86400 (default 3600)')
    .action((keyId: string, opts: { project?: string; gracePeriod?: string }) =>
      withServices(async (services) => {
        const grace = parseGracePeriod(
          opts.gracePeriod === undefined ? {} : { grace_period_seconds: Number(opts.gracePeriod) },
        )
        const projectId = await pickProject(services, opts.project)
        const key = await services.store.getKey(projectId, keyId)
        if (!key || key.deletedAt !== null) throw new ApiError('KEY_NOT_FOUND')
        const { secret, record, previousSecretExpiresAt } = await rerollKeySecret(
          services,
          key,
          grace,
          CLI_ACTOR,
        )
        json({
          project_id: projectId,
          key: secret,
          ...apiKeyView(record),
          previous_key_expiration_date: new Date(previousSecretExpiresAt).toISOString(),
        })
      }),
    )
  keys
    .command('sweep')
    .description(
      'one pass of the expired-key sweep: record newly expired keys, delete those past the retention',
    )
    .action(() =>
      withServices(async (services) => {
        const c = config()
        const sweeper = createKeySweeper({
          services,
          retentionSeconds: c.expiredKeyRetentionSeconds,
          via: 'cli',
        })
        json(await sweeper.sweep())
      }),
    )

  program
    .command('grant')
    .description('mint a usage:write grant token for a key (by id)')
    .argument('<api_key_id>')
    .option('--ttl <seconds>', 'token lifetime, 1..3600', positiveInt, 30)
    .option('--project <id>', 'project id (default: the only project)')
    .action((keyId: string, opts: { ttl: number; project?: string }) =>
      withServices(async (services) => {
        const projectId = await pickProject(services, opts.project)
        const key = await services.store.getKey(projectId, keyId)
        if (!key || !isLive(key, services.clock.now()))
          throw new ApiError('KEY_NOT_FOUND', 'No live key with that id.')
        // The CLI acts as that key: the same rules as the API (member role or higher, expiry capped).
        json(grantToken(services, keyPrincipal(key), { ttl_seconds: opts.ttl }))
      }),
    )

  const members = program.command('members').description('manage project members')
  members
    .command('add')
    .requiredOption('-e, --email <email>', 'e-mail address')
    .addOption(new Option('-r, --role <role>', 'owner, admin or member').argParser(role).default('member'))
    .option('--project <id>', 'project id (default: the only project)')
    .action((opts: { email: string; role: Role; project?: string }) =>
      withServices(async (services) => {
        const projectId = await pickProject(services, opts.project)
        const m = await addMember(services, { projectId, email: opts.email, role: opts.role })
        json({ member_id: m.id, email: m.email, scopes: [m.role] })
      }),
    )
  members
    .command('list')
    .option('--project <id>', 'project id (default: the only project)')
    .action((opts: { project?: string }) =>
      withServices(async (services) => {
        const projectId = await pickProject(services, opts.project)
        json(
          (await services.store.listMembers(projectId)).map((m) => ({
            member_id: m.id,
            email: m.email,
            scopes: [m.role],
          })),
        )
      }),
    )

  program
    .command('rotate-signing-key')
    .description(
      'make a new grant-signing key current; tokens signed by older keys stay valid until they expire',
    )
    .action(() => withServices(async (services) => json({ kid: await rotateSigningKey(services) })))

  // A running server sees these writes within a second (docs/revocation.md): it signs with the new key and
  // closes the streams of tokens signed by a retired one.
  const signingKeys = program.command('signing-keys').description('grant-signing keys (never their secrets)')
  signingKeys
    .command('list')
    .description('every signing key, oldest first; `current` is the one that signs')
    .action(() => withServices(async (services) => json((await services.grants.list()).map(signingKeyView))))
  signingKeys
    .command('retire')
    .description('retire a signing key: tokens it signed are refused at once and their streams close')
    .argument('<kid>')
    .action((kid: string) =>
      withServices(async (services) => json(await retireSigningKey(services, undefined, kid))),
    )

  const ctx: CliContext = { io, config, jsonMode, json, withServices }
  registerTranscribe(program, ctx)
  registerUsage(program, ctx)

  return program
}

/**
 * Runs the CLI; resolves to the process exit code (docs/cli.md, "Exit codes"). A failure is one stderr line,
 * `earmark: CODE: message`, with the code of the ERRORS table.
 */
export async function runCli(argv: string[], io: CliIo = processIo): Promise<number> {
  try {
    await buildCli(io).parseAsync(argv, { from: 'user' })
    return EXIT.OK
  } catch (err) {
    if (isApiError(err)) {
      io.err(`earmark: ${err.code}: ${err.message}\n`)
      return exitCodeOf(err)
    }
    if (err instanceof CliExit) {
      io.err(`earmark: ${err.message}\n`)
      return err.exitCode
    }
    const code = (err as { code?: string }).code
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // Commander printed its line already (outputError above).
      return code === 'commander.helpDisplayed' || code === 'commander.version' ? EXIT.OK : EXIT.USAGE
    }
    io.err(`earmark: ${(err as Error).message}\n`)
    return EXIT.FAILURE
  }
}
