import { InvalidArgumentError } from 'commander'
import type { Config } from '../config/index.js'
import { ApiError } from '../errors.js'
import type { Services } from '../projects/index.js'

/** Where the CLI writes; injectable so tests can read it. */
export interface CliIo {
  out(text: string): void
  err(text: string): void
  env: NodeJS.ProcessEnv
  /** The terminal a progress bar may be drawn on (stderr when it is one); none: plain lines. */
  tty?: NodeJS.WriteStream | undefined
}

/** What every command's action gets from the program. */
export interface CliContext {
  io: CliIo
  /** The configuration: environment, `--data-dir`. */
  config(): Config
  /** `--json`: stdout carries one JSON document and nothing else. */
  jsonMode(): boolean
  /** Prints a value as JSON on stdout. */
  json(value: unknown): void
  /** Opens the data directory's store for `fn`, closed after. */
  withServices<T>(fn: (services: Services) => Promise<T>): Promise<T>
}

/** An outcome that is not an error but still fails the command (e.g. some files failed): its exit code and line. */
export class CliExit extends Error {
  readonly exitCode: number
  constructor(exitCode: number, message: string) {
    super(message)
    this.name = 'CliExit'
    this.exitCode = exitCode
  }
}

/** Option parser: a positive integer. */
export function positiveInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
  return n
}

/** Option parser: an integer of 0 or more. */
export function nonNegativeInt(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be an integer of 0 or more')
  return n
}

/** Option parser: a comma-separated list, blanks dropped. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
}

/** The project to act on: the one named, or the only one there is. */
export async function pickProject(services: Services, projectId: string | undefined): Promise<string> {
  if (projectId) {
    if (!(await services.store.getProject(projectId))) throw new ApiError('PROJECT_NOT_FOUND')
    return projectId
  }
  const projects = await services.store.listProjects()
  const only = projects[0]
  if (projects.length === 1 && only) return only.id
  if (projects.length === 0)
    throw new ApiError('PROJECT_NOT_FOUND', 'No project yet: run `earmark init` first.')
  throw new ApiError('INVALID_FIELD', 'Several projects exist: pick one with --project.')
}
