import type { FastifyInstance } from 'fastify'

export interface RegisteredRoute {
  method: string
  url: string
}

/**
 * Every route the app registered, read from `printRoutes()` (the tree Fastify prints: one segment a line,
 * its methods in parentheses, four characters of indent a level).
 */
export function registeredRoutes(app: FastifyInstance): RegisteredRoute[] {
  const routes: RegisteredRoute[] = []
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│├└─ ]*)(\S.*?)(?: \(([A-Z, ]+)\))?$/.exec(line)
    if (!m) continue
    const depth = Math.floor((m[1] ?? '').length / 4)
    stack.length = depth
    stack.push(m[2] ?? '')
    if (m[3]) for (const method of m[3].split(', ')) routes.push({ method, url: stack.join('') })
  }
  return routes.map((r) => ({ ...r, url: wildcardUrl(app, r, routes) }))
}

/**
 * The tree prints a wildcard that shares a static prefix with its siblings without that prefix
 * (`/docs/static/*` beside `/docs/static/index.html` prints as `*` under `/docs/`): the prefix is taken
 * back from a sibling, the one under which Fastify knows the route.
 */
function wildcardUrl(app: FastifyInstance, route: RegisteredRoute, all: RegisteredRoute[]): string {
  const { method, url } = route
  if (url === '*' || !url.endsWith('*') || app.hasRoute({ method: method as 'GET', url })) return url
  const parent = url.slice(0, -1)
  for (const other of all) {
    if (!other.url.startsWith(parent) || other.url === url) continue
    const rest = other.url.slice(parent.length)
    const candidate = `${parent}${rest.slice(0, rest.lastIndexOf('/') + 1)}*`
    if (app.hasRoute({ method: method as 'GET', url: candidate })) return candidate
  }
  return url
}
