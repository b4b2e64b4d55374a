import type { FastifyBaseLogger } from 'fastify'

type Bindings = Parameters<FastifyBaseLogger['child']>[0]
type ChildOptions = NonNullable<Parameters<FastifyBaseLogger['child']>[1]>
type Args = Parameters<FastifyBaseLogger['info']>

/** A child logger made on first use; see `lazyChildLogger`. One object a request, methods on the prototype. */
class LazyChildLogger {
  #child: FastifyBaseLogger | undefined
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Bindings
  readonly #options: ChildOptions

  constructor(parent: FastifyBaseLogger, bindings: Bindings, options: ChildOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #real(): FastifyBaseLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  get level(): string {
    return this.#child?.level ?? this.#options.level ?? this.#parent.level
  }

  set level(level: string) {
    this.#real().level = level
  }

  fatal(...args: Args): void {
    this.#real().fatal(...args)
  }
  error(...args: Args): void {
    this.#real().error(...args)
  }
  warn(...args: Args): void {
    this.#real().warn(...args)
  }
  info(...args: Args): void {
    this.#real().info(...args)
  }
  debug(...args: Args): void {
    this.#real().debug(...args)
  }
  trace(...args: Args): void {
    this.#real().trace(...args)
  }
  silent(...args: Args): void {
    this.#real().silent(...args)
  }
  child(bindings: Bindings, options?: ChildOptions): FastifyBaseLogger {
    return this.#real().child(bindings, options)
  }
}

/**
 * Fastify's `childLoggerFactory`: the request's logger, made on its first use. Fastify asks for a child
 * logger on every request (its bindings carry the request id), and pino's `child()` serialises the bindings
 * at once, a few tenths of a microsecond a request; most requests never log a line.
 */
export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  options: ChildOptions,
): FastifyBaseLogger {
  return new LazyChildLogger(logger, bindings, options) as unknown as FastifyBaseLogger
}
