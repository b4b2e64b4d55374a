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
  return routes
}
